//! Why a post command was refused.

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
