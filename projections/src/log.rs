//! The global log reader: every event exactly once, in commit order, never skipping one that
//! commits late.
//!
//! `position` comes from a sequence, so a transaction that took an early number can commit
//! after one that took a later number. Reading by position alone would step over it. Instead
//! the log is ordered by `(transaction_id, position)`, and only transactions older than every
//! running transaction (`pg_snapshot_xmin`) are read: nothing can still be added below that line.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

use crate::Position;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event_id: uuid::Uuid,
    pub position: Position,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

// The output renames `transaction_id` to its bigint form, and ORDER BY prefers output
// names: every ORDER BY below qualifies `events.` so it sorts by the indexed xid8 column and
// walks `events_log_order`, instead of sorting every remaining event of the log.
const COLUMNS: &str =
    "event_id, transaction_id::text::bigint AS transaction_id, position, aggregate_type, \
     aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

impl StoredEvent {
    pub fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            event_id: row.try_get("event_id")?,
            position: Position::new(row.try_get("transaction_id")?, row.try_get("position")?),
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

/// Up to `limit` events after `after`, in commit order, from committed transactions only.
pub async fn read_after<'e>(
    executor: impl PgExecutor<'e>,
    after: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    read_filtered(executor, after, limit, None).await
}

/// Like [`read_after`], optionally only events of one aggregate type and/or event type.
pub async fn read_filtered<'e>(
    executor: impl PgExecutor<'e>,
    after: Position,
    limit: i64,
    filter: Option<(&Option<String>, &Option<String>)>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let (aggregate_type, event_type) =
        filter.map_or((None, None), |(a, e)| (a.as_deref(), e.as_deref()));
    let sql = format!(
        "SELECT {COLUMNS} FROM events
          WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2)
            AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
            AND ($4::text IS NULL OR aggregate_type = $4)
            AND ($5::text IS NULL OR event_type = $5)
          ORDER BY events.transaction_id, events.position
          LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(after.transaction_id)
        .bind(after.position)
        .bind(limit)
        .bind(aggregate_type)
        .bind(event_type)
        .fetch_all(executor)
        .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// The last `limit` readable events (optionally filtered like [`read_filtered`]), oldest first:
/// the tail of the log, from which a reader can follow with [`read_after`].
pub async fn read_last<'e>(
    executor: impl PgExecutor<'e>,
    limit: i64,
    filter: Option<(&Option<String>, &Option<String>)>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let (aggregate_type, event_type) =
        filter.map_or((None, None), |(a, e)| (a.as_deref(), e.as_deref()));
    let sql = format!(
        "SELECT {COLUMNS} FROM events
          WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
            AND ($2::text IS NULL OR aggregate_type = $2)
            AND ($3::text IS NULL OR event_type = $3)
          ORDER BY events.transaction_id DESC, events.position DESC
          LIMIT $1"
    );
    let rows = sqlx::query(&sql)
        .bind(limit)
        .bind(aggregate_type)
        .bind(event_type)
        .fetch_all(executor)
        .await?;
    let mut events = rows
        .iter()
        .map(StoredEvent::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    events.reverse();
    Ok(events)
}

/// The last readable position of the log (`Position::START` when it is empty).
pub async fn head<'e>(executor: impl PgExecutor<'e>) -> Result<Position, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, position FROM events
          WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY events.transaction_id DESC, events.position DESC LIMIT 1",
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map_or(Position::START, |(tx, pos)| Position::new(tx, pos)))
}

/// True when events exist after `after` that are not readable yet (their transaction, or an
/// older one, is still running): a reader that found nothing should look again soon.
pub async fn has_pending<'e>(
    executor: impl PgExecutor<'e>,
    after: Position,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2))",
    )
    .bind(after.transaction_id)
    .bind(after.position)
    .fetch_one(executor)
    .await
}

/// How many readable events lie after `after`.
pub async fn count_after<'e>(
    executor: impl PgExecutor<'e>,
    after: Position,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2)
            AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())",
    )
    .bind(after.transaction_id)
    .bind(after.position)
    .fetch_one(executor)
    .await
}

/// The events with these ids, in no particular order (ids not in the log are left out).
pub async fn events_by_id<'e>(
    executor: impl PgExecutor<'e>,
    ids: &[uuid::Uuid],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE event_id = ANY($1)");
    let rows = sqlx::query(&sql).bind(ids).fetch_all(executor).await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// One aggregate's events, oldest first.
pub async fn aggregate_events<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_all(executor)
        .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}
