//! `/admin` (admins): the projectors' state.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::error::ApiError;
use crate::http::extract::AdminUser;
use crate::http::openapi::schemas::{Forbidden, Unauthorized};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_projections))
}

/// Every projector: its position and the log's head (tokens), lag in events, status
/// (`running`, `rebuilding`, `failed`, `stopped`), last error and when it last moved.
#[utoipa::path(
    get,
    path = "/api/v1/admin/projections",
    tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "`{data: [{name, position, head_position, lag, status, last_error, updated_at}]}`"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
async fn list_projections(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
) -> Result<Response, ApiError> {
    let statuses = projections::runner::statuses(&state.pool)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "data": statuses })).into_response())
}
