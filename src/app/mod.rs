//! Use cases: what callers ask of Chronicle, as typed functions over the command buses and
//! read models. The HTTP handlers, the CLI and the tests call these; nothing here knows HTTP.
//! Each flow that spans aggregates (registration signs in, deactivation ends sessions, a
//! password reset revokes them) lives here once, and returns the log position a caller may
//! wait for before reading its own writes.

pub mod accounts;
pub mod analytics;
pub mod error;
pub mod failures;
pub mod history;
pub mod sessions;

use std::time::Duration;

use projections::Position;

pub use error::AppError;

use crate::state::AppState;

/// The bound on every read-your-writes wait.
pub const CONSISTENCY_WAIT: Duration = Duration::from_secs(2);

/// Waits until `read_models` have applied `position`. False when the bound ran out.
#[tracing::instrument(level = "trace", name = "read_your_writes.wait", skip(state, position))]
pub async fn caught_up(state: &AppState, read_models: &[&str], position: Option<Position>) -> bool {
    match position {
        Some(position) => {
            let started = std::time::Instant::now();
            let applied = state
                .progress
                .wait_for(read_models, position, CONSISTENCY_WAIT)
                .await;
            crate::recorder::consistency_waited(started.elapsed(), applied);
            applied
        }
        None => true,
    }
}
