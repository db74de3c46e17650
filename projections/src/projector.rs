//! What a read model is to the runner: the [`Projector`] trait and the errors applying a batch
//! can end in.

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::log::StoredEvent;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Another instance took over the projector: this runner's epoch is no longer the row's.
    #[error("another instance leads this projector now")]
    Fenced,
    #[error("event {event_id} ({event_type}) cannot be applied: {reason}")]
    BadEvent {
        event_id: uuid::Uuid,
        event_type: String,
        reason: String,
    },
}

impl ProjectionError {
    pub fn bad_event(event: &StoredEvent, reason: impl std::fmt::Display) -> Self {
        Self::BadEvent {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            reason: reason.to_string(),
        }
    }
}

/// A read model: its name, its tables, and how a batch of events changes them.
#[async_trait]
pub trait Projector: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// The tables this projector owns, emptied by a reset.
    fn tables(&self) -> &'static [&'static str];

    /// Whether applying this event can change the read model. A batch with nothing this
    /// projector handles costs no transaction: the runner only moves its position.
    fn handles(&self, _event: &StoredEvent) -> bool {
        true
    }

    /// Applies events in log order inside the runner's transaction. Must be idempotent per
    /// event (set values, upsert), though the checkpoint already prevents repeats.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError>;
}
