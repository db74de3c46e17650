//! `/auth/password-reset`: a reset link by email for whoever owns an active account, and the
//! confirmation that sets a new password with it and ends every session.

use std::time::Duration;

use aggregates::user::UserCommand;
use aggregates::values::{Email, Password, ValueError};
use aggregates::{Actor, UserId};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use tokio::time::Instant;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use validator::{Validate, ValidationErrors};

use crate::commands::CommandError;
use crate::email::store::reset_token_owner;
use crate::email::tokens::{self, TokenKind};
use crate::http::consistency::caught_up;
use crate::http::error::ApiError;
use crate::http::extract::{RequestMeta, ValidatedJson};
use crate::http::openapi::schemas::{
    BadRequest, CommandHeaders, Data, PayloadTooLarge, RateLimited, UnsupportedMediaType,
    ValidationFailed,
};
use crate::http::respond::no_content;
use crate::http::users::{sent, Sent};
use crate::http::validate::Rules;
use crate::state::AppState;

/// Every reset request answers no sooner than this, so an unknown, a deactivated and an
/// active account (which appends an event) take about the same time.
const ANSWER_FLOOR: Duration = Duration::from_millis(250);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_password_reset))
        .routes(routes!(confirm_password_reset))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

impl Validate for PasswordResetRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        rules.check("email", Email::parse(&self.email));
        rules.finish()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirmation {
    /// The `token` of the link in the newest reset email.
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

impl Validate for PasswordResetConfirmation {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let token = if (1..=256).contains(&self.token.len()) {
            Ok(())
        } else {
            Err(ValueError {
                code: "LENGTH",
                message: "must be 1 to 256 characters".into(),
            })
        };
        let mut rules = Rules::new();
        rules
            .check("token", token)
            .check("new_password", Password::parse(&self.new_password));
        rules.finish()
    }
}

/// Ask for a password reset email.
///
/// The same 202 whether or not the address belongs to an active user, in about the same time;
/// only an active user is mailed a link (valid 1 h; a newer one retires it). Counts against
/// the per-IP sign-in limit.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password-reset",
    tag = "auth",
    request_body = PasswordResetRequest,
    params(CommandHeaders),
    responses(
        (status = 202, description = "Accepted (whether or not the address has an account)", body = Data<Sent>),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = RateLimited),
    )
)]
async fn request_password_reset(
    State(state): State<AppState>,
    meta: RequestMeta,
    ValidatedJson(body): ValidatedJson<PasswordResetRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let email =
        Email::parse(&body.email).map_err(|e| ApiError::field("email", e.code, &e.message))?;
    let owner = state
        .emails
        .owner_of(&email)
        .await
        .map_err(ApiError::internal)?;
    if let Some(user_id) = owner {
        let now = crate::commands::now();
        let command = UserCommand::RequestPasswordReset {
            token: state
                .email_tokens
                .issue(TokenKind::PasswordReset, user_id, now),
            at: now,
        };
        match state
            .users
            .execute(user_id.to_string(), command, &meta.command(None), true)
            .await
        {
            // Deactivated, or past the hourly limit: nothing is mailed, and nothing says so.
            Ok(_) | Err(CommandError::Domain(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tokio::time::sleep_until(started + ANSWER_FLOOR).await;
    Ok(sent())
}

/// Set a new password with a reset link's token.
///
/// Every session of the user is revoked. A wrong, used or expired token, or one that a newer
/// reset email retired, is a 422 on the field `token`.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password-reset/confirm",
    tag = "auth",
    request_body = PasswordResetConfirmation,
    params(CommandHeaders),
    responses(
        (status = 204, description = "The password is changed; every session is revoked",
            headers(("Chronicle-Position"), ("X-Consistency"))),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = RateLimited),
    )
)]
async fn confirm_password_reset(
    State(state): State<AppState>,
    meta: RequestMeta,
    ValidatedJson(body): ValidatedJson<PasswordResetConfirmation>,
) -> Result<Response, ApiError> {
    let invalid_token =
        || ApiError::field("token", "INVALID", "the token is wrong, used or expired");
    let token_hash = tokens::hash(&body.token);
    // Unknown tokens stop here, before any password hashing work is spent on them.
    let user_id = reset_token_owner(&state.pool, &token_hash)
        .await
        .map_err(ApiError::internal)?
        .map(UserId::from_uuid)
        .ok_or_else(invalid_token)?;
    let new_password_hash = state
        .passwords
        .hash(&body.new_password)
        .await
        .map_err(ApiError::internal)?;
    let command = UserCommand::ResetPassword {
        token_hash,
        new_password_hash,
        at: crate::commands::now(),
    };
    let done = state
        .users
        .execute(
            user_id.to_string(),
            command,
            &meta.command(Some(user_id)),
            true,
        )
        .await?;
    let revoked = crate::http::sessions::revoke_sessions_of(
        &state,
        &meta.command(Some(user_id)),
        Actor::System,
        user_id,
        None,
        "password reset",
    )
    .await?;
    let position = revoked.or(done.position);
    let fresh = caught_up(&state, &["users", "sessions"], position).await;
    Ok(no_content(position, !fresh))
}
