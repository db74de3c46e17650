//! Why a use case failed. The HTTP layer maps each variant to its problem document; the CLI
//! prints them.

use aggregates::post::PostError;
use aggregates::session::SessionError;
use aggregates::user::UserError;

use crate::commands::CommandError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    User(#[from] CommandError<UserError>),
    #[error(transparent)]
    Session(#[from] CommandError<SessionError>),
    #[error(transparent)]
    Post(#[from] CommandError<PostError>),
    /// An unknown email, a wrong password or a deactivated user: one answer for all three.
    #[error("the email or password is wrong")]
    InvalidCredentials,
    /// Too many failed sign-ins to one account.
    #[error("too many failed sign-ins; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// A refresh token that names no live session.
    #[error("the refresh token is not valid")]
    UnknownRefreshToken,
    #[error("the refresh token has expired")]
    RefreshTokenExpired,
    /// A refresh token presented again after its rotation: the session is now revoked.
    #[error("the refresh token was already used; the session has been revoked")]
    RefreshTokenReused,
    /// A verification or reset token that is wrong, used, expired or retired.
    #[error("the token is wrong, used or expired")]
    InvalidToken,
    /// The caller may not act on this resource.
    #[error("not allowed")]
    Forbidden,
    /// Absent, or not the caller's to see.
    #[error("not found")]
    NotFound,
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(err.into())
    }
}
