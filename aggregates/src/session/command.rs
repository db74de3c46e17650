//! What can be asked of a session. Refresh tokens arrive hashed: the domain never sees one.

use chrono::{DateTime, TimeDelta, Utc};

use crate::actor::{Actor, Role};
use crate::ids::{SessionId, UserId};

#[derive(Debug, Clone)]
pub enum SessionCommand {
    Start {
        session_id: SessionId,
        user_id: UserId,
        role: Role,
        refresh_token_hash: String,
        ip: Option<String>,
        user_agent: Option<String>,
        /// When the refresh token would expire; capped at `at + max_age`.
        expires_at: DateTime<Utc>,
        /// `SESSION_MAX_AGE`: the session ends this long after it started, however often it
        /// is refreshed.
        max_age: TimeDelta,
        at: DateTime<Utc>,
    },
    /// Presenting a live token rotates it; presenting an earlier one is theft, and
    /// compromises the session instead (the command then succeeds with `session.compromised`,
    /// because that event must be stored). The one exception: a token presented again within
    /// `reuse_grace` of the rotation that retired it gets a fresh token for the same session,
    /// so two tabs or a client retrying after a lost answer do not end their own session.
    Refresh {
        presented_hash: String,
        new_refresh_token_hash: String,
        /// When the new refresh token would expire; capped at the session's end.
        expires_at: DateTime<Utc>,
        /// `REFRESH_REUSE_GRACE`; zero turns the exception off.
        reuse_grace: TimeDelta,
        /// `SESSION_MAX_AGE`, counted from the session's start.
        max_age: TimeDelta,
        at: DateTime<Utc>,
    },
    Revoke {
        actor: Actor,
        reason: String,
        at: DateTime<Utc>,
    },
    MarkCompromised {
        at: DateTime<Utc>,
    },
}

impl SessionCommand {
    /// The command's name (`session.start`), for traces and metrics: a fixed set.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "session.start",
            Self::Refresh { .. } => "session.refresh",
            Self::Revoke { .. } => "session.revoke",
            Self::MarkCompromised { .. } => "session.mark_compromised",
        }
    }
}
