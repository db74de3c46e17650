//! The user aggregate: registration, profile, role and status, email verification, password.

mod aggregate;
mod command;
mod error;
mod event;
mod services;
#[cfg(test)]
mod tests;

pub use aggregate::{PendingVerification, User, UserStatus};
pub use command::{UserChanges, UserCommand};
pub use error::UserError;
pub use event::UserEvent;
pub use services::{EmailRegistry, PasswordVerifier, ServiceError, UserServices};
