//! Spans for the events a projector applies, so a trace shows when each command's events
//! reached each read model. The runner knows nothing of trace propagation; the server hands it
//! a function that makes a span in the event's trace.

use tracing::Span;

use crate::log::StoredEvent;
use crate::projector::Projector;

/// Makes the span of one event applied by `projector` in a batch of `batch` events.
pub type EventSpan = fn(projector: &'static str, event: &StoredEvent, batch: usize) -> Span;

/// One span per event of the batch that the projector handles, open until dropped: a batch is
/// applied in one transaction, so each covers the whole batch's apply and commit.
pub(crate) fn around_batch(
    span_of: Option<EventSpan>,
    projector: &dyn Projector,
    events: &[StoredEvent],
) -> Vec<Span> {
    let Some(span_of) = span_of else {
        return Vec::new();
    };
    events
        .iter()
        .filter(|e| projector.handles(e))
        .map(|e| span_of(projector.name(), e, events.len()))
        .collect()
}
