//! What can be asked of a session. Refresh tokens arrive hashed: the domain never sees one.

use chrono::{DateTime, Utc};

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
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Presenting the current token rotates it; presenting an earlier one is theft, and
    /// compromises the session instead (the command then succeeds with `session.compromised`,
    /// because that event must be stored).
    Refresh {
        presented_hash: String,
        new_refresh_token_hash: String,
        expires_at: DateTime<Utc>,
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
