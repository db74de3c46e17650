//! Database helpers shared by the layers.

/// True when an error means the database cannot be reached (refused, reset, timed out, broken
/// handshake), which callers report as a retryable 503, not a 500.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}
