//! Recent failures an operator should look at: webhook deliveries and emails that failed or are
//! being retried, and failed projectors, each with the request and trace that caused it.
//!
//! A delivery or email joins the event it carries, whose metadata holds the request id
//! (`correlation_id`) and, for events appended while traces are exported, the W3C
//! `traceparent` of the command that appended it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::telemetry::propagation;

/// One failure, as `GET /admin/failures` lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FailureView {
    /// `webhook`, `email` or `projector`.
    pub kind: String,
    /// `failed` (given up: only an operator's retry or fix helps) or `retrying` (failed at
    /// least once; `next_attempt_at` says when it is tried again).
    pub status: String,
    /// When the delivery or email was queued; for a projector, when it last failed.
    pub at: DateTime<Utc>,
    /// The delivery's or the email's id (what their retry takes), or the projector's name.
    pub id: String,
    /// What failed, e.g. `post.published to https://example.com/hook` or `welcome email`.
    pub summary: String,
    /// The last error.
    pub error: Option<String>,
    /// Attempts so far (deliveries and emails).
    pub attempts: Option<i32>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The event the delivery or email is for.
    pub event_id: Option<Uuid>,
    /// The W3C trace id (32 lowercase hex digits) of the request that appended the event; null
    /// for events appended while no traces were exported, and for projectors.
    pub trace_id: Option<String>,
    /// The `X-Request-Id` of the request that appended the event (its `correlation_id`).
    pub request_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct FailureRow {
    kind: String,
    status: String,
    at: DateTime<Utc>,
    id: String,
    summary: String,
    error: Option<String>,
    attempts: Option<i32>,
    next_attempt_at: Option<DateTime<Utc>>,
    event_id: Option<Uuid>,
    traceparent: Option<String>,
    request_id: Option<String>,
}

/// The newest `limit` failures of every kind, newest first. Each branch reads a partial index
/// of its failing rows newest first, so the cost does not grow with the deliveries and emails
/// that succeeded.
pub async fn recent(pool: &PgPool, limit: i64) -> Result<Vec<FailureView>, sqlx::Error> {
    let rows: Vec<FailureRow> = sqlx::query_as(
        "(SELECT 'webhook' AS kind,
                 CASE WHEN d.status = 'failed' THEN 'failed' ELSE 'retrying' END AS status,
                 d.created_at AS at, d.id::text AS id, d.event_type || ' to ' || w.url AS summary,
                 d.last_error AS error, d.attempts,
                 CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
                 d.event_id, e.metadata->>'traceparent' AS traceparent,
                 e.metadata->>'correlation_id' AS request_id
            FROM webhook_deliveries d
            JOIN webhook_endpoints w ON w.id = d.endpoint_id
            LEFT JOIN events e ON e.event_id = d.event_id
           WHERE d.status = 'failed' OR (d.status = 'pending' AND d.attempts > 0)
           ORDER BY d.created_at DESC
           LIMIT $1)
         UNION ALL
         (SELECT 'email',
                 CASE WHEN o.status = 'failed' THEN 'failed' ELSE 'retrying' END,
                 o.created_at, o.id::text, o.kind || ' email', o.last_error, o.attempts,
                 CASE WHEN o.status = 'pending' THEN o.next_attempt_at END,
                 o.event_id, e.metadata->>'traceparent', e.metadata->>'correlation_id'
            FROM email_outbox o
            LEFT JOIN events e ON e.event_id = o.event_id
           WHERE o.status = 'failed' OR (o.status = 'pending' AND o.last_error IS NOT NULL)
           ORDER BY o.created_at DESC
           LIMIT $1)
         UNION ALL
         (SELECT 'projector', 'failed', updated_at, name, 'projector ' || name, last_error,
                 NULL::integer, NULL::timestamptz, NULL::uuid, NULL::text, NULL::text
            FROM projection_checkpoints
           WHERE status = 'failed')
         ORDER BY at DESC
         LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(FailureView::from).collect())
}

impl From<FailureRow> for FailureView {
    fn from(row: FailureRow) -> Self {
        Self {
            trace_id: row.traceparent.as_deref().and_then(propagation::trace_id),
            kind: row.kind,
            status: row.status,
            at: row.at,
            id: row.id,
            summary: row.summary,
            error: row.error,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            event_id: row.event_id,
            request_id: row.request_id,
        }
    }
}
