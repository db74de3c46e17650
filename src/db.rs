//! Database helpers shared by the layers.

use sqlx::migrate::Migrator;

/// The schema, applied at start (unless told not to) and checked by `/readyz`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The versions of the migrations applied to this database (none before the first).
pub async fn applied_migrations(pool: &sqlx::PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let table_exists: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if !table_exists {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
}

/// True when an error means the database cannot be reached or is going away (refused, reset,
/// timed out, broken handshake, a server shutting down, crashed or still starting), which
/// callers report as a retryable 503, not a 500.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_connection_state(&code)),
        _ => false,
    }
}

/// SQLSTATEs of a connection going away rather than of the statement: class 08 (connection
/// exception), 57P01 admin shutdown (also a postmaster that died), 57P02 crash shutdown, 57P03
/// cannot connect now (starting up, in recovery), 53300 too many connections.
fn is_connection_state(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// True when a statement that was sent may have run although no answer came: the connection
/// broke under it. An error *answer* (even 57P01) means the statement failed, and an error
/// before sending (pool timeout) means it never ran.
pub fn outcome_unknown(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// A write whose commit may or may not have happened: the connection broke while it was in
/// flight and the database did not come back in time to tell.
#[derive(Debug, thiserror::Error)]
#[error("the database went away while a write was in flight; whether it was applied is unknown")]
pub struct CommitUnknown(#[source] pub sqlx::Error);
