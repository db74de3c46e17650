//! Inline projection (as Marten calls it): a read model written in the same transaction that
//! appends the events, so the command's answer can be read back at once without waiting for
//! the projector's runner. The runner remains the read model's authority and applies the same
//! events again; an inline projection must make that harmless.

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::log::StoredEvent;
use crate::runner::ProjectionError;

#[async_trait]
pub trait InlineProjection: Send + Sync + 'static {
    /// The read model (the projector's name) that holds the events once this has applied them.
    fn read_model(&self) -> &'static str;

    /// Applies the just-appended events inside the append's transaction; true when the read
    /// model now shows every one of them, false when some are left to the runner.
    async fn apply_inline(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<bool, ProjectionError>;
}
