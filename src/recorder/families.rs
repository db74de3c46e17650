//! Every metric family: its help text, and its series created at start, so the first scrape
//! shows them all and a dashboard or alert sees zeros rather than no data.

use aggregates::post::Post;
use aggregates::session::Session;
use aggregates::user::User;
use cqrs_es::Aggregate;
use metrics::Unit;

use super::commands;
use super::{handle, EMAIL_OUTCOMES, POOL_NAME, RATE_LIMIT_GROUPS, WEBHOOK_OUTCOMES};
use crate::state::AppState;

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

use Kind::{Counter, Gauge, Histogram};

/// Chronicle's own families and the OpenTelemetry ones it fills; the process families come from
/// `metrics-process`. README's operator section lists the same.
#[rustfmt::skip]
const FAMILIES: &[(Kind, &str, Unit, &str)] = &[
    (Histogram, "http_server_request_duration_seconds", Unit::Seconds,
     "HTTP requests answered and their latency, by method, route template and status code"),
    (Gauge, "http_server_active_requests", Unit::Count, "HTTP requests being handled"),
    (Gauge, "chronicle_http_connections_open", Unit::Count,
     "open client connections (at most MAX_CONNECTIONS)"),
    (Counter, "chronicle_commands_total", Unit::Count,
     "commands run, by aggregate, command and outcome (ok, rejected, conflict, error)"),
    (Histogram, "chronicle_command_duration_seconds", Unit::Seconds,
     "command latency from state to append, by aggregate, command and outcome"),
    (Counter, "chronicle_events_appended_total", Unit::Count,
     "events appended to the log, by aggregate type"),
    (Histogram, "chronicle_append_events", Unit::Count, "events one command appended"),
    (Histogram, "chronicle_append_group_commands", Unit::Count,
     "commands whose events went into the log in one group-commit statement"),
    (Histogram, "chronicle_read_your_writes_wait_seconds", Unit::Seconds,
     "time an answer waited for its read models, by outcome (applied, timeout)"),
    (Counter, "chronicle_read_your_writes_timeouts_total", Unit::Count,
     "answers whose read models had not caught up within the bound (given as eventual, or 503 for queries)"),
    (Gauge, "chronicle_projection_lag_events", Unit::Count,
     "events in the log that the projector has not applied yet (from log positions)"),
    (Gauge, "chronicle_projection_failed", Unit::Count,
     "1 while the projector fails and retries (reported by the instance running it)"),
    (Counter, "chronicle_projection_failures_total", Unit::Count,
     "failed projector batches, each retried with backoff"),
    (Histogram, "chronicle_projection_batch_events", Unit::Count,
     "events in each batch a projector applied"),
    (Histogram, "chronicle_projection_apply_duration_seconds", Unit::Seconds,
     "time to apply a batch and commit it with its checkpoint, by projector"),
    (Gauge, "chronicle_projection_rebuild_running", Unit::Count,
     "1 while this instance rebuilds the projector's read model on request"),
    (Gauge, "chronicle_projection_rebuild_applied_events", Unit::Count,
     "events the running (or last) rebuild has applied"),
    (Gauge, "chronicle_projection_rebuild_planned_events", Unit::Count,
     "events the running (or last) rebuild has to apply in all"),
    (Counter, "chronicle_log_tail_misses_total", Unit::Count,
     "log reads the in-memory tail could not answer, so the database did"),
    (Gauge, "chronicle_relay_lag_events", Unit::Count,
     "events in the log not yet acknowledged by JetStream (reported by the instance leading the relay)"),
    (Counter, "chronicle_relay_published_total", Unit::Count, "events published to JetStream"),
    (Histogram, "chronicle_relay_publish_duration_seconds", Unit::Seconds,
     "time to publish a batch of events and have JetStream acknowledge it"),
    (Gauge, "chronicle_nats_connected", Unit::Count,
     "1 while the server's own NATS connection is up (what /readyz reports)"),
    (Counter, "chronicle_nats_foreign_messages_total", Unit::Count,
     "messages on the stream that did not come from the relay, skipped, by consumer"),
    (Counter, "chronicle_webhook_deliveries_total", Unit::Count,
     "webhook delivery attempts, by outcome"),
    (Histogram, "chronicle_webhook_delivery_duration_seconds", Unit::Seconds,
     "time a webhook endpoint took to answer an attempt (or fail to)"),
    (Counter, "chronicle_webhook_endpoints_disabled_total", Unit::Count,
     "webhook endpoints disabled by the dispatcher (they answered 410 Gone)"),
    (Counter, "chronicle_emails_total", Unit::Count, "emails sent, by outcome"),
    (Counter, "chronicle_rate_limit_rejections_total", Unit::Count,
     "requests refused with 429, by budget (api, auth)"),
    (Gauge, "db_client_connections_usage", Unit::Count,
     "database connections in the pool, by state (idle, used)"),
    (Gauge, "db_client_connections_max", Unit::Count,
     "the most connections the pool opens (DATABASE_MAX_CONNECTIONS)"),
    (Histogram, "db_client_connections_wait_time_seconds", Unit::Seconds,
     "time a command's append waited for a pooled connection"),
    (Counter, "db_client_connections_timeouts_total", Unit::Count,
     "waits for a pooled connection that ran out of time"),
    (Counter, "chronicle_worker_restarts_total", Unit::Count,
     "background workers restarted after a panic or an unexpected return, by worker"),
    (Gauge, "chronicle_workers_running", Unit::Count,
     "background workers running in this process, by worker"),
    (Gauge, "chronicle_build_info", Unit::Count,
     "always 1; the running build's version and git commit as labels"),
];

