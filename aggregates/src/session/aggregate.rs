//! The session's state and rules: refresh-token rotation with reuse detection, a short grace
//! for a token retired moments ago, and an absolute lifetime.

use chrono::{DateTime, TimeDelta, Utc};
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

/// A refresh token the session no longer accepts as live, and when it was retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredToken {
    pub hash: String,
    pub retired_at: DateTime<Utc>,
}

/// State is public for reading; only `apply` changes it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Session {
    pub id: Option<SessionId>,
    pub user_id: Option<UserId>,
    pub role: Role,
    pub status: SessionStatus,
    /// The newest refresh token.
    pub current_refresh_hash: String,
    /// Other live tokens: handed out within the grace window to a second caller of a token that
    /// had just been rotated. The next ordinary rotation retires them all with the current one,
    /// so a fork lives only until either side refreshes, and the other side's next use is reuse.
    pub sibling_refresh_hashes: Vec<String>,
    /// Every token this session has retired: presenting one again is reuse.
    pub retired_refresh_tokens: Vec<RetiredToken>,
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

    fn is_live(&self, hash: &str) -> bool {
        self.current_refresh_hash == hash || self.sibling_refresh_hashes.iter().any(|h| h == hash)
    }

    fn retired(&self, hash: &str) -> Option<&RetiredToken> {
        self.retired_refresh_tokens.iter().find(|t| t.hash == hash)
    }

    /// The absolute end: `max_age` after the start, whatever the refresh token says.
    pub fn ends_at(&self, max_age: TimeDelta) -> Option<DateTime<Utc>> {
        self.created_at.map(|start| {
            start
                .checked_add_signed(max_age)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        })
    }

    /// Over, either because its refresh token expired or because it reached its maximum age.
    fn has_ended(&self, max_age: TimeDelta, at: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| at >= e) || self.ends_at(max_age).is_some_and(|e| at >= e)
    }
}

impl Session {
    /// A live token rotates; a retired one is reuse, unless it was retired less than
    /// `reuse_grace` ago. Reuse is judged before expiry, so a thief is caught even late.
    fn refresh(
        &self,
        presented_hash: &str,
        new_refresh_token_hash: String,
        expires_at: DateTime<Utc>,
        reuse_grace: TimeDelta,
        max_age: TimeDelta,
        at: DateTime<Utc>,
    ) -> Result<SessionEvent, SessionError> {
        if self.id.is_none() {
            return Err(SessionError::NotFound);
        }
        if self.status != SessionStatus::Active {
            return Err(SessionError::Revoked);
        }
        let within_grace = if self.is_live(presented_hash) {
            false
        } else if let Some(retired) = self.retired(presented_hash) {
            let grace_ends = retired
                .retired_at
                .checked_add_signed(reuse_grace)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            if at >= grace_ends {
                return Ok(SessionEvent::Compromised { compromised_at: at });
            }
            true
        } else {
            return Err(SessionError::UnknownToken);
        };
        if self.has_ended(max_age, at) {
            return Err(SessionError::Expired);
        }
        Ok(SessionEvent::Refreshed {
            refresh_token_hash: new_refresh_token_hash,
            expires_at: capped(expires_at, self.ends_at(max_age)),
            refreshed_at: at,
            within_grace,
        })
    }
}

/// `expires_at`, but never past `ends_at`.
fn capped(expires_at: DateTime<Utc>, ends_at: Option<DateTime<Utc>>) -> DateTime<Utc> {
    ends_at.map_or(expires_at, |end| expires_at.min(end))
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
                max_age,
                at,
            } => {
                if self.id.is_some() {
                    return Err(SessionError::AlreadyStarted);
                }
                let ends_at = at.checked_add_signed(max_age);
                vec![SessionEvent::Started {
                    session_id,
                    user_id,
                    role,
                    refresh_token_hash,
                    ip,
                    user_agent,
                    expires_at: capped(expires_at, ends_at),
                    started_at: at,
                }]
            }
            SessionCommand::Refresh {
                presented_hash,
                new_refresh_token_hash,
                expires_at,
                reuse_grace,
                max_age,
                at,
            } => vec![self.refresh(
                &presented_hash,
                new_refresh_token_hash,
                expires_at,
                reuse_grace,
                max_age,
                at,
            )?],
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
                within_grace,
            } => {
                if within_grace {
                    self.sibling_refresh_hashes.push(refresh_token_hash);
                } else {
                    let previous =
                        std::mem::replace(&mut self.current_refresh_hash, refresh_token_hash);
                    let siblings = std::mem::take(&mut self.sibling_refresh_hashes);
                    self.retired_refresh_tokens.extend(
                        std::iter::once(previous)
                            .chain(siblings)
                            .map(|hash| RetiredToken {
                                hash,
                                retired_at: refreshed_at,
                            }),
                    );
                }
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
