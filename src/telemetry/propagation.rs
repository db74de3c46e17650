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

/// The trace id of a W3C `traceparent` (`<version>-<trace id>-<parent id>-<flags>`), or `None`
/// when it is malformed: the specification tells a receiver to ignore such a value rather than
/// guess, and an id shown to an operator must be one the tracing backend knows. Checked here to
/// the letter (the propagator accepts a trace id one digit short).
pub fn trace_id(traceparent: &str) -> Option<String> {
    let lower_hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let well_formed = lower_hex(version, 2)
        && version != "ff"
        // Version 00 has exactly four fields; later versions may append more.
        && (version != "00" || parts.next().is_none())
        && lower_hex(trace, 32)
        && nonzero(trace)
        && lower_hex(parent, 16)
        && nonzero(parent)
        && lower_hex(flags, 2);
    well_formed.then(|| trace.to_owned())
}

#[cfg(test)]
mod tests {
    use super::trace_id;

    #[test]
    fn a_traceparent_yields_its_trace_id_and_a_malformed_one_nothing() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";

        assert_eq!(
            trace_id(&format!("00-{trace}-00f067aa0ba902b7-01")).as_deref(),
            Some(trace)
        );
        for malformed in [
            String::new(),
            format!("00-{trace}-00f067aa0ba902b7-01-extra"),
            format!("ff-{trace}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase()),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{trace}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", &trace[1..]),
            format!("00-{trace}-00f067aa0ba902b7"),
        ] {
            assert_eq!(trace_id(&malformed), None, "{malformed:?}");
        }
    }
}
