//! `/api/v1/admin/emails` (admins): the outbox without bodies, and retrying failed messages.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::email::store::{self, EmailView, RetryOutcome};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{AdminUser, PathId};
use crate::http::openapi::schemas::{IdPath, Items};
use crate::http::parse::Parse;
use crate::http::query::{StatusList, StrictQuery};
use crate::http::respond::{Accepted, Answer};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EmailParams {
    /// `pending`, `sent` or `failed`.
    status: Option<String>,
    /// 1 to 100, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

impl Parse for EmailParams {
    type Output = StatusList;

    fn parse(self) -> Result<StatusList, Vec<FieldError>> {
        StatusList::from_query(
            self.status,
            self.limit.as_deref(),
            &["pending", "sent", "failed"],
        )
    }
}

/// The outbox, newest first: every message's addressing, status and attempts, never its body.
#[utoipa::path(
    get,
    path = "/api/v1/admin/emails",
    tag = "admin",
    params(EmailParams),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The messages", body = Items<EmailView>),
    )
)]
pub(super) async fn list_emails(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    StrictQuery(list): StrictQuery<EmailParams>,
) -> Result<Answer<Vec<EmailView>>, ApiError> {
    let emails = store::list(&state.pool, list.limit, list.status.as_deref()).await?;
    Ok(Answer::ok(emails))
}

/// Send a failed message again: it is `pending` once more, with a fresh 24 h of retries.
#[utoipa::path(
    post,
    path = "/api/v1/admin/emails/{id}/retry",
    tag = "admin",
    params(IdPath),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 202, description = "Queued"),
        (status = 409, description = "CONFLICT: the message has not failed (it is pending or sent)."),
    )
)]
pub(super) async fn retry_email(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    PathId(id): PathId<Uuid>,
) -> Result<Answer<Accepted>, ApiError> {
    match store::retry(&state.pool, id).await? {
        RetryOutcome::Queued => Ok(Answer::accepted()),
        RetryOutcome::NotFound => Err(ApiError::NotFound),
        RetryOutcome::NotFailed => Err(ApiError::Conflict {
            code: "CONFLICT",
            detail: "only a failed message can be retried".into(),
        }),
    }
}
