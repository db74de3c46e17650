//! What has happened to a user. Variants are renamed to their public type names.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::actor::Role;
use crate::ids::UserId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    #[serde(rename = "user.registered")]
    Registered {
        user_id: UserId,
        email: String,
        name: String,
        role: Role,
        /// Secret: removed from the public form.
        password_hash: String,
        registered_at: DateTime<Utc>,
    },
    #[serde(rename = "user.updated")]
    Updated {
        name: String,
        bio: String,
        updated_at: DateTime<Utc>,
    },
    #[serde(rename = "user.role_changed")]
    RoleChanged {
        role: Role,
        changed_at: DateTime<Utc>,
    },
    /// Carries no token: the server derives it from `token_nonce` under its own key when it
    /// mails the link, and checks a presented token against `token_hash`. Both are removed from
    /// the public form. Events written before that carried `verification_token` in plaintext;
    /// that field is ignored when read (those tokens were public, so they no longer verify) and
    /// dropped from the public form.
    #[serde(rename = "user.email_verification_requested")]
    EmailVerificationRequested {
        email: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_nonce: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_hash: Option<String>,
        expires_at: DateTime<Utc>,
        requested_at: DateTime<Utc>,
    },
    /// Like the verification request: the token is derived from the nonce, never stored.
    #[serde(rename = "user.password_reset_requested")]
    PasswordResetRequested {
        email: String,
        /// Secret: removed from the public form.
        token_nonce: String,
        /// Secret: removed from the public form.
        token_hash: String,
        expires_at: DateTime<Utc>,
        requested_at: DateTime<Utc>,
    },
    #[serde(rename = "user.email_verified")]
    EmailVerified {
        email: String,
        verified_at: DateTime<Utc>,
    },
    #[serde(rename = "user.password_changed")]
    PasswordChanged {
        /// Secret: removed from the public form.
        password_hash: String,
        changed_at: DateTime<Utc>,
    },
    #[serde(rename = "user.deactivated")]
    Deactivated { deactivated_at: DateTime<Utc> },
    #[serde(rename = "user.reactivated")]
    Reactivated { reactivated_at: DateTime<Utc> },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::Registered { .. } => "user.registered",
            UserEvent::Updated { .. } => "user.updated",
            UserEvent::RoleChanged { .. } => "user.role_changed",
            UserEvent::EmailVerificationRequested { .. } => "user.email_verification_requested",
            UserEvent::PasswordResetRequested { .. } => "user.password_reset_requested",
            UserEvent::EmailVerified { .. } => "user.email_verified",
            UserEvent::PasswordChanged { .. } => "user.password_changed",
            UserEvent::Deactivated { .. } => "user.deactivated",
            UserEvent::Reactivated { .. } => "user.reactivated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        crate::EVENT_VERSION.to_owned()
    }
}
