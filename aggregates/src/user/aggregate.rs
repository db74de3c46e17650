//! The user's state and rules.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, Role};
use crate::check_version;
use crate::ids::UserId;
use crate::user::{IssuedToken, UserChanges, UserCommand, UserError, UserEvent, UserServices};

/// How many verification emails, and separately how many reset emails, a user may be sent
/// in an hour (the registration's welcome does not count).
pub const REQUESTS_PER_HOUR: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    #[default]
    Active,
    Deactivated,
}

impl UserStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Deactivated => "deactivated",
        }
    }
}

/// A token the user was mailed: its hash (never the token) and when it stops working.
/// `token_hash` is `None` for requests recorded before tokens left the log: nothing matches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingToken {
    pub token_hash: Option<String>,
    pub expires_at: DateTime<Utc>,
}

impl PendingToken {
    fn accepts(&self, token_hash: &str, at: DateTime<Utc>) -> bool {
        self.token_hash
            .as_deref()
            .is_some_and(|expected| constant_time_eq(expected, token_hash))
            && at < self.expires_at
    }
}

/// State is public for reading (the server answers from it); only `apply` changes it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct User {
    pub id: Option<UserId>,
    pub email: String,
    pub name: String,
    pub bio: String,
    pub role: Role,
    pub status: UserStatus,
    pub email_verified: bool,
    pub password_hash: String,
    pub pending_verification: Option<PendingToken>,
    /// The newest password reset token; any password change retires it.
    pub pending_reset: Option<PendingToken>,
    /// When the last few verification and reset emails were asked for (the newest
    /// `REQUESTS_PER_HOUR` of each), for their hourly limits.
    pub verification_requests: Vec<DateTime<Utc>>,
    pub reset_requests: Vec<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The number of events applied, which is the aggregate's sequence and the ETag.
    pub version: u64,
}

impl User {
    fn require_registered(&self) -> Result<UserId, UserError> {
        self.id.ok_or(UserError::NotFound)
    }

    fn require_self_or_admin(&self, actor: &Actor) -> Result<UserId, UserError> {
        let id = self.require_registered()?;
        if actor.may_act_for(id) {
            Ok(id)
        } else {
            Err(UserError::Forbidden)
        }
    }

    fn require_self(&self, actor: &Actor) -> Result<UserId, UserError> {
        let id = self.require_registered()?;
        if actor.user_id() == Some(id) {
            Ok(id)
        } else {
            Err(UserError::Forbidden)
        }
    }

    fn require_active(&self) -> Result<(), UserError> {
        match self.status {
            UserStatus::Active => Ok(()),
            UserStatus::Deactivated => Err(UserError::Deactivated),
        }
    }

    fn require_version(&self, expected: Option<u64>) -> Result<(), UserError> {
        check_version(expected, self.version)
            .map_err(|current| UserError::VersionMismatch { current })
    }

