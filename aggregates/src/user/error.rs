//! Why a user command was refused.

use crate::{DomainError, ErrorKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user not found")]
    NotFound,
    #[error("user already registered")]
    AlreadyRegistered,
    #[error("email is already taken")]
    EmailTaken,
    #[error("not allowed to change this user")]
    Forbidden,
    #[error("version mismatch: the user is at version {current}")]
    VersionMismatch { current: u64 },
    #[error("the user is deactivated")]
    Deactivated,
    #[error("the email address is already verified")]
    AlreadyVerified,
    #[error("the verification token is wrong, used or expired")]
    InvalidVerificationToken,
    #[error("the password reset token is wrong, used or expired")]
    InvalidResetToken,
    #[error("too many requests; try again in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("a service the user aggregate needs failed: {0}")]
    ServiceUnavailable(String),
}

impl DomainError for UserError {
    fn code(&self) -> &'static str {
        match self {
            UserError::NotFound => "NOT_FOUND",
            UserError::AlreadyRegistered => "CONFLICT",
            UserError::EmailTaken => "EMAIL_TAKEN",
            UserError::Forbidden => "FORBIDDEN",
            UserError::VersionMismatch { .. } => "PRECONDITION_FAILED",
            UserError::Deactivated => "INVALID_STATE_TRANSITION",
            UserError::AlreadyVerified => "INVALID_STATE_TRANSITION",
            UserError::InvalidVerificationToken => "VALIDATION_ERROR",
            UserError::InvalidResetToken => "VALIDATION_ERROR",
            UserError::TooManyRequests { .. } => "RATE_LIMITED",
            UserError::WrongPassword => "INVALID_CREDENTIALS",
            UserError::ServiceUnavailable(_) => "SERVICE_UNAVAILABLE",
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            UserError::NotFound => ErrorKind::NotFound,
            UserError::AlreadyRegistered => ErrorKind::Conflict,
            UserError::EmailTaken => ErrorKind::Conflict,
            UserError::Forbidden => ErrorKind::Forbidden,
            UserError::VersionMismatch { .. } => ErrorKind::VersionMismatch,
            UserError::Deactivated => ErrorKind::Conflict,
            UserError::AlreadyVerified => ErrorKind::Conflict,
            UserError::InvalidVerificationToken => ErrorKind::Invalid,
            UserError::InvalidResetToken => ErrorKind::Invalid,
            UserError::TooManyRequests { retry_after_secs } => ErrorKind::RateLimited {
                retry_after_secs: *retry_after_secs,
            },
            UserError::WrongPassword => ErrorKind::Unauthenticated,
            UserError::ServiceUnavailable(_) => ErrorKind::Unavailable,
        }
    }
}
