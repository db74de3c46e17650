//! Liveness and readiness.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::db::{applied_migrations, MIGRATOR};
use crate::http::openapi::schemas::{Liveness, Readiness};
use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness.
///
/// The process answers. No dependency is checked, so an outage elsewhere does not get healthy
/// instances restarted.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is alive", body = Liveness))
)]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness.
///
/// Ready when Postgres answers and every migration is applied. NATS is reported (the state of
/// this server's own NATS connection) but does not fail readiness: commands keep working while
/// it is down and the relay catches up later.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: Postgres answers and the migrations are applied",
            body = Readiness),
        (status = 503, description = "Not ready: the same report, naming the failing checks",
            body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (postgres, migrations) =
        match tokio::time::timeout(CHECK_TIMEOUT, applied_migrations(&state.pool)).await {
            Ok(Ok(applied)) => {
                let all_applied = MIGRATOR.iter().all(|m| applied.contains(&m.version));
                ("up", if all_applied { "applied" } else { "pending" })
            }
            _ => ("down", "pending"),
        };
    let nats = if state.nats.is_connected() {
        "up"
    } else {
        "down"
    };
    let ready = postgres == "up" && migrations == "applied";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": { "postgres": postgres, "migrations": migrations, "nats": nats },
    });
    (status, Json(body))
}