    fn changes_to_events(
        &self,
        changes: UserChanges,
        at: DateTime<Utc>,
    ) -> Result<Vec<UserEvent>, UserError> {
        let reactivating =
            changes.status == Some(UserStatus::Active) && self.status == UserStatus::Deactivated;
        let deactivating =
            changes.status == Some(UserStatus::Deactivated) && self.status == UserStatus::Active;
        if !reactivating {
            self.require_active()?;
        }

        let mut events = Vec::new();
        if reactivating {
            events.push(UserEvent::Reactivated { reactivated_at: at });
        }
        let name = changes
            .name
            .map_or_else(|| self.name.clone(), |n| n.into_inner());
        let bio = changes
            .bio
            .map_or_else(|| self.bio.clone(), |b| b.into_inner());
        if name != self.name || bio != self.bio {
            events.push(UserEvent::Updated {
                name,
                bio,
                updated_at: at,
            });
        }
        if let Some(role) = changes.role.filter(|r| *r != self.role) {
            events.push(UserEvent::RoleChanged {
                role,
                changed_at: at,
            });
        }
        if deactivating {
            events.push(UserEvent::Deactivated { deactivated_at: at });
        }
        Ok(events)
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = UserServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            UserCommand::Register {
                user_id,
                email,
                name,
                role,
                password_hash,
                verification,
                at,
            } => {
                if self.id.is_some() {
                    return Err(UserError::AlreadyRegistered);
                }
                let claimed = services
                    .emails
                    .claim(&email, user_id)
                    .await
                    .map_err(|e| UserError::ServiceUnavailable(e.0))?;
                if !claimed {
                    return Err(UserError::EmailTaken);
                }
                vec![
                    UserEvent::Registered {
                        user_id,
                        email: email.as_str().to_owned(),
                        name: name.into_inner(),
                        role,
                        password_hash,
                        registered_at: at,
                    },
                    verification_requested(email.into_inner(), verification, at),
                ]
            }
            UserCommand::Update {
                actor,
                expected_version,
                changes,
                at,
            } => {
                self.require_self_or_admin(&actor)?;
                let admin_only = changes.role.is_some() || changes.status.is_some();
                if admin_only && !actor.is_admin() {
                    return Err(UserError::Forbidden);
                }
                self.require_version(expected_version)?;
                self.changes_to_events(changes, at)?
            }
            UserCommand::RequestEmailVerification { actor, token, at } => {
                self.require_self_or_admin(&actor)?;
                self.require_active()?;
                if self.email_verified {
                    return Err(UserError::AlreadyVerified);
                }
                throttle(&self.verification_requests, at)?;
                vec![verification_requested(self.email.clone(), token, at)]
            }
            UserCommand::VerifyEmail {
                actor,
                token_hash,
                at,
            } => {
                self.require_self(&actor)?;
                self.require_active()?;
                // Once verified, every token is a used one: the same answer as any token that
                // no longer works (API.md), which also says nothing about which it was.
                if self.email_verified {
                    return Err(UserError::InvalidVerificationToken);
                }
                let valid = self
                    .pending_verification
                    .as_ref()
                    .is_some_and(|p| p.accepts(&token_hash, at));
                if !valid {
                    return Err(UserError::InvalidVerificationToken);
                }
                vec![UserEvent::EmailVerified {
                    email: self.email.clone(),
                    verified_at: at,
                }]
            }
            UserCommand::RequestPasswordReset { token, at } => {
                self.require_registered()?;
                self.require_active()?;
                throttle(&self.reset_requests, at)?;
                vec![UserEvent::PasswordResetRequested {
                    email: self.email.clone(),
                    token_nonce: token.nonce,
                    token_hash: token.hash,
                    expires_at: token.expires_at,
                    requested_at: at,
                }]
            }
            UserCommand::ResetPassword {
                token_hash,
                new_password_hash,
                at,
            } => {
                self.require_registered()?;
                // A deactivated user's token is as good as none: one answer for both.
                let valid = self.status == UserStatus::Active
                    && self
                        .pending_reset
                        .as_ref()
                        .is_some_and(|p| p.accepts(&token_hash, at));
                if !valid {
                    return Err(UserError::InvalidResetToken);
                }
                vec![UserEvent::PasswordChanged {
                    password_hash: new_password_hash,
                    changed_at: at,
                }]
            }
            UserCommand::ChangePassword {
                actor,
                current_password,
                new_password_hash,
                at,
            } => {
                self.require_self(&actor)?;
                self.require_active()?;
                let matches = services
                    .passwords
                    .verify(&current_password, &self.password_hash)
                    .await
                    .map_err(|e| UserError::ServiceUnavailable(e.0))?;
                if !matches {
                    return Err(UserError::WrongPassword);
                }
                vec![UserEvent::PasswordChanged {
                    password_hash: new_password_hash,
                    changed_at: at,
                }]
            }
            UserCommand::Deactivate {
                actor,
                expected_version,
                at,
            } => {
                self.require_self_or_admin(&actor)?;
                self.require_version(expected_version)?;
                self.require_active()?;
                vec![UserEvent::Deactivated { deactivated_at: at }]
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
            UserEvent::Registered {
                user_id,
                email,
                name,
                role,
                password_hash,
                registered_at,
            } => {
                self.id = Some(user_id);
                self.email = email;
                self.name = name;
                self.role = role;
                self.password_hash = password_hash;
                self.status = UserStatus::Active;
                self.created_at = Some(registered_at);
                self.updated_at = Some(registered_at);
            }
            UserEvent::Updated {
                name,
                bio,
                updated_at,
            } => {
                self.name = name;
                self.bio = bio;
                self.updated_at = Some(updated_at);
            }
            UserEvent::RoleChanged { role, changed_at } => {
                self.role = role;
                self.updated_at = Some(changed_at);
            }
            UserEvent::EmailVerificationRequested {
                token_hash,
                expires_at,
                requested_at,
                ..
            } => {
                self.pending_verification = Some(PendingToken {
                    token_hash,
                    expires_at,
                });
                // Sequence 2 is always the registration's own request (Register appends it
                // right after user.registered): the welcome email is not a resend.
                if self.version > 2 {
                    remember(&mut self.verification_requests, requested_at);
                }
            }
            UserEvent::PasswordResetRequested {
                token_hash,
                expires_at,
                requested_at,
                ..
            } => {
                self.pending_reset = Some(PendingToken {
                    token_hash: Some(token_hash),
                    expires_at,
                });
                remember(&mut self.reset_requests, requested_at);
            }
            UserEvent::EmailVerified { verified_at, .. } => {
                self.email_verified = true;
                self.pending_verification = None;
                self.updated_at = Some(verified_at);
            }
            UserEvent::PasswordChanged {
                password_hash,
                changed_at,
            } => {
                self.password_hash = password_hash;
                // Used, or overtaken by a change made with the current password.
                self.pending_reset = None;
                self.updated_at = Some(changed_at);
            }
            UserEvent::Deactivated { deactivated_at } => {
                self.status = UserStatus::Deactivated;
                self.pending_reset = None;
                self.updated_at = Some(deactivated_at);
            }
            UserEvent::Reactivated { reactivated_at } => {
                self.status = UserStatus::Active;
                self.updated_at = Some(reactivated_at);
            }
        }
    }
}

