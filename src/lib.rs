//! Chronicle: an event-sourced CQRS backend.
//!
//! A guided tour, in the order a request meets the code:
//!
//! - [`config`] reads the environment; [`telemetry`] sets up logging; [`startup`] connects the
//!   database, applies [`db::MIGRATOR`], builds the [`state::AppState`] and serves.
//! - [`http`] is the edge: [`http::middleware`] gives each request its id and span and renders
//!   every error as an RFC 9457 problem ([`http::error`]); [`http::extract`] turns requests into
//!   validated input and an authenticated [`auth::Principal`]; one module per URL collection
//!   holds thin handlers.
//! - [`app`] holds the use cases that span aggregates (sign-up, sign-in, sessions, password
//!   resets); handlers and the CLI call it.
//! - Handlers send commands through [`commands::CommandBus`], which runs the pure domain (the
//!   `aggregates` crate, cqrs-es's `Aggregate` trait) on cached or loaded state and appends
//!   through [`commands::store::EventLog`] to the Postgres event log.
//! - [`auth`] holds argon2id hashing, JWT access tokens and refresh tokens.
//! - [`fanout`] relays the log to NATS JetStream.
//! - [`supervisor`] runs the background workers: logs, counts and restarts the ones that fail.
//! - [`cli`] is the `chronicle` command line.

pub mod app;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod email;
pub mod fanout;
pub mod http;
pub mod rate_limits;
pub mod recorder;
pub mod server;
pub mod startup;
pub mod state;
pub mod supervisor;
pub mod telemetry;
