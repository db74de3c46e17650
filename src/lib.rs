//! Chronicle: an event-sourced CQRS backend.
//!
//! A guided tour, in the order a request meets the code:
//!
//! - [`config`] reads the environment; [`telemetry`] sets up logging; [`startup`] connects the
//!   database, applies [`db::MIGRATOR`], builds the [`state::AppState`], starts the background
//!   workers under the [`supervisor`] and serves through [`server`].
//! - [`http`] is the edge. [`http::layers`] stacks the middleware: request id and span,
//!   authentication ([`http::authenticate`]), the rate limits ([`rate_limits`]), idempotency
//!   keys; every error is an RFC 9457 problem ([`http::error`], which maps each domain refusal
//!   variant by variant). Extractors ([`http::extract`]) give handlers the caller and the input
//!   already parsed into domain values ([`http::parse`] for bodies, [`http::query`] for query
//!   strings). Handlers are extract, call, answer: every success is one [`http::respond::Answer`].
//! - [`app`] holds the use cases that span aggregates or read models (sign-up, sign-in,
//!   sessions, password resets, histories, analytics); handlers, the CLI and the tests call it.
//! - Commands go through [`commands::CommandBus`]: the cached or loaded aggregate, the pure
//!   domain (the `aggregates` crate, cqrs-es's `Aggregate` trait), the append through
//!   [`commands::store::EventLog`], shared with concurrent commands by
//!   [`commands::group::GroupCommit`].
//! - The `projections` crate follows the log: one tail per process feeds the projectors that
//!   keep the read models, and the answer waits (bounded) until they show the command
//!   ([`http::consistency::when_applied`]).
//! - [`fanout`] relays the log to NATS JetStream, and consumes it for webhooks and analytics;
//!   [`email`] sends the transactional mail from its outbox.
//! - [`auth`] holds argon2id hashing, JWT access tokens, refresh tokens and API keys.
//! - [`recorder`] is the metrics registry `/metrics` renders; [`activity`] samples what the
//!   operator page charts; [`cli`] the `chronicle` command.
//!
//! `POST /api/v1/posts`, for instance: `http::posts::write::create_post` receives a
//! `NewPost` parsed from `CreatePostRequest`, sends `PostCommand::Create` to `state.posts`
//! (a `CommandBus<Post>`), and answers `http::consistency::command_answer` with the `PostView`
//! of the state the command produced, once the `posts` read model has applied its events.

pub mod activity;
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
