//! Every domain refusal, variant by variant, as the HTTP error it is answered with. There is
//! no catch-all arm: a new variant in the `aggregates` crate does not compile until it is
//! decided here.

use aggregates::post::PostError;
use aggregates::session::SessionError;
use aggregates::user::UserError;

use super::{ApiError, FieldError};
use crate::app::AppError;
use crate::commands::CommandError;

/// A domain error of one aggregate, answered as HTTP.
pub trait DomainProblem: std::error::Error {
    fn into_api_error(self) -> ApiError;
}

fn conflict(code: &'static str, err: &impl std::error::Error) -> ApiError {
    ApiError::Conflict {
        code,
        detail: err.to_string(),
    }
}

fn stale(err: &impl std::error::Error) -> ApiError {
    ApiError::PreconditionFailed {
        detail: err.to_string(),
    }
}

fn rejected_credentials(code: &'static str) -> ApiError {
    ApiError::Unauthorized {
        code,
        detail: "the credentials are not valid",
    }
}

/// Both tokens a user presents are sent in a body field named `token`.
fn invalid_token(err: &impl std::error::Error) -> ApiError {
    ApiError::validation(vec![FieldError::new("token", "INVALID", err.to_string())])
}

impl DomainProblem for UserError {
    fn into_api_error(self) -> ApiError {
        match self {
            UserError::NotFound => ApiError::NotFound,
            UserError::AlreadyRegistered => conflict("CONFLICT", &self),
            UserError::EmailTaken => conflict("EMAIL_TAKEN", &self),
            UserError::Forbidden => ApiError::Forbidden,
            UserError::VersionMismatch { .. } => stale(&self),
            UserError::Deactivated | UserError::AlreadyVerified => {
                conflict("INVALID_STATE_TRANSITION", &self)
            }
            UserError::InvalidVerificationToken | UserError::InvalidResetToken => {
                invalid_token(&self)
            }
            UserError::TooManyRequests { retry_after_secs } => {
                ApiError::RateLimited { retry_after_secs }
            }
            UserError::WrongPassword => rejected_credentials("INVALID_CREDENTIALS"),
            UserError::ServiceUnavailable(_) => ApiError::Unavailable {
                detail: "a dependency is unavailable; try again shortly",
                retry_after_secs: Some(1),
            },
        }
    }
}

impl DomainProblem for PostError {
    fn into_api_error(self) -> ApiError {
        match self {
            PostError::NotFound => ApiError::NotFound,
            PostError::AlreadyExists => conflict("CONFLICT", &self),
            PostError::Forbidden | PostError::AuthorRequired => ApiError::Forbidden,
            PostError::VersionMismatch { .. } => stale(&self),
            PostError::AlreadyPublished | PostError::NotPublished => {
                conflict("INVALID_STATE_TRANSITION", &self)
            }
        }
    }
}

impl DomainProblem for SessionError {
    fn into_api_error(self) -> ApiError {
        match self {
            SessionError::NotFound => ApiError::NotFound,
            SessionError::AlreadyStarted => conflict("CONFLICT", &self),
            SessionError::Revoked | SessionError::UnknownToken => {
                rejected_credentials("UNAUTHORIZED")
            }
            SessionError::Expired => rejected_credentials("TOKEN_EXPIRED"),
            // Another user's session is reported as absent, so ids cannot be probed.
            SessionError::Forbidden => ApiError::NotFound,
        }
    }
}

