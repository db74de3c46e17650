//! The session aggregate: one per sign-in, holding its refresh-token chain.

mod aggregate;
mod command;
mod error;
mod event;
#[cfg(test)]
mod tests;

pub use aggregate::{RetiredToken, Session, SessionStatus};
pub use command::SessionCommand;
pub use error::SessionError;
pub use event::SessionEvent;
