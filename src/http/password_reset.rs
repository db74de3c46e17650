//! `/auth/password-reset`: a reset link by email for whoever owns an active account, and the
//! confirmation that sets a new password with it and ends every session.

use aggregates::values::{Email, Password};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::accounts;
use crate::http::consistency::when_applied;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{Parsed, RequestMeta};
use crate::http::openapi::schemas::{CommandHeaders, Data};
use crate::http::parse::{Fields, Parse};
use crate::http::respond::Answer;
use crate::http::users::{sent, Sent};
use crate::state::AppState;

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

impl Parse for PasswordResetRequest {
    type Output = Email;

    fn parse(self) -> Result<Email, Vec<FieldError>> {
        let mut fields = Fields::default();
        let email = fields.take("email", Email::parse(&self.email));
        fields.finish(email)
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

/// A reset token and the password it sets.
pub struct NewPasswordByToken {
    token: String,
    new_password: Password,
}

impl Parse for PasswordResetConfirmation {
    type Output = NewPasswordByToken;

    fn parse(self) -> Result<NewPasswordByToken, Vec<FieldError>> {
        let mut fields = Fields::default();
        let token = fields.text("token", self.token, 1, 256);
        let new_password = fields.take("new_password", Password::parse(&self.new_password));
        fields.finish((|| {
            Some(NewPasswordByToken {
                token: token?,
                new_password: new_password?,
            })
        })())
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
    )
)]
async fn request_password_reset(
    State(state): State<AppState>,
    meta: RequestMeta,
    Parsed(email): Parsed<PasswordResetRequest>,
) -> Result<Response, ApiError> {
    accounts::request_password_reset(&state, &meta.command_meta(None), &email).await?;
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
    )
)]
async fn confirm_password_reset(
    State(state): State<AppState>,
    meta: RequestMeta,
    Parsed(reset): Parsed<PasswordResetConfirmation>,
) -> Result<Answer<()>, ApiError> {
    let position = accounts::reset_password(
        &state,
        &meta.command_meta(None),
        &reset.token,
        &reset.new_password,
    )
    .await?;
    Ok(when_applied(
        &state,
        &["users", "sessions"],
        position,
        false,
        Answer::no_content(),
    )
    .await)
}
