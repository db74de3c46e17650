//! Session lifecycle: refresh-token rotation with reuse detection, sign-out, and revoking a
//! user's sessions (sign-out everywhere, password change, deactivation).

use aggregates::session::{SessionCommand, SessionError, SessionEvent};
use aggregates::user::UserStatus;
use aggregates::{Actor, SessionId, UserId};
use axum::extract::State;
use axum::response::Response;
use chrono::Duration;
use projections::Position;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use validator::Validate;

use crate::auth::tokens::{new_refresh_token, session_of_refresh_token, sha256_hex};
use crate::commands::{CommandError, CommandMeta};
use crate::http::auth::{time_delta, AuthAnswer, REFRESH_TOKEN_DAYS};
use crate::http::consistency::{caught_up, PreferAsync};
use crate::http::error::ApiError;
use crate::http::extract::{PathId, RequestMeta, SessionUser, ValidatedJson};
use crate::http::openapi::schemas::{
    BadRequest, CommandHeaders, Data, IdPath, NotFound, PayloadTooLarge, Problem, Unauthorized,
    UnsupportedMediaType, ValidationFailed,
};
use crate::http::respond::{no_content, Answer};
use crate::http::views::UserView;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(revoke_my_session))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[validate(length(min = 1, max = 512, message = "must be 1 to 512 characters"))]
    #[schema(min_length = 1, max_length = 512)]
    pub refresh_token: String,
}

