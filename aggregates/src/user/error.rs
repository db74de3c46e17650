//! Why a user command was refused.

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
