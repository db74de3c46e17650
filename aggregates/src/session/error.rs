//! Why a session command was refused.

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
