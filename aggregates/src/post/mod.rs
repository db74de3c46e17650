//! The post aggregate: drafts, edits, publishing and deletion.

mod aggregate;
mod command;
mod error;
mod event;
#[cfg(test)]
mod tests;

pub use aggregate::{Post, PostStatus};
pub use command::PostCommand;
pub use error::PostError;
pub use event::PostEvent;
