//! `GET /metrics`: Prometheus text. Requests by route template and status, latency histograms,
//! requests in flight, each projector's and the NATS relay's lag behind the log.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::Row;

use crate::state::AppState;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide recorder (metrics has one global recorder; every server in this process
/// reports through it).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

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

/// Refreshes the projection gauges, then renders everything.
pub async fn render(State(state): State<AppState>) -> Response {
    let Some(handle) = handle() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response();
    };
    if let Ok(rows) =
        sqlx::query("SELECT name, transaction_id, position, status FROM projection_checkpoints")
            .fetch_all(&state.pool)
            .await
    {
        for row in rows {
            let (Ok(name), Ok(tx), Ok(pos), Ok(status)) = (
                row.try_get::<String, _>("name"),
                row.try_get::<i64, _>("transaction_id"),
                row.try_get::<i64, _>("position"),
                row.try_get::<String, _>("status"),
            ) else {
                continue;
            };
            if let Ok(lag) =
                projections::log::count_after(&state.pool, projections::Position::new(tx, pos))
                    .await
            {
                metrics::gauge!("chronicle_projection_lag_events", "projector" => name.clone())
                    .set(lag as f64);
            }
            metrics::gauge!("chronicle_projection_failed", "projector" => name)
                .set(if status == "failed" { 1.0 } else { 0.0 });
        }
    }
    if let Ok(rows) = sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT stream, transaction_id, position FROM relay_checkpoints",
    )
    .fetch_all(&state.pool)
    .await
    {
        for (stream, tx, pos) in rows {
            if let Ok(lag) =
                projections::log::count_after(&state.pool, projections::Position::new(tx, pos))
                    .await
            {
                metrics::gauge!("chronicle_relay_lag_events", "stream" => stream).set(lag as f64);
            }
        }
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
