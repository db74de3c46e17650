//! What has happened to a session. Token hashes are secrets: the public form drops them.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::actor::Role;
use crate::ids::{SessionId, UserId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SessionEvent {
    #[serde(rename = "session.started")]
    Started {
        session_id: SessionId,
        user_id: UserId,
        role: Role,
        refresh_token_hash: String,
        ip: Option<String>,
        user_agent: Option<String>,
        expires_at: DateTime<Utc>,
        started_at: DateTime<Utc>,
    },
    /// A new refresh token. Normally it replaces every live one; `within_grace` marks one
    /// issued for a token retired moments ago, which joins the live ones instead. Older events
    /// lack the field: they were all ordinary rotations.
    #[serde(rename = "session.refreshed")]
    Refreshed {
        refresh_token_hash: String,
        expires_at: DateTime<Utc>,
        refreshed_at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        within_grace: bool,
    },
    #[serde(rename = "session.revoked")]
    Revoked {
        reason: String,
        revoked_at: DateTime<Utc>,
    },
    #[serde(rename = "session.compromised")]
    Compromised { compromised_at: DateTime<Utc> },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        match self {
            SessionEvent::Started { .. } => "session.started",
            SessionEvent::Refreshed { .. } => "session.refreshed",
            SessionEvent::Revoked { .. } => "session.revoked",
            SessionEvent::Compromised { .. } => "session.compromised",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        crate::EVENT_VERSION.to_owned()
    }
}
