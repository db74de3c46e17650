//! The authenticated caller, as extractors hand it to handlers.

use aggregates::{Actor, Role, SessionId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub role: Role,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::User {
            id: self.user_id,
            role: self.role,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}
