//! Authentication: password hashing, access tokens (JWT), refresh tokens, and the principal
//! that extractors hand to handlers.

pub mod api_keys;
pub mod jwt;
pub mod login_throttle;
pub mod password;
pub mod principal;
pub mod revocations;
pub mod secrets;
pub mod tokens;

pub use principal::Principal;
