//! Webhooks: endpoints, signed deliveries and their retries.

pub mod consumer;
pub mod delivery;
pub mod signing;
pub mod store;
pub mod targets;
