//! The HTTP error type: every failure a handler can meet, rendered as an RFC 9457 problem.
//!
//! `ApiError::into_response` only decides the status, headers and problem fields and logs the
//! internal cause once, inside the request span. The problem body itself is written by the
//! request-context middleware, which knows the request id and path (`trace_id`, `instance`) and
//! also turns errors produced outside the router (unknown routes, 405, 413, panics) into problems.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

mod domain;

pub use domain::DomainProblem;

/// One invalid field: `field` is the JSON path (`tags[2]`), or the query parameter name.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {detail}")]
    Malformed {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("unauthenticated ({code})")]
    Unauthorized {
        code: &'static str,
        detail: &'static str,
    },
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("conflict ({code})")]
    Conflict { code: &'static str, detail: String },
    #[error("precondition failed")]
    PreconditionFailed { detail: String },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("validation failed")]
    Validation { errors: Vec<FieldError> },
    #[error("service unavailable: {detail}")]
    Unavailable {
        detail: &'static str,
        retry_after_secs: Option<u64>,
    },
    /// The database failed while the command's write was in flight and did not come back in
    /// time to tell whether it was applied.
    #[error("the command's outcome is unknown")]
    CommitUnknown,
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("the read models have not reached the requested position")]
    ProjectionLagging,
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let err = err.into();
        if is_database_unavailable(err.as_ref()) {
            return Self::database_unavailable();
        }
        Self::Internal(err)
    }

    pub fn database_unavailable() -> Self {
        Self::Unavailable {
            detail: "the database is unreachable; try again shortly",
            retry_after_secs: Some(1),
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self::Validation { errors }
    }

    pub fn field(field: &str, code: &str, message: &str) -> Self {
        Self::validation(vec![FieldError::new(field, code, message)])
    }

    pub fn unauthorized() -> Self {
        Self::Unauthorized {
            code: "UNAUTHORIZED",
            detail: "missing or invalid credentials",
        }
    }

    pub fn invalid_credentials() -> Self {
        Self::Unauthorized {
            code: "INVALID_CREDENTIALS",
            detail: "the email or password is wrong",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        Self::internal(err)
    }
}

/// True when the cause is the database being unreachable (connection refused, pool timed out),
/// which clients should see as a 503 they can retry, not a 500.
pub fn is_database_unavailable(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(sqlx_err) = e.downcast_ref::<sqlx::Error>() {
            return crate::db::is_unavailable(sqlx_err);
        }
        current = e.source();
    }
    false
}

/// Marks an answer whose command may have been applied: its idempotency record is kept, so a
/// retry with the same key cannot apply it a second time.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeUnknown;

/// The fields of a problem document that the error decides; the middleware adds `instance` and
/// `trace_id` and writes the body.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub title: Cow<'static, str>,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: Cow::Borrowed(code),
            title: Cow::Borrowed(title),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// The generic problem for a status produced outside our handlers.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::new(
                status,
                "NOT_FOUND",
                "Not found",
                "no such resource or route",
            ),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                status,
                "METHOD_NOT_ALLOWED",
                "Method not allowed",
                "the method is not allowed on this resource",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                status,
                "PAYLOAD_TOO_LARGE",
                "Payload too large",
                "the request body is over the limit",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                status,
                "UNSUPPORTED_MEDIA_TYPE",
                "Unsupported media type",
                "the body must be JSON (Content-Type: application/json)",
            ),
            StatusCode::REQUEST_TIMEOUT => Self::new(
                status,
                "TIMEOUT",
                "Request timeout",
                "the request took too long",
            ),
            StatusCode::UNAUTHORIZED => Self::new(
                status,
                "UNAUTHORIZED",
                "Unauthorized",
                "missing or invalid credentials",
            ),
            StatusCode::FORBIDDEN => Self::new(status, "FORBIDDEN", "Forbidden", "not allowed"),
            StatusCode::TOO_MANY_REQUESTS => {
                Self::new(status, "RATE_LIMITED", "Too many requests", "slow down")
            }
            StatusCode::SERVICE_UNAVAILABLE => Self::new(
                status,
                "SERVICE_UNAVAILABLE",
                "Service unavailable",
                "try again shortly",
            ),
            s if s.is_client_error() => Self::new(
                s,
                "BAD_REQUEST",
                "Bad request",
                "the request was not accepted",
            ),
            s => Self::new(
                s,
                "INTERNAL_ERROR",
                "Internal server error",
                "an unexpected error occurred",
            ),
        }
    }

    pub fn type_uri(&self) -> String {
        format!(
            "https://chronicle.dev/problems/{}",
            self.code.to_ascii_lowercase().replace('_', "-")
        )
    }
}

