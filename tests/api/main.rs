//! Black-box tests: each starts the real server on its own database and talks HTTP to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_page;
mod analytics;
mod auth;
mod authorization;
mod cli;
mod concurrency;
mod edge;
mod errors;
mod health;
mod helpers;
mod instances;
mod log_and_projectors;
mod openapi;
mod operators;
mod posts;
mod queries;
mod rebuild;
mod relay;
mod security;
mod security_idempotency;
mod security_keys;
mod store;
mod users;
mod webhooks;
