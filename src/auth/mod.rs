//! Authentication: password hashing, access tokens (JWT), refresh tokens, and the principal
//! that extractors hand to handlers.

pub mod jwt;
pub mod password;
pub mod principal;
pub mod tokens;

pub use principal::Principal;
