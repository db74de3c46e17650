//! The session's state and rules: refresh-token rotation with reuse detection.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::actor::Role;
use crate::ids::{SessionId, UserId};
use crate::session::{SessionCommand, SessionError, SessionEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    #[default]
    Active,
    Revoked,
    Compromised,
}

/// State is public for reading; only `apply` changes it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Session {
    pub id: Option<SessionId>,
    pub user_id: Option<UserId>,
    pub role: Role,
    pub status: SessionStatus,
    pub current_refresh_hash: String,
    /// Every hash this session has rotated away from: presenting one again is reuse.
    pub rotated_refresh_hashes: Vec<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub version: u64,
}

impl Session {
    pub fn is_active(&self) -> bool {
        self.id.is_some() && self.status == SessionStatus::Active
    }
}

impl Aggregate for Session {
    const TYPE: &'static str = "session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            SessionCommand::Start {
                session_id,
                user_id,
                role,
                refresh_token_hash,
                ip,
                user_agent,
                expires_at,
                at,
            } => {
                if self.id.is_some() {
                    return Err(SessionError::AlreadyStarted);
                }
                vec![SessionEvent::Started {
                    session_id,
                    user_id,
                    role,
                    refresh_token_hash,
                    ip,
                    user_agent,
                    expires_at,
                    started_at: at,
                }]
            }
            SessionCommand::Refresh {
                presented_hash,
                new_refresh_token_hash,
                expires_at,
                at,
            } => {
                if self.id.is_none() {
                    return Err(SessionError::NotFound);
                }
                let reused = self.rotated_refresh_hashes.contains(&presented_hash);
                match self.status {
                    SessionStatus::Active if reused => {
                        vec![SessionEvent::Compromised { compromised_at: at }]
                    }
                    SessionStatus::Active => {
                        if presented_hash != self.current_refresh_hash {
                            return Err(SessionError::UnknownToken);
                        }
                        if self.expires_at.is_some_and(|e| at >= e) {
                            return Err(SessionError::Expired);
                        }
                        vec![SessionEvent::Refreshed {
                            refresh_token_hash: new_refresh_token_hash,
                            expires_at,
                            refreshed_at: at,
                        }]
                    }
                    SessionStatus::Revoked | SessionStatus::Compromised => {
                        return Err(SessionError::Revoked);
                    }
                }
            }
            SessionCommand::Revoke { actor, reason, at } => {
                let owner = self.user_id.ok_or(SessionError::NotFound)?;
                if !actor.may_act_for(owner) {
                    return Err(SessionError::Forbidden);
                }
                if self.status != SessionStatus::Active {
                    // Revoking twice changes nothing; the caller's wish already holds.
                    return Ok(());
                }
                vec![SessionEvent::Revoked {
                    reason,
                    revoked_at: at,
                }]
            }
            SessionCommand::MarkCompromised { at } => {
                if self.id.is_none() {
                    return Err(SessionError::NotFound);
                }
                if self.status == SessionStatus::Compromised {
                    return Ok(());
                }
                vec![SessionEvent::Compromised { compromised_at: at }]
            }
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.version += 1;
        match event {
            SessionEvent::Started {
                session_id,
                user_id,
                role,
                refresh_token_hash,
                ip,
                user_agent,
                expires_at,
                started_at,
            } => {
                self.id = Some(session_id);
                self.user_id = Some(user_id);
                self.role = role;
                self.status = SessionStatus::Active;
                self.current_refresh_hash = refresh_token_hash;
                self.ip = ip;
                self.user_agent = user_agent;
                self.created_at = Some(started_at);
                self.last_used_at = Some(started_at);
                self.expires_at = Some(expires_at);
            }
            SessionEvent::Refreshed {
                refresh_token_hash,
                expires_at,
                refreshed_at,
            } => {
                let previous =
                    std::mem::replace(&mut self.current_refresh_hash, refresh_token_hash);
                self.rotated_refresh_hashes.push(previous);
                self.expires_at = Some(expires_at);
                self.last_used_at = Some(refreshed_at);
            }
            SessionEvent::Revoked { .. } => {
                self.status = SessionStatus::Revoked;
            }
            SessionEvent::Compromised { .. } => {
                self.status = SessionStatus::Compromised;
            }
        }
    }
}
