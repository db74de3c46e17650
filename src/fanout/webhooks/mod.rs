//! Webhooks: endpoints, signed deliveries and their retries.

pub mod addresses;
pub mod consumer;
pub mod delivery;
pub mod replay;
pub mod signing;
pub mod store;
pub mod targets;
