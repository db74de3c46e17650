//! The authenticated caller, as extractors hand it to handlers.

use aggregates::{Actor, Role, SessionId, UserId};

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Session(SessionId),
    /// An API key acts as the admin who created it, with the key's role.
    ApiKey(uuid::Uuid),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub role: Role,
    pub credential: Credential,
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

    pub fn is_api_key(&self) -> bool {
        matches!(self.credential, Credential::ApiKey(_))
    }

    pub fn session_id(&self) -> Option<SessionId> {
        match self.credential {
            Credential::Session(id) => Some(id),
            Credential::ApiKey(_) => None,
        }
    }
}
