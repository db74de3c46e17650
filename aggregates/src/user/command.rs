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
        verification_token: String,
        verification_expires_at: DateTime<Utc>,
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
    RequestEmailVerification {
        actor: Actor,
        token: String,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    VerifyEmail {
        actor: Actor,
        token: String,
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
