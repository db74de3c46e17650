//! The user's state and rules.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, Role};
use crate::check_version;
use crate::ids::UserId;
use crate::user::{UserChanges, UserCommand, UserError, UserEvent, UserServices};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingVerification {
    pub token: String,
    pub expires_at: DateTime<Utc>,
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
    pub pending_verification: Option<PendingVerification>,
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
                verification_token,
                verification_expires_at,
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
                    UserEvent::EmailVerificationRequested {
                        email: email.into_inner(),
                        verification_token,
                        expires_at: verification_expires_at,
                        requested_at: at,
                    },
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
            UserCommand::RequestEmailVerification {
                actor,
                token,
                expires_at,
                at,
            } => {
                self.require_self_or_admin(&actor)?;
                self.require_active()?;
                if self.email_verified {
                    return Err(UserError::AlreadyVerified);
                }
                vec![UserEvent::EmailVerificationRequested {
                    email: self.email.clone(),
                    verification_token: token,
                    expires_at,
                    requested_at: at,
                }]
            }
            UserCommand::VerifyEmail { actor, token, at } => {
                self.require_self(&actor)?;
                self.require_active()?;
                if self.email_verified {
                    return Err(UserError::AlreadyVerified);
                }
                let valid = self
                    .pending_verification
                    .as_ref()
                    .is_some_and(|p| constant_time_eq(&p.token, &token) && at < p.expires_at);
                if !valid {
                    return Err(UserError::InvalidVerificationToken);
                }
                vec![UserEvent::EmailVerified {
                    email: self.email.clone(),
                    verified_at: at,
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
                verification_token,
                expires_at,
                ..
            } => {
                self.pending_verification = Some(PendingVerification {
                    token: verification_token,
                    expires_at,
                });
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
                self.updated_at = Some(changed_at);
            }
            UserEvent::Deactivated { deactivated_at } => {
                self.status = UserStatus::Deactivated;
                self.updated_at = Some(deactivated_at);
            }
            UserEvent::Reactivated { reactivated_at } => {
                self.status = UserStatus::Active;
                self.updated_at = Some(reactivated_at);
            }
        }
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
