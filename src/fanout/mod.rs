//! Fan-out of the log beyond Postgres: the NATS JetStream relay, its message format, and
//! webhooks.

pub mod analytics;
pub mod cloudevents;
pub mod from_log;
pub mod nats;
pub mod nats_status;
pub mod relay;
pub mod webhooks;

/// The durable JetStream consumers that act on the stream, by their durable names.
pub const NATS_CONSUMERS: &[&str] = &[analytics::CONSUMER, webhooks::consumer::CONSUMER];
