//! `GET /metrics`: Prometheus text. Requests by route template and status, latency histograms,
//! requests in flight, each projector's and the NATS relay's lag behind the log, webhook
//! deliveries and emails by outcome.
//!
//! A scrape asks nothing of the database: the lags come from positions this instance already
//! follows in memory (the log's head from the revocation follower, projector positions from
//! progress notifications, the relay's checkpoint from the relay it leads). Every family is
//! registered at start, so a dashboard or alert sees zeros rather than no data.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use projections::Position;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::error::ApiError;
use crate::recorder::{handle, EMAIL_OUTCOMES, WEBHOOK_OUTCOMES};
use crate::state::AppState;

/// Counts and times matched requests by their route template, never the raw path, so ids do
/// not explode the label space.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let in_flight = metrics::gauge!("http_requests_in_flight");
    in_flight.increment(1.0);
    let started = Instant::now();

    let response = next.run(req).await;

    in_flight.decrement(1.0);
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Registers every family at zero (with its help text), so the first scrape shows them all.
pub fn register_families(state: &AppState) {
    if handle().is_none() {
        return;
    }
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency, by method and route template"
    );
    metrics::describe_gauge!("http_requests_in_flight", "HTTP requests being handled");
    metrics::describe_gauge!(
        "chronicle_http_connections_open",
        "open client connections (at most MAX_CONNECTIONS)"
    );
    metrics::describe_gauge!(
        "chronicle_projection_lag_events",
        "events in the log that the projector has not applied yet (from log positions)"
    );
    metrics::describe_gauge!(
        "chronicle_projection_failed",
        "1 while the projector fails and retries (reported by the instance running it)"
    );
    metrics::describe_gauge!(
        "chronicle_relay_lag_events",
        "events in the log not yet acknowledged by JetStream (reported by the instance leading the relay)"
    );
    metrics::describe_counter!(
        "chronicle_relay_published_total",
        "events published to JetStream"
    );
    metrics::describe_counter!(
        "webhook_deliveries_total",
        "webhook delivery attempts, by outcome"
    );
    metrics::describe_counter!("chronicle_emails_total", "emails sent, by outcome");

    // Each series below is one the server produces anyway; registering it creates it at zero.
    let (method, route) = ("GET", "/metrics");
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => "200")
        .increment(0);
    let _ =
        metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route);
    metrics::gauge!("http_requests_in_flight").increment(0.0);
    metrics::gauge!("chronicle_http_connections_open").increment(0.0);
    for projector in state.progress.names() {
        metrics::gauge!("chronicle_projection_lag_events", "projector" => projector).increment(0.0);
        metrics::gauge!("chronicle_projection_failed", "projector" => projector).increment(0.0);
    }
    metrics::gauge!("chronicle_relay_lag_events", "stream" => state.config.nats_stream.clone())
        .increment(0.0);
    metrics::counter!("chronicle_relay_published_total").increment(0);
    for outcome in WEBHOOK_OUTCOMES {
        metrics::counter!("webhook_deliveries_total", "outcome" => *outcome).increment(0);
    }
    for outcome in EMAIL_OUTCOMES {
        metrics::counter!("chronicle_emails_total", "outcome" => *outcome).increment(0);
    }
    // Also on instances whose consumers have not reached NATS yet, or run none.
    for consumer in crate::fanout::NATS_CONSUMERS {
        metrics::counter!("chronicle_nats_foreign_messages_total", "consumer" => *consumer)
            .increment(0);
    }
}

/// Events after `from` up to `head`, from the log's global numbering: exact unless an append
/// rolled back (a gap) or transactions committed out of number order.
pub(crate) fn events_between(from: Position, head: Position) -> f64 {
    if from >= head {
        return 0.0;
    }
    (head.position - from.position).max(1) as f64
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in constant time
/// (the digests hide the token's length too).
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, credentials)| credentials.trim());
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(token.as_bytes());
    given.ct_eq(&expected).into()
}

/// Sets the lag gauges from memory, then renders everything.
pub async fn render(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics_token {
        if !bearer_matches(&headers, token) {
            return ApiError::unauthorized().into_response();
        }
    }
    let Some(handle) = handle() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response();
    };
    let head = state.revocations.followed_to();
    for projector in state.progress.names() {
        let at = state.progress.current(projector).unwrap_or(Position::START);
        metrics::gauge!("chronicle_projection_lag_events", "projector" => projector)
            .set(events_between(at, head));
    }
    if let Some(relay) = state.gauges.relay() {
        metrics::gauge!("chronicle_relay_lag_events", "stream" => state.config.nats_stream.clone())
            .set(events_between(relay, head));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn lag_counts_positions_between_a_checkpoint_and_the_head() {
        let head = Position::new(20, 107);

        assert_eq!(events_between(head, head), 0.0);
        assert_eq!(events_between(Position::new(12, 100), head), 7.0);
        assert_eq!(events_between(Position::new(25, 1), head), 0.0);
        assert_eq!(
            events_between(Position::new(19, 200), head),
            1.0,
            "behind, even when numbered later"
        );
    }

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            headers
        };

        assert!(bearer_matches(&with("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(&with("bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(&with("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(&with("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }
}
