//! Chronicle's read side: the global log reader, the projector runner with checkpoints and
//! leadership, the public event form, and the read models with their queries.
//!
//! The runner's parts: [`projector`] is what a read model implements, [`runner`] applies the log
//! to one under [`leader`]ship, [`progress`] is how far each has got as this process sees it,
//! [`status`] and [`reset`] are what operators see and do, [`measure`] what they scrape.

pub mod event_spans;
pub mod leader;
pub mod listing;
pub mod log;
pub mod measure;
pub mod position;
pub mod posts;
pub mod progress;
pub mod projector;
pub mod public;
pub mod rebuild;
pub mod reset;
pub mod runner;
pub mod sessions;
pub mod status;
pub mod tail;
pub mod users;

pub use position::Position;

use std::sync::Arc;

/// Every projector this build knows, in the order they are started.
pub fn all_projectors() -> Vec<Arc<dyn projector::Projector>> {
    vec![
        Arc::new(users::UsersProjector),
        Arc::new(posts::PostsProjector),
        Arc::new(sessions::SessionsProjector),
    ]
}
