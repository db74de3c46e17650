//! Why a session command was refused.

use crate::{DomainError, ErrorKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session not found")]
    NotFound,
    #[error("session already started")]
    AlreadyStarted,
    #[error("the session has been revoked")]
    Revoked,
    #[error("the refresh token has expired")]
    Expired,
    #[error("the refresh token is not valid for this session")]
    UnknownToken,
    #[error("not allowed to revoke this session")]
    Forbidden,
}

impl DomainError for SessionError {
    fn code(&self) -> &'static str {
        match self {
            SessionError::NotFound => "NOT_FOUND",
            SessionError::AlreadyStarted => "CONFLICT",
            SessionError::Revoked => "UNAUTHORIZED",
            SessionError::Expired => "TOKEN_EXPIRED",
            SessionError::UnknownToken => "UNAUTHORIZED",
            SessionError::Forbidden => "NOT_FOUND",
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            SessionError::NotFound => ErrorKind::NotFound,
            SessionError::AlreadyStarted => ErrorKind::Conflict,
            SessionError::Revoked => ErrorKind::Unauthenticated,
            SessionError::Expired => ErrorKind::Unauthenticated,
            SessionError::UnknownToken => ErrorKind::Unauthenticated,
            // Another user's session is reported as absent, so ids cannot be probed.
            SessionError::Forbidden => ErrorKind::NotFound,
        }
    }
}
