//! What can be asked of a user.

use chrono::{DateTime, Utc};

use crate::actor::{Actor, Role};
use crate::ids::UserId;
use crate::user::UserStatus;
use crate::values::{Bio, Email, UserName};

#[derive(Debug, Clone)]
pub enum UserCommand {
    /// Also asks for email verification, so the verification token exists from the start.
    Register {
        user_id: UserId,
        email: Email,
        name: UserName,
        role: Role,
        password_hash: String,
        verification: IssuedToken,
        at: DateTime<Utc>,
    },
    /// One command for a PATCH or PUT, so a request that changes several things appends all of
    /// its events atomically or none of them.
    Update {
        actor: Actor,
        expected_version: Option<u64>,
        changes: UserChanges,
        at: DateTime<Utc>,
    },
    /// A new verification token; the previous one stops working.
    RequestEmailVerification {
        actor: Actor,
        token: IssuedToken,
        at: DateTime<Utc>,
    },
    /// `token_hash` is the SHA-256 of the token the user presented; the aggregate never sees
    /// a token.
    VerifyEmail {
        actor: Actor,
        token_hash: String,
        at: DateTime<Utc>,
    },
    /// Anyone may ask (it is how a user who forgot the password gets back in); only an active
    /// user gets a reset token, and only a few an hour.
    RequestPasswordReset {
        token: IssuedToken,
        at: DateTime<Utc>,
    },
    /// Sets a new password with the newest, unexpired, unused reset token (by its hash).
    ResetPassword {
        token_hash: String,
        new_password_hash: String,
        at: DateTime<Utc>,
    },
    ChangePassword {
        actor: Actor,
        current_password: String,
        new_password_hash: String,
        at: DateTime<Utc>,
    },
    Deactivate {
        actor: Actor,
        expected_version: Option<u64>,
        at: DateTime<Utc>,
    },
}

/// The fields of a user update; `None` leaves a field as it is. `bio: Some("")` clears it.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub name: Option<UserName>,
    pub bio: Option<Bio>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
}

/// A token the server issued for a link in an email. The aggregate keeps only what lets the
/// server rebuild the token when it mails it (`nonce`, meaningless without the server's key)
/// and what checks it later (`hash`); the token itself never reaches an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub nonce: String,
    pub hash: String,
    pub expires_at: DateTime<Utc>,
}

impl UserCommand {
    /// The command's name (`user.register`), for traces and metrics: a fixed set.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Register { .. } => "user.register",
            Self::Update { .. } => "user.update",
            Self::RequestEmailVerification { .. } => "user.request_email_verification",
            Self::VerifyEmail { .. } => "user.verify_email",
            Self::RequestPasswordReset { .. } => "user.request_password_reset",
            Self::ResetPassword { .. } => "user.reset_password",
            Self::ChangePassword { .. } => "user.change_password",
            Self::Deactivate { .. } => "user.deactivate",
        }
    }
}