impl<E: DomainProblem> From<CommandError<E>> for ApiError {
    fn from(err: CommandError<E>) -> Self {
        match err {
            CommandError::Domain(e) => e.into_api_error(),
            CommandError::Conflict { precondition: true } => ApiError::PreconditionFailed {
                detail: "the resource changed since the version in If-Match".into(),
            },
            CommandError::Conflict {
                precondition: false,
            } => ApiError::Conflict {
                code: "CONFLICT",
                detail: "the resource is being changed by others; try again".into(),
            },
            CommandError::Unavailable(cause) if cause.is::<crate::db::CommitUnknown>() => {
                ApiError::CommitUnknown
            }
            CommandError::Unavailable(_) => ApiError::database_unavailable(),
            CommandError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::User(e) => e.into(),
            AppError::Session(e) => e.into(),
            AppError::Post(e) => e.into(),
            AppError::InvalidCredentials => ApiError::invalid_credentials(),
            AppError::Throttled { retry_after_secs } => ApiError::RateLimited { retry_after_secs },
            AppError::UnknownRefreshToken => ApiError::unauthorized(),
            AppError::RefreshTokenExpired => ApiError::Unauthorized {
                code: "TOKEN_EXPIRED",
                detail: "the refresh token has expired; sign in again",
            },
            AppError::RefreshTokenReused => ApiError::Unauthorized {
                code: "TOKEN_REUSED",
                detail: "this refresh token was already used; the session has been revoked",
            },
            AppError::InvalidToken => {
                ApiError::field("token", "INVALID", "the token is wrong, used or expired")
            }
            AppError::Forbidden => ApiError::Forbidden,
            AppError::NotFound => ApiError::NotFound,
            AppError::Database(e) => ApiError::internal(e),
            AppError::Internal(e) => ApiError::internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;
    use crate::http::error::Problem;

    fn answered(err: impl DomainProblem) -> (u16, String) {
        let response = err.into_api_error().into_response();
        let problem = response
            .extensions()
            .get::<Problem>()
            .expect("every error carries its problem");
        (problem.status.as_u16(), problem.code.to_string())
    }

    #[test]
    fn user_errors_are_answered_with_their_stable_codes() {
        let cases = [
            (UserError::NotFound, 404, "NOT_FOUND"),
            (UserError::AlreadyRegistered, 409, "CONFLICT"),
            (UserError::EmailTaken, 409, "EMAIL_TAKEN"),
            (UserError::Forbidden, 403, "FORBIDDEN"),
            (
                UserError::VersionMismatch { current: 2 },
                412,
                "PRECONDITION_FAILED",
            ),
            (UserError::Deactivated, 409, "INVALID_STATE_TRANSITION"),
            (UserError::AlreadyVerified, 409, "INVALID_STATE_TRANSITION"),
            (UserError::InvalidVerificationToken, 422, "VALIDATION_ERROR"),
            (UserError::InvalidResetToken, 422, "VALIDATION_ERROR"),
            (
                UserError::TooManyRequests {
                    retry_after_secs: 30,
                },
                429,
                "RATE_LIMITED",
            ),
            (UserError::WrongPassword, 401, "INVALID_CREDENTIALS"),
            (
                UserError::ServiceUnavailable("smtp".into()),
                503,
                "SERVICE_UNAVAILABLE",
            ),
        ];
        for (error, status, code) in cases {
            let label = format!("{error:?}");
            assert_eq!(answered(error), (status, code.to_owned()), "{label}");
        }
    }

    #[test]
    fn post_errors_are_answered_with_their_stable_codes() {
        let cases = [
            (PostError::NotFound, 404, "NOT_FOUND"),
            (PostError::AlreadyExists, 409, "CONFLICT"),
            (PostError::Forbidden, 403, "FORBIDDEN"),
            (PostError::AuthorRequired, 403, "FORBIDDEN"),
            (
                PostError::VersionMismatch { current: 4 },
                412,
                "PRECONDITION_FAILED",
            ),
            (PostError::AlreadyPublished, 409, "INVALID_STATE_TRANSITION"),
            (PostError::NotPublished, 409, "INVALID_STATE_TRANSITION"),
        ];
        for (error, status, code) in cases {
            let label = format!("{error:?}");
            assert_eq!(answered(error), (status, code.to_owned()), "{label}");
        }
    }

    #[test]
    fn session_errors_are_answered_with_their_stable_codes() {
        let cases = [
            (SessionError::NotFound, 404, "NOT_FOUND"),
            (SessionError::AlreadyStarted, 409, "CONFLICT"),
            (SessionError::Revoked, 401, "UNAUTHORIZED"),
            (SessionError::Expired, 401, "TOKEN_EXPIRED"),
            (SessionError::UnknownToken, 401, "UNAUTHORIZED"),
            (SessionError::Forbidden, 404, "NOT_FOUND"),
        ];
        for (error, status, code) in cases {
            let label = format!("{error:?}");
            assert_eq!(answered(error), (status, code.to_owned()), "{label}");
        }
    }
}
