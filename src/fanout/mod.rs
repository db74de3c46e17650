//! Fan-out of the log beyond Postgres: the NATS JetStream relay and its message format.

pub mod cloudevents;
pub mod relay;