impl ApiError {
    fn problem(&self) -> Problem {
        match self {
            ApiError::Malformed { detail, errors } => Problem {
                errors: errors.clone(),
                ..Problem::new(
                    StatusCode::BAD_REQUEST,
                    "MALFORMED_REQUEST",
                    "Malformed request",
                    detail.clone(),
                )
            },
            ApiError::Unauthorized { code, detail } => {
                Problem::new(StatusCode::UNAUTHORIZED, code, "Unauthorized", *detail)
            }
            ApiError::Forbidden => Problem::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "Forbidden",
                "you are not allowed to do this",
            ),
            ApiError::NotFound => Problem::for_status(StatusCode::NOT_FOUND),
            ApiError::Conflict { code, detail } => {
                Problem::new(StatusCode::CONFLICT, code, "Conflict", detail.clone())
            }
            ApiError::PreconditionFailed { detail } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "PRECONDITION_FAILED",
                "Precondition failed",
                detail.clone(),
            ),
            ApiError::UnsupportedMediaType => {
                Problem::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
            ApiError::PayloadTooLarge => Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE),
            ApiError::Validation { errors } => {
                let detail = match errors.len() {
                    1 => "1 field is invalid".to_owned(),
                    n => format!("{n} fields are invalid"),
                };
                Problem {
                    errors: errors.clone(),
                    ..Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "VALIDATION_ERROR",
                        "Validation failed",
                        detail,
                    )
                }
            }
            ApiError::Unavailable { detail, .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "Service unavailable",
                *detail,
            ),
            ApiError::CommitUnknown => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "Service unavailable",
                "the database became unreachable while this command was being committed, so it \
                 may or may not have been applied; check the resource before sending it again \
                 (a retry with the same Idempotency-Key is refused, not applied twice)",
            ),
            ApiError::IdempotencyKeyReused => Problem {
                errors: vec![FieldError::new(
                    "Idempotency-Key",
                    "IDEMPOTENCY_KEY_REUSED",
                    "this key was used with a different request",
                )],
                ..Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "IDEMPOTENCY_KEY_REUSED",
                    "Idempotency key reused",
                    "this Idempotency-Key was already used with a different request",
                )
            },
            ApiError::RateLimited { retry_after_secs } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "Too many requests",
                format!("the request budget is spent; retry in {retry_after_secs} s"),
            ),
            ApiError::ProjectionLagging => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "PROJECTION_LAGGING",
                "Projection lagging",
                "the read models have not reached the requested position yet; retry shortly",
            ),
            ApiError::Internal(_) => Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, source = ?cause.source(), "request failed")
            }
            ApiError::Unavailable { detail, .. } => {
                tracing::warn!(detail, "dependency unavailable")
            }
            ApiError::CommitUnknown => tracing::warn!("a command's commit outcome is unknown"),
            _ => tracing::debug!(error = %self, "request refused"),
        }
        let problem = self.problem();
        let mut response = problem.status.into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized { .. } => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable {
                retry_after_secs: Some(secs),
                ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            ApiError::ProjectionLagging => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            ApiError::CommitUnknown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
                response.extensions_mut().insert(OutcomeUnknown);
            }
            ApiError::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response.extensions_mut().insert(problem);
        response
    }
}
