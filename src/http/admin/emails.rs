//! `/api/v1/admin/emails` (admins): the outbox without bodies, and retrying failed messages.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::email::store::{self, EmailView, RetryOutcome};
use crate::http::error::ApiError;
use crate::http::extract::{AdminUser, PathId};
use crate::http::listing::{QueryParams, StatusList};
use crate::http::openapi::schemas::{BadRequest, Forbidden, IdPath, Items, NotFound, Unauthorized};
use crate::state::AppState;

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EmailParams {
    /// `pending`, `sent` or `failed`.
    status: Option<String>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// The outbox, newest first: every message's addressing, status and attempts, never its body.
#[utoipa::path(
    get,
    path = "/api/v1/admin/emails",
    tag = "admin",
    params(EmailParams),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The messages", body = Items<EmailView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
pub(super) async fn list_emails(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let StatusList { status, limit } = StatusList::parse(&params, &["pending", "sent", "failed"])?;
    let emails = store::list(&state.pool, limit, status.as_deref())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "data": emails })).into_response())
}

/// Send a failed message again: it is `pending` once more, with a fresh 24 h of retries.
#[utoipa::path(
    post,
    path = "/api/v1/admin/emails/{id}/retry",
    tag = "admin",
    params(IdPath),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "Queued"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "CONFLICT: the message has not failed (it is pending or sent)."),
    )
)]
pub(super) async fn retry_email(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    PathId(id): PathId<Uuid>,
) -> Result<Response, ApiError> {
    match store::retry(&state.pool, id)
        .await
        .map_err(ApiError::internal)?
    {
        RetryOutcome::Queued => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "data": { "status": "accepted" } })),
        )
            .into_response()),
        RetryOutcome::NotFound => Err(ApiError::NotFound),
        RetryOutcome::NotFailed => Err(ApiError::Conflict {
            code: "CONFLICT",
            detail: "only a failed message can be retried".into(),
        }),
    }
}