fn verification_requested(email: String, token: IssuedToken, at: DateTime<Utc>) -> UserEvent {
    UserEvent::EmailVerificationRequested {
        email,
        token_nonce: Some(token.nonce),
        token_hash: Some(token.hash),
        expires_at: token.expires_at,
        requested_at: at,
    }
}

/// Refuses a request when the newest `REQUESTS_PER_HOUR` requests all fall within the last
/// hour, saying when the oldest of them leaves the window.
fn throttle(recent: &[DateTime<Utc>], at: DateTime<Utc>) -> Result<(), UserError> {
    let window = Duration::hours(1);
    let in_window: Vec<&DateTime<Utc>> = recent.iter().filter(|t| at - **t < window).collect();
    match in_window.iter().min() {
        Some(oldest) if in_window.len() >= REQUESTS_PER_HOUR => Err(UserError::TooManyRequests {
            retry_after_secs: u64::try_from((**oldest + window - at).num_seconds())
                .unwrap_or(1)
                .max(1),
        }),
        _ => Ok(()),
    }
}

/// Keeps the newest `REQUESTS_PER_HOUR` request times: enough to decide the next one.
fn remember(recent: &mut Vec<DateTime<Utc>>, at: DateTime<Utc>) {
    recent.push(at);
    if recent.len() > REQUESTS_PER_HOUR {
        recent.remove(0);
    }
}

/// Compares secrets without an early exit, so timing does not reveal a matching prefix.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
