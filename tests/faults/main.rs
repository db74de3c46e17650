//! Fault tests (issue #8): the real server, real Postgres and real NATS, with processes killed,
//! dependencies cut and the API fuzzed. Each test that takes a dependency down uses an instance
//! or proxy of its own on its own ports; the shared services are never touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
#[allow(dead_code)]
mod common;
#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod checks;
mod cluster;
mod concurrency;
mod fuzz;
mod kill;
mod leadership;
mod load;
mod nats;
mod postgres;
mod rebuild;
mod restart;
mod support;
mod webhooks;
