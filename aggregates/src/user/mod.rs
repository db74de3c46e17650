//! The user aggregate: registration, profile, role and status, email verification, password.

mod aggregate;
mod command;
mod error;
mod event;
mod services;
#[cfg(test)]
mod tests;

pub use aggregate::{PendingToken, User, UserStatus, REQUESTS_PER_HOUR};
pub use command::{IssuedToken, UserChanges, UserCommand};
pub use error::UserError;
pub use event::UserEvent;
pub use services::{EmailRegistry, PasswordVerifier, ServiceError, UserServices};
