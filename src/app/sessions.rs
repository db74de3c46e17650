//! Sessions: starting one at sign-in, refresh-token rotation with reuse detection, sign-out,
//! and revoking a user's sessions (sign-out everywhere, password change, deactivation).

use aggregates::session::{SessionCommand, SessionError, SessionEvent};
use aggregates::user::{User, UserEvent, UserStatus};
use aggregates::{Actor, Role, SessionId, UserId};
use chrono::{Duration, TimeDelta};
use projections::Position;

use crate::app::{caught_up, AppError};
use crate::auth::tokens::{new_refresh_token, session_of_refresh_token, sha256_hex};
use crate::auth::Principal;
use crate::commands::{CommandError, CommandMeta};
use crate::state::AppState;

pub const REFRESH_TOKEN_DAYS: i64 = 30;

/// Where a sign-in comes from, recorded on its session.
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A signed-in session: the user and a new token pair.
pub struct SignedIn {
    pub user: User,
    pub user_id: UserId,
    /// A JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque; each one is exchanged for a new pair once.
    pub refresh_token: String,
    /// Seconds the access token is valid.
    pub expires_in: i64,
    pub position: Option<Position>,
}

/// A configured duration as the aggregate's `TimeDelta` (start bounds them, so none saturates).
pub fn time_delta(duration: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// Starts a session for a registered user and issues its tokens.
pub(crate) async fn start(
    state: &AppState,
    meta: &CommandMeta,
    user: User,
    client: ClientInfo,
) -> Result<SignedIn, AppError> {
    let user_id = user
        .id
        .ok_or_else(|| AppError::internal("a session for a user without id"))?;
    let session_id = SessionId::from_uuid(uuid::Uuid::now_v7());
    let refresh_token = new_refresh_token(session_id);
    let now = crate::commands::now();
    let command = SessionCommand::Start {
        session_id,
        user_id,
        role: user.role,
        refresh_token_hash: sha256_hex(&refresh_token),
        ip: client.ip,
        user_agent: client.user_agent,
        expires_at: now + Duration::days(REFRESH_TOKEN_DAYS),
        max_age: time_delta(state.config.session_max_age),
        at: now,
    };
    let mut meta = meta.clone();
    meta.actor_id = Some(user_id);
    let started = state
        .sessions
        .create(session_id.to_string(), command, &meta)
        .await?;
    let (access_token, expires_in) = state
        .jwt
        .issue_until(
            user_id,
            session_id,
            user.role,
            now,
            started.state.expires_at,
        )
        .map_err(AppError::internal)?;
    Ok(SignedIn {
        user,
        user_id,
        access_token,
        refresh_token,
        expires_in,
        position: started.position,
    })
}

/// Exchanges a refresh token for a new pair. A token presented a second time (outside the
/// configured grace) revokes its whole session.
pub async fn refresh(
    state: &AppState,
    meta: &CommandMeta,
    presented: &str,
) -> Result<SignedIn, AppError> {
    let session_id = session_of_refresh_token(presented).ok_or(AppError::UnknownRefreshToken)?;
    let refresh_token = new_refresh_token(session_id);
    let now = crate::commands::now();
    let command = SessionCommand::Refresh {
        presented_hash: sha256_hex(presented),
        new_refresh_token_hash: sha256_hex(&refresh_token),
        expires_at: now + Duration::days(REFRESH_TOKEN_DAYS),
        reuse_grace: time_delta(state.config.refresh_reuse_grace),
        max_age: time_delta(state.config.session_max_age),
        at: now,
    };
    let executed = match state
        .sessions
        .execute(session_id.to_string(), command, meta, true)
        .await
    {
        Ok(executed) => executed,
        Err(CommandError::Domain(SessionError::Expired)) => {
            return Err(AppError::RefreshTokenExpired)
        }
        Err(CommandError::Domain(_)) => return Err(AppError::UnknownRefreshToken),
        Err(other) => return Err(other.into()),
    };
    if executed
        .events
        .iter()
        .any(|e| matches!(e, SessionEvent::Compromised { .. }))
    {
        state.revocations.revoke_session(*session_id.as_uuid());
        tracing::warn!(session = %session_id, "refresh token reuse detected; session revoked");
        return Err(AppError::RefreshTokenReused);
    }

    let user_id = executed
        .state
        .user_id
        .ok_or(AppError::UnknownRefreshToken)?;
    let (user, _) = state.users.load(&user_id.to_string()).await?;
    if user.status != UserStatus::Active {
        return Err(AppError::UnknownRefreshToken);
    }
    let (access_token, expires_in) = state
        .jwt
        .issue_until(
            user_id,
            session_id,
            user.role,
            now,
            executed.state.expires_at,
        )
        .map_err(AppError::internal)?;
    Ok(SignedIn {
        user,
        user_id,
        access_token,
        refresh_token,
        expires_in,
        position: executed.position,
    })
}

/// Revokes one session and records it locally at once, so this instance refuses its access
/// tokens from the next request on; other instances learn it from the log within moments.
pub async fn revoke(
    state: &AppState,
    meta: &CommandMeta,
    actor: Actor,
    session: SessionId,
    reason: &str,
) -> Result<Option<Position>, AppError> {
    let command = SessionCommand::Revoke {
        actor,
        reason: reason.to_owned(),
        at: crate::commands::now(),
    };
    let executed = state
        .sessions
        .execute(session.to_string(), command, meta, true)
        .await?;
    state.revocations.revoke_session(*session.as_uuid());
    Ok(executed.position)
}

/// Revokes every active session of a user but `except`. The sessions read model is brought up
/// to the log's head first (bounded wait), so a session started a moment ago is not missed.
pub async fn revoke_all_of(
    state: &AppState,
    meta: &CommandMeta,
    actor: Actor,
    user: UserId,
    except: Option<SessionId>,
    reason: &str,
) -> Result<Option<Position>, AppError> {
    let head = projections::log::head(&state.pool).await?;
    if !caught_up(state, &["sessions"], Some(head)).await {
        tracing::warn!(user = %user, "sessions read model lagging while revoking a user's sessions");
    }
    let sessions = projections::sessions::active_for_user(&state.pool, *user.as_uuid()).await?;
    let mut last = None;
    for session in sessions {
        let id = SessionId::from_uuid(session.id);
        if Some(id) == except {
            continue;
        }
        last = revoke(state, meta, actor, id, reason).await?.or(last);
    }
    Ok(last)
}

/// Signs the caller out of the session they signed in with.
pub async fn sign_out(
    state: &AppState,
    meta: &CommandMeta,
    caller: &Principal,
) -> Result<Option<Position>, AppError> {
    let session = caller.session_id().ok_or(AppError::Forbidden)?;
    revoke(state, meta, caller.actor(), session, "logout").await
}

/// Signs the caller out of every session, this one included.
pub async fn sign_out_everywhere(
    state: &AppState,
    meta: &CommandMeta,
    caller: &Principal,
) -> Result<Option<Position>, AppError> {
    let position = revoke_all_of(
        state,
        meta,
        caller.actor(),
        caller.user_id,
        None,
        "logout-all",
    )
    .await?;
    if let Some(current) = caller.session_id() {
        // Also when the read model had not listed it yet.
        revoke(state, meta, caller.actor(), current, "logout-all").await?;
    }
    Ok(position)
}

/// Revokes one of the caller's own sessions; another user's is absent, like one that does not
/// exist.
pub async fn revoke_own(
    state: &AppState,
    meta: &CommandMeta,
    caller: &Principal,
    session: SessionId,
) -> Result<Option<Position>, AppError> {
    let (existing, _) = state.sessions.load(&session.to_string()).await?;
    if existing.user_id != Some(caller.user_id) {
        return Err(AppError::NotFound);
    }
    let own = Actor::User {
        id: caller.user_id,
        role: Role::User,
    };
    revoke(state, meta, own, session, "revoked by user").await
}

/// A deactivated user is signed out everywhere (their refresh tokens stop working too).
pub async fn end_if_deactivated(
    state: &AppState,
    meta: &CommandMeta,
    user: UserId,
    events: &[UserEvent],
) -> Result<Option<Position>, AppError> {
    if !events
        .iter()
        .any(|e| matches!(e, UserEvent::Deactivated { .. }))
    {
        return Ok(None);
    }
    revoke_all_of(state, meta, Actor::System, user, None, "user deactivated").await
}
