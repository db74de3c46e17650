//! Session lifecycle: refresh-token rotation with reuse detection, sign-out, and revoking a
//! user's sessions (sign-out everywhere, password change, deactivation).

use aggregates::SessionId;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::sessions;
use crate::http::auth::{signed_in_answer, AuthAnswer};
use crate::http::consistency::{when_applied, PreferAsync};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{Parsed, PathId, RequestMeta, SessionUser};
use crate::http::openapi::schemas::{CommandHeaders, Data, IdPath, Problem};
use crate::http::parse::{Fields, Parse};
use crate::http::respond::Answer;
use crate::state::AppState;

/// Every session command's answer, and the reads after it, depend on the sessions read model.
const READ_MODELS: &[&str] = &["sessions"];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(revoke_my_session))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(min_length = 1, max_length = 512)]
    pub refresh_token: String,
}

impl Parse for RefreshRequest {
    type Output = String;

    fn parse(self) -> Result<String, Vec<FieldError>> {
        let mut fields = Fields::default();
        let token = fields.text("refresh_token", self.refresh_token, 1, 512);
        fields.finish(token)
    }
}

/// Exchange a refresh token for a new token pair.
///
/// Rotates the refresh token: the presented one stops working and a new pair is returned. A
/// token presented a second time means two parties hold it, so the whole session is revoked,
/// except within `REFRESH_REUSE_GRACE` (default 10 s) of its rotation: then it gets a fresh
/// pair for the same session, so two tabs or a retry after a lost answer do not end it. A
/// session ends `SESSION_MAX_AGE` (default 90 days) after sign-in however often it is
/// refreshed (TOKEN_EXPIRED).
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    params(CommandHeaders),
    responses(
        (status = 200, description = "A new token pair", body = Data<AuthAnswer>,
            headers(("Chronicle-Position"), ("X-Consistency"))),
        (status = 401, description = "UNAUTHORIZED (unknown or revoked token), TOKEN_EXPIRED, or \
            TOKEN_REUSED (the token was already used: the whole session is now revoked).",
            body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate"))),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    Parsed(refresh_token): Parsed<RefreshRequest>,
) -> Result<Answer<AuthAnswer>, ApiError> {
    let signed_in = sessions::refresh(&state, &meta.command_meta(None), &refresh_token).await?;
    Ok(signed_in_answer(&state, READ_MODELS, signed_in, prefer_async).await)
}

/// Sign out of this session.
///
/// Revokes the session of the access token: its refresh token and access tokens stop working.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    params(CommandHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Signed out",
            headers(("Chronicle-Position"), ("X-Consistency"))),
        (status = 403, description = "FORBIDDEN: an API key never signs its creator out.",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn logout(
    State(state): State<AppState>,
    SessionUser(caller): SessionUser,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Answer<()>, ApiError> {
    let position =
        sessions::sign_out(&state, &meta.command_meta(Some(caller.user_id)), &caller).await?;
    Ok(when_applied(
        &state,
        READ_MODELS,
        position,
        prefer_async,
        Answer::no_content(),
    )
    .await)
}

/// Sign out of every session.
///
/// Revokes every session of the caller's user, this one included.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout-all",
    tag = "auth",
    params(CommandHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Every session revoked",
            headers(("Chronicle-Position"), ("X-Consistency"))),
        (status = 403, description = "FORBIDDEN: an API key never signs its creator out.",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn logout_all(
    State(state): State<AppState>,
    SessionUser(caller): SessionUser,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Answer<()>, ApiError> {
    let position =
        sessions::sign_out_everywhere(&state, &meta.command_meta(Some(caller.user_id)), &caller)
            .await?;
    Ok(when_applied(
        &state,
        READ_MODELS,
        position,
        prefer_async,
        Answer::no_content(),
    )
    .await)
}

/// Revoke one of my sessions.
///
/// Another user's session is a 404, like one that does not exist.
#[utoipa::path(
    delete,
    path = "/api/v1/me/sessions/{id}",
    tag = "me",
    params(IdPath, CommandHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "The session is revoked",
            headers(("Chronicle-Position"), ("X-Consistency"))),
        (status = 403, description = "FORBIDDEN: an API key never manages its creator's sessions.",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn revoke_my_session(
    State(state): State<AppState>,
    SessionUser(caller): SessionUser,
    PathId(session): PathId<SessionId>,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Answer<()>, ApiError> {
    let position = sessions::revoke_own(
        &state,
        &meta.command_meta(Some(caller.user_id)),
        &caller,
        session,
    )
    .await?;
    Ok(when_applied(
        &state,
        READ_MODELS,
        position,
        prefer_async,
        Answer::no_content(),
    )
    .await)
}
