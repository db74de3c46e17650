//! W3C Trace Context across the boundaries a command's work crosses: the HTTP request that
//! asks for it, the events it appends (their metadata keeps a `traceparent`), the NATS messages
//! the relay publishes, the webhook requests and the emails that follow. Everything here is a
//! no-op while traces are not exported, so the hot paths pay one relaxed load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The metadata key, NATS header and HTTP header that carry the context.
pub const TRACEPARENT: &str = "traceparent";

static ENABLED: AtomicBool = AtomicBool::new(false);

pub(super) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are exported (an OTLP endpoint is configured).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The span's context as a `traceparent` value, for whatever it causes later or elsewhere.
pub fn traceparent(span: &Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::with_capacity(1);
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the context a `traceparent` names (an incoming request's, or the one
/// stored with an event). Call it before the span is first entered. An absent or malformed
/// value leaves the span where it was: a new trace, or its current parent's.
pub fn follow(span: &Span, traceparent: Option<&str>) {
    let Some(value) = traceparent.filter(|_| enabled()) else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The `traceparent` stored in an event's metadata.
pub fn of_metadata(metadata: &serde_json::Value) -> Option<&str> {
    metadata.get(TRACEPARENT).and_then(|v| v.as_str())
}

/// The trace id inside a `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace_id)
}

#[cfg(test)]
mod tests {
    use super::trace_id;

    #[test]
    fn the_trace_id_is_the_second_field_of_a_traceparent() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id("00-xyz-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id(""), None);
    }
}
