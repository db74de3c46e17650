//! Operating Chronicle over HTTP: `/api/v1/admin` (admins) for the projectors' state and
//! rebuilds, recent activity and failures, and the operator page at `/admin` that uses it.

mod activity;
mod emails;
mod page;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::error::ApiError;
use crate::http::extract::AdminUser;
use crate::http::respond::{Accepted, Answer};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_projections))
        .routes(routes!(rebuild_projection))
        .routes(routes!(emails::list_emails))
        .routes(routes!(emails::retry_email))
        .routes(routes!(activity::activity))
        .routes(routes!(activity::list_failures))
        .routes(routes!(page::page))
        .routes(routes!(page::script))
        .routes(routes!(page::charts))
        .routes(routes!(page::style))
}

/// Every projector: its position and the log's head (tokens), lag in events, status
/// (`running`, `rebuilding`, `failed`, `stopped`), last error and when it last moved; `rebuild`
/// (`{applied, total, started_at}`) while one runs and `last_rebuild` (`{finished_at, applied}`)
/// once one has finished; `leader_epoch` and `leader_since` of its current leader. `relay` is the
/// NATS relay's checkpoint and leader; `leadership` the terms the answering instance led
/// (`{role, epoch, since, until}`, `until` null while it leads).
#[utoipa::path(
    get,
    path = "/api/v1/admin/projections",
    tag = "admin",
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "`{data: [{name, position, head_position, lag, status, last_error, updated_at, rebuild, last_rebuild, leader_epoch, leader_since}], relay: {stream, position, leader_epoch, leader_since}, leadership: [{role, epoch, since, until}]}`"),
    )
)]
async fn list_projections(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
) -> Result<Response, ApiError> {
    let statuses = projections::status::statuses(&state.pool).await?;
    let relay = crate::fanout::relay::status(&state.pool, &state.config.nats_stream).await?;
    Ok(Json(json!({
        "data": statuses,
        "relay": relay,
        "leadership": state.leader_terms.terms(),
    }))
    .into_response())
}

/// Rebuild a projector without downtime (shadow tables, then a swap); 202 at once, progress in
/// `GET /admin/projections`. The request is durable: the projector's leading instance carries it
/// out, and another resumes it if that instance dies. A rebuild already requested or running is
/// a 409.
#[utoipa::path(
    post,
    path = "/api/v1/admin/projections/{name}/rebuild",
    tag = "admin",
    params(("name" = String, Path, description = "The projector: users, posts or sessions.")),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 202, description = "Accepted: the leading instance carries it out"),
        (status = 409, description = "CONFLICT: a rebuild of this projector is already requested or running"),
    )
)]
async fn rebuild_projection(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(name): Path<String>,
) -> Result<Answer<Accepted>, ApiError> {
    // A durable request: whichever instance leads the projector carries it out, and its
    // successor resumes it should that instance die.
    match projections::rebuild::request(&state.pool, &name).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(ApiError::Conflict {
                code: "CONFLICT",
                detail: format!("a rebuild of {name} is already requested or running"),
            })
        }
        Err(projections::rebuild::RebuildError::Unknown(_)) => return Err(ApiError::NotFound),
        Err(projections::rebuild::RebuildError::Database(e)) => return Err(ApiError::internal(e)),
        Err(e) => return Err(ApiError::internal(e)),
    }
    Ok(Answer::accepted())
}
