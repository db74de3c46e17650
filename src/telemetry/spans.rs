//! The spans of work that an event causes after its command has answered, each made a child of
//! the command through the `traceparent` its event carries (metadata, NATS header or the
//! CloudEvent's distributed-tracing attribute). They are `TRACE` spans: without an exporter
//! they are disabled where they are made.

use projections::log::StoredEvent;
use tracing::Span;

use crate::telemetry::propagation::{self, of_metadata};

/// A projector applying one event, in a batch of `batch` (a [`projections::event_spans::EventSpan`]).
pub fn projection_apply(projector: &'static str, event: &StoredEvent, batch: usize) -> Span {
    let span = tracing::trace_span!(
        "projection.apply",
        otel.name = %format_args!("{projector} apply"),
        projector,
        event.id = %event.event_id,
        event.type = %event.event_type,
        batch.size = batch,
    );
    propagation::follow(&span, of_metadata(&event.metadata));
    span
}

/// The relay publishing one event to JetStream.
pub fn relay_publish(subject: &str, event: &StoredEvent) -> Span {
    let span = tracing::trace_span!(
        "relay.publish",
        otel.name = %format_args!("publish {subject}"),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.destination.name = subject,
        event.id = %event.event_id,
        event.type = %event.event_type,
    );
    propagation::follow(&span, of_metadata(&event.metadata));
    span
}

/// A consumer of the NATS stream handling one CloudEvent (`webhooks`, `analytics`).
pub fn consume(consumer: &'static str, traceparent: Option<&str>, event_type: &str) -> Span {
    let span = tracing::trace_span!(
        "nats.consume",
        otel.name = %format_args!("process {consumer}"),
        otel.kind = "consumer",
        messaging.system = "nats",
        consumer,
        event.type = event_type,
    );
    propagation::follow(&span, traceparent);
    span
}

/// One attempt to deliver a webhook message.
pub fn webhook_attempt(
    traceparent: Option<&str>,
    endpoint: uuid::Uuid,
    delivery: uuid::Uuid,
    attempt: i32,
) -> Span {
    let span = tracing::trace_span!(
        "webhook.deliver",
        otel.name = "webhook deliver",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        webhook.endpoint_id = %endpoint,
        webhook.delivery_id = %delivery,
        webhook.attempt = attempt,
        http.response.status_code = tracing::field::Empty,
    );
    propagation::follow(&span, traceparent);
    span
}

/// Sending one email of the outbox.
pub fn email_send(traceparent: Option<&str>, kind: &str, attempt: i32) -> Span {
    let span = tracing::trace_span!(
        "email.send",
        otel.name = %format_args!("email {kind} send"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        email.kind = kind,
        email.attempt = attempt,
    );
    propagation::follow(&span, traceparent);
    span
}
