//! Chronicle's domain: the `User`, `Post` and `Session` aggregates as pure logic.
//!
//! Each aggregate lives in its own module with its commands, events and errors. Nothing here
//! does IO or reads a clock: time, ids and secrets arrive on the commands, and what needs the
//! outside world (claiming an email, checking a password) is a service trait that the server
//! implements. Event types are the public names (`post.published`), so the stored log and the
//! public form agree without a mapping table.

pub mod actor;
pub mod ids;
pub mod post;
pub mod session;
pub mod user;
pub mod values;

pub use actor::{Actor, Role};
pub use ids::{PostId, SessionId, UserId};

/// The version every event type is written with today; upcasters handle older shapes.
pub const EVENT_VERSION: &str = "1.0";

/// Rejects a command whose `If-Match` version is not the aggregate's current one.
pub fn check_version(expected: Option<u64>, current: u64) -> Result<(), u64> {
    match expected {
        Some(v) if v != current => Err(current),
        _ => Ok(()),
    }
}
