//! The outbox's SQL for everyone but its writer: the sender's claims and outcomes, the admin
//! listing and retries, and the reset confirmation's lookup.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

/// How long a claimed message is reserved for the sender that claimed it. Longer than one SMTP
/// attempt can take, so no other sender takes it meanwhile; a sender that dies leaves it to be
/// retried after this.
pub const LEASE_SECS: i64 = 60;

/// A message as `GET /admin/emails` shows it: never the body (it would hold the link).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct EmailView {
    pub id: uuid::Uuid,
    /// `welcome`, `verification`, `password_reset` or `password_changed`.
    pub kind: String,
    pub to: String,
    pub subject: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// A claimed message with what the sender needs to render it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: uuid::Uuid,
    pub kind: String,
    pub user_id: uuid::Uuid,
    pub recipient: String,
    pub subject: String,
    pub token_nonce: Option<String>,
    pub message_id: String,
    pub attempts: i32,
    pub retry_until: DateTime<Utc>,
    /// The context of the command whose event asked for the message, when it was traced.
    pub traceparent: Option<String>,
}

/// Takes up to `limit` due messages, counting the attempt and leasing them. `SKIP LOCKED`
/// lets concurrent senders take disjoint sets; the lease keeps them disjoint afterwards.
pub async fn claim(pool: &PgPool, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE email_outbox
            SET attempts = attempts + 1,
                next_attempt_at = now() + make_interval(secs => $2)
          WHERE id IN (SELECT id FROM email_outbox
                        WHERE status = 'pending' AND next_attempt_at <= now()
                        ORDER BY next_attempt_at
                        LIMIT $1
                        FOR UPDATE SKIP LOCKED)
      RETURNING id, kind, user_id, recipient, subject, token_nonce, message_id, attempts, retry_until,
                (SELECT e.metadata->>'traceparent' FROM events e WHERE e.event_id = email_outbox.event_id) AS traceparent",
    )
    .bind(limit)
    .bind(LEASE_SECS as f64)
    .fetch_all(pool)
    .await
}

pub async fn mark_sent(pool: &PgPool, id: uuid::Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE email_outbox SET status = 'sent', sent_at = now(), last_error = NULL WHERE id = $1",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn mark_failed(pool: &PgPool, id: uuid::Uuid, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE email_outbox SET status = 'failed', last_error = $2 WHERE id = $1")
        .bind(id)
        .bind(error)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn reschedule(
    pool: &PgPool,
    id: uuid::Uuid,
    error: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE email_outbox SET last_error = $2, next_attempt_at = $3 WHERE id = $1")
        .bind(id)
        .bind(error)
        .bind(at)
        .execute(pool)
        .await?;
    Ok(())
}

/// When the next pending message falls due, if any.
pub async fn next_due(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT min(next_attempt_at) FROM email_outbox WHERE status = 'pending'")
        .fetch_one(pool)
        .await
}

/// Newest first, optionally only one status.
pub async fn list(
    pool: &PgPool,
    limit: i64,
    status: Option<&str>,
) -> Result<Vec<EmailView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, recipient AS \"to\", subject, status, attempts, last_error, created_at, sent_at
           FROM email_outbox
          WHERE $2::text IS NULL OR status = $2
          ORDER BY created_at DESC, id DESC
          LIMIT $1",
    )
    .bind(limit)
    .bind(status)
    .fetch_all(pool)
    .await
}

pub enum RetryOutcome {
    Queued,
    NotFound,
    NotFailed,
}

/// Puts a failed message back in the queue with a fresh 24 h and wakes the senders.
pub async fn retry(pool: &PgPool, id: uuid::Uuid) -> Result<RetryOutcome, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar(
        "WITH retried AS (
             UPDATE email_outbox
                SET status = 'pending', next_attempt_at = now(),
                    retry_until = now() + interval '24 hours'
              WHERE id = $1 AND status = 'failed'
          RETURNING status)
         SELECT status FROM retried
          UNION ALL SELECT 'not-failed' FROM email_outbox
                     WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM retried)",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(match status.as_deref() {
        Some("pending") => {
            sqlx::query("SELECT pg_notify('chronicle_emails', '')")
                .execute(pool)
                .await?;
            RetryOutcome::Queued
        }
        Some(_) => RetryOutcome::NotFailed,
        None => RetryOutcome::NotFound,
    })
}

/// The user a reset token was mailed to, found by the token's hash.
pub async fn reset_token_owner(
    pool: &PgPool,
    token_hash: &str,
) -> Result<Option<uuid::Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT user_id FROM email_outbox WHERE token_hash = $1 AND kind = 'password_reset'",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await
}
