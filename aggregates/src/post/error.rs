//! Why a post command was refused.

use crate::{DomainError, ErrorKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("post not found")]
    NotFound,
    #[error("post already exists")]
    AlreadyExists,
    #[error("only the author or an admin may change this post")]
    Forbidden,
    #[error("a post needs a signed-in author")]
    AuthorRequired,
    #[error("version mismatch: the post is at version {current}")]
    VersionMismatch { current: u64 },
    #[error("the post is already published")]
    AlreadyPublished,
    #[error("the post is not published")]
    NotPublished,
}

impl DomainError for PostError {
    fn code(&self) -> &'static str {
        match self {
            PostError::NotFound => "NOT_FOUND",
            PostError::AlreadyExists => "CONFLICT",
            PostError::Forbidden => "FORBIDDEN",
            PostError::AuthorRequired => "FORBIDDEN",
            PostError::VersionMismatch { .. } => "PRECONDITION_FAILED",
            PostError::AlreadyPublished => "INVALID_STATE_TRANSITION",
            PostError::NotPublished => "INVALID_STATE_TRANSITION",
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            PostError::NotFound => ErrorKind::NotFound,
            PostError::AlreadyExists => ErrorKind::Conflict,
            PostError::Forbidden => ErrorKind::Forbidden,
            PostError::AuthorRequired => ErrorKind::Forbidden,
            PostError::VersionMismatch { .. } => ErrorKind::VersionMismatch,
            PostError::AlreadyPublished => ErrorKind::Conflict,
            PostError::NotPublished => ErrorKind::Conflict,
        }
    }
}
