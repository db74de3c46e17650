//! Black-box tests: each starts the real server on its own database and talks HTTP to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_page;
mod analytics;
mod auth;
mod authorization;
mod cli;
mod concurrency;
mod edge;
mod email;
mod errors;
mod health;
mod helpers;
mod instances;
mod log_and_projectors;
mod mailbox;
mod openapi;
mod operators;
mod posts;
mod queries;
mod rebuild;
mod relay;
mod security;
mod store;
mod users;
mod webhooks;
