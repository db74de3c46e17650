//! `POST /users/{id}/send-verification`: a new verification email, retiring the previous link.

use aggregates::user::{UserCommand, UserError};
use aggregates::UserId;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::commands::CommandError;
use crate::email::tokens::TokenKind;
use crate::http::error::ApiError;
use crate::http::extract::{AuthUser, PathId, RequestMeta};
use crate::http::openapi::schemas::{CommandHeaders, Data, Forbidden, IdPath, Problem};
use crate::state::AppState;

/// `{"sent": true}`: the email is queued (it goes out even if SMTP is down right now).
#[derive(Debug, Serialize, ToSchema)]
pub struct Sent {
    pub sent: bool,
}

/// The answer of the email-sending commands: 202 `{"data": {"sent": true}}`.
pub fn sent() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(Data {
            data: Sent { sent: true },
        }),
    )
        .into_response()
}

/// Send a new verification email.
///
/// The user themselves. The link of any earlier welcome or verification email stops working.
/// At most 5 an hour (then 429); 409 once the address is verified.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/send-verification",
    tag = "users",
    params(IdPath, CommandHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "Queued", body = Data<Sent>),
        (status = 403, response = Forbidden),
        (status = 409, description = "CONFLICT: the address is already verified; INVALID_STATE_TRANSITION: the user is deactivated.",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn send_verification(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<UserId>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    if caller.user_id != id {
        return Err(ApiError::Forbidden);
    }
    let now = crate::commands::now();
    let command = UserCommand::RequestEmailVerification {
        actor: caller.actor(),
        token: state.email_tokens.issue(TokenKind::Verification, id, now),
        at: now,
    };
    match state
        .users
        .execute(
            id.to_string(),
            command,
            &meta.command_meta(Some(caller.user_id)),
            true,
        )
        .await
    {
        Ok(_) => Ok(sent()),
        Err(CommandError::Domain(UserError::AlreadyVerified)) => Err(ApiError::Conflict {
            code: "CONFLICT",
            detail: "the email address is already verified".into(),
        }),
        Err(e) => Err(e.into()),
    }
}
