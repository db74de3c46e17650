//! Chronicle's read side: the global log reader, the projector runner with checkpoints and
//! leadership, the public event form, and the read models with their queries.

pub mod leader;
pub mod listing;
pub mod log;
pub mod position;
pub mod posts;
pub mod public;
pub mod rebuild;
pub mod runner;
pub mod sessions;
pub mod tail;
pub mod users;

pub use position::Position;

use std::sync::Arc;

/// Every projector this build knows, in the order they are started.
pub fn all_projectors() -> Vec<Arc<dyn runner::Projector>> {
    vec![
        Arc::new(users::UsersProjector),
        Arc::new(posts::PostsProjector),
        Arc::new(sessions::SessionsProjector),
    ]
}