/// The commit the binary was built from, recorded by `build.rs`.
const GIT_SHA: &str = env!("CHRONICLE_GIT_SHA");

fn describe() {
    for (kind, name, unit, help) in FAMILIES {
        match kind {
            Counter => metrics::describe_counter!(*name, *unit, *help),
            Gauge => metrics::describe_gauge!(*name, *unit, *help),
            Histogram => metrics::describe_histogram!(*name, *unit, *help),
        }
    }
    super::scrape::process().describe();
}

/// Describes every family and creates each series whose labels are known at start at zero.
pub fn register(state: &AppState) {
    if handle().is_none() {
        return;
    }
    describe();
    metrics::gauge!("chronicle_build_info", "version" => env!("CARGO_PKG_VERSION"), "git_sha" => GIT_SHA)
        .set(1.0);

    // Each series below is one the server produces anyway; creating it shows it at zero.
    let _ = metrics::histogram!("http_server_request_duration_seconds", "http_request_method" => "GET", "http_route" => "/metrics", "http_response_status_code" => "200");
    metrics::gauge!("http_server_active_requests").increment(0.0);
    metrics::gauge!("chronicle_http_connections_open").increment(0.0);

    commands::register(Post::TYPE, commands::POST_COMMANDS);
    commands::register(User::TYPE, commands::USER_COMMANDS);
    commands::register(Session::TYPE, commands::SESSION_COMMANDS);
    let _ = metrics::histogram!("chronicle_append_events");
    let _ = metrics::histogram!("chronicle_append_group_commands");
    for outcome in ["applied", "timeout"] {
        let _ =
            metrics::histogram!("chronicle_read_your_writes_wait_seconds", "outcome" => outcome);
    }
    metrics::counter!("chronicle_read_your_writes_timeouts_total").increment(0);

    for projector in state.progress.names() {
        for gauge in [
            "chronicle_projection_lag_events",
            "chronicle_projection_failed",
            "chronicle_projection_rebuild_running",
            "chronicle_projection_rebuild_applied_events",
            "chronicle_projection_rebuild_planned_events",
        ] {
            metrics::gauge!(gauge, "projector" => projector).increment(0.0);
        }
        metrics::counter!("chronicle_projection_failures_total", "projector" => projector)
            .increment(0);
        let _ = metrics::histogram!("chronicle_projection_batch_events", "projector" => projector);
        let _ = metrics::histogram!("chronicle_projection_apply_duration_seconds", "projector" => projector);
    }
    metrics::counter!("chronicle_log_tail_misses_total").increment(0);

    metrics::gauge!("chronicle_relay_lag_events", "stream" => state.config.nats_stream.clone())
        .increment(0.0);
    metrics::counter!("chronicle_relay_published_total").increment(0);
    let _ = metrics::histogram!("chronicle_relay_publish_duration_seconds");
    metrics::gauge!("chronicle_nats_connected").increment(0.0);
    // Also on instances whose consumers have not reached NATS yet, or run none.
    for consumer in crate::fanout::NATS_CONSUMERS {
        metrics::counter!("chronicle_nats_foreign_messages_total", "consumer" => *consumer)
            .increment(0);
    }

    for outcome in WEBHOOK_OUTCOMES {
        metrics::counter!("chronicle_webhook_deliveries_total", "outcome" => *outcome).increment(0);
    }
    let _ = metrics::histogram!("chronicle_webhook_delivery_duration_seconds");
    metrics::counter!("chronicle_webhook_endpoints_disabled_total").increment(0);
    for outcome in EMAIL_OUTCOMES {
        metrics::counter!("chronicle_emails_total", "outcome" => *outcome).increment(0);
    }
    for group in RATE_LIMIT_GROUPS {
        metrics::counter!("chronicle_rate_limit_rejections_total", "group" => *group).increment(0);
    }

    let _ =
        metrics::histogram!("db_client_connections_wait_time_seconds", "pool_name" => POOL_NAME);
    metrics::counter!("db_client_connections_timeouts_total", "pool_name" => POOL_NAME)
        .increment(0);
    super::pool::sample(&state.pool);
    super::scrape::process().collect();
}
