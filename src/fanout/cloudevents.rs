//! The CloudEvents 1.0 JSON document each event becomes on NATS.

use projections::log::StoredEvent;
use projections::public::public_data;
use serde_json::{json, Value};

use crate::telemetry::propagation;

/// `<prefix>.<aggregate>.<event>`, e.g. `chronicle.events.post.published`.
pub fn subject(prefix: &str, event: &StoredEvent) -> String {
    format!("{prefix}.{}", event.event_type)
}

/// Extensions are strings, as CloudEvents requires; `position` is the token that
/// `Chronicle-Min-Position` accepts.
pub fn cloud_event(event: &StoredEvent) -> Value {
    let mut cloud_event = json!({
        "specversion": "1.0",
        "id": event.event_id,
        "source": "/chronicle",
        "type": event.event_type,
        "subject": format!("{}/{}", event.aggregate_type, event.aggregate_id),
        "time": event.recorded_at,
        "datacontenttype": "application/json",
        "data": public_data(&event.event_type, &event.payload),
        "position": event.position.to_string(),
        "aggregateid": event.aggregate_id,
        "aggregateversion": event.sequence.to_string(),
        "correlationid": event.metadata.get("correlation_id").and_then(Value::as_str).unwrap_or_default(),
        "actorid": event.metadata.get("actor_id").and_then(Value::as_str).unwrap_or_default(),
    });
    // CloudEvents' distributed-tracing extension: the context of the command that appended
    // the event, when it was traced.
    if let Some(traceparent) = propagation::of_metadata(&event.metadata) {
        cloud_event[propagation::TRACEPARENT] = Value::from(traceparent);
    }
    cloud_event
}