fn reused() -> ApiError {
    ApiError::Unauthorized {
        code: "TOKEN_REUSED",
        detail: "this refresh token was already used; the session has been revoked",
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
        (status = 400, response = BadRequest),
        (status = 401, description = "UNAUTHORIZED (unknown or revoked token), TOKEN_EXPIRED, or \
            TOKEN_REUSED (the token was already used: the whole session is now revoked).",
            body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate"))),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    ValidatedJson(body): ValidatedJson<RefreshRequest>,
) -> Result<Answer<AuthAnswer>, ApiError> {
    let session_id =
        session_of_refresh_token(&body.refresh_token).ok_or_else(ApiError::unauthorized)?;
    let refresh_token = new_refresh_token(session_id);
    let now = crate::commands::now();
    let command = SessionCommand::Refresh {
        presented_hash: sha256_hex(&body.refresh_token),
        new_refresh_token_hash: sha256_hex(&refresh_token),
        expires_at: now + Duration::days(REFRESH_TOKEN_DAYS),
        reuse_grace: time_delta(state.config.refresh_reuse_grace),
        max_age: time_delta(state.config.session_max_age),
        at: now,
    };
    let done = match state
        .sessions
        .execute(session_id.to_string(), command, &meta.command(None), true)
        .await
    {
        Ok(done) => done,
        Err(CommandError::Domain(SessionError::Expired)) => {
            return Err(ApiError::Unauthorized {
                code: "TOKEN_EXPIRED",
                detail: "the refresh token has expired; sign in again",
            })
        }
        Err(CommandError::Domain(_)) => return Err(ApiError::unauthorized()),
        Err(other) => return Err(other.into()),
    };
    if done
        .events
        .iter()
        .any(|e| matches!(e, SessionEvent::Compromised { .. }))
    {
        state.revocations.revoke_session(*session_id.as_uuid());
        tracing::warn!(session = %session_id, "refresh token reuse detected; session revoked");
        return Err(reused());
    }

    let user_id = done.state.user_id.ok_or_else(ApiError::unauthorized)?;
    let (user, _) = state.users.load(&user_id.to_string()).await?;
    if user.status != UserStatus::Active {
        return Err(ApiError::unauthorized());
    }
    let (access_token, expires_in) = state
        .jwt
        .issue_until(user_id, session_id, user.role, now, done.state.expires_at)
        .map_err(ApiError::internal)?;
    let fresh = !prefer_async && caught_up(&state, &["sessions"], done.position).await;
    let answer = AuthAnswer {
        user: UserView::from_state(&user),
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in,
    };
    Ok(Answer::ok(answer).position(done.position).eventual(!fresh))
}

/// Revokes one session and records it locally at once, so this instance refuses its access
/// tokens from the next request on; other instances learn it from the log within moments.
pub async fn revoke_session(
    state: &AppState,
    meta: &CommandMeta,
    actor: Actor,
    session: SessionId,
    reason: &str,
) -> Result<Option<Position>, ApiError> {
    let command = SessionCommand::Revoke {
        actor,
        reason: reason.to_owned(),
        at: crate::commands::now(),
    };
    let done = state
        .sessions
        .execute(session.to_string(), command, meta, true)
        .await?;
    state.revocations.revoke_session(*session.as_uuid());
    Ok(done.position)
}

/// Revokes every active session of a user but `except`. The sessions read model is brought up
/// to the log's head first (bounded wait), so a session started a moment ago is not missed.
pub async fn revoke_sessions_of(
    state: &AppState,
    meta: &CommandMeta,
    actor: Actor,
    user: UserId,
    except: Option<SessionId>,
    reason: &str,
) -> Result<Option<Position>, ApiError> {
    let head = projections::log::head(&state.pool)
        .await
        .map_err(ApiError::internal)?;
    if !caught_up(state, &["sessions"], Some(head)).await {
        tracing::warn!(user = %user, "sessions read model lagging while revoking a user's sessions");
    }
    let sessions = projections::sessions::active_for_user(&state.pool, *user.as_uuid())
        .await
        .map_err(ApiError::internal)?;
    let mut last = None;
    for session in sessions {
        let id = SessionId::from_uuid(session.id);
        if Some(id) == except {
            continue;
        }
        last = revoke_session(state, meta, actor, id, reason)
            .await?
            .or(last);
    }
    Ok(last)
}

/// `SessionUser` admits sessions only; this stays total should that ever change.
fn current_session(caller: &crate::auth::Principal) -> Result<SessionId, ApiError> {
    caller.session_id().ok_or(ApiError::Forbidden)
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
        (status = 401, response = Unauthorized),
        (status = 403, description = "FORBIDDEN: an API key never signs its creator out.",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn logout(
    State(state): State<AppState>,
    SessionUser(caller): SessionUser,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Response, ApiError> {
    let session = current_session(&caller)?;
    let position = revoke_session(
        &state,
        &meta.command(Some(caller.user_id)),
        caller.actor(),
        session,
        "logout",
    )
    .await?;
    let fresh = !prefer_async && caught_up(&state, &["sessions"], position).await;
    Ok(no_content(position, !fresh))
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
        (status = 401, response = Unauthorized),
        (status = 403, description = "FORBIDDEN: an API key never signs its creator out.",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn logout_all(
    State(state): State<AppState>,
    SessionUser(caller): SessionUser,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Response, ApiError> {
    let command_meta = meta.command(Some(caller.user_id));
    let position = revoke_sessions_of(
        &state,
        &command_meta,
        caller.actor(),
        caller.user_id,
        None,
        "logout-all",
    )
    .await?;
    if let Some(current) = caller.session_id() {
        // Also when the read model had not listed it yet.
        revoke_session(&state, &command_meta, caller.actor(), current, "logout-all").await?;
    }
    let fresh = !prefer_async && caught_up(&state, &["sessions"], position).await;
    Ok(no_content(position, !fresh))
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
        (status = 401, response = Unauthorized),
        (status = 403, description = "FORBIDDEN: an API key never manages its creator's sessions.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, response = NotFound),
    )
)]
async fn revoke_my_session(
    State(state): State<AppState>,
    SessionUser(caller): SessionUser,
    PathId(session): PathId<SessionId>,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Response, ApiError> {
    let (existing, _) = state.sessions.load(&session.to_string()).await?;
    if existing.user_id != Some(caller.user_id) {
        return Err(ApiError::NotFound);
    }
    let own = Actor::User {
        id: caller.user_id,
        role: aggregates::Role::User,
    };
    let position = revoke_session(
        &state,
        &meta.command(Some(caller.user_id)),
        own,
        session,
        "revoked by user",
    )
    .await?;
    let fresh = !prefer_async && caught_up(&state, &["sessions"], position).await;
    Ok(no_content(position, !fresh))
}
