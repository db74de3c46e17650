//! Replays the log to one endpoint, a page at a time, so memory stays bounded however far back
//! `since` reaches.

use chrono::{DateTime, Utc};
use projections::log::StoredEvent;
use projections::Position;
use sqlx::PgPool;

use crate::fanout::cloudevents::cloud_event;
use crate::fanout::webhooks::delivery::body_from_cloud_event;
use crate::fanout::webhooks::store::{self, Endpoint};

/// Events read per page.
pub const PAGE: i64 = 100;

/// One page of events recorded since `since`, after `after` in log order (keyset on the
/// `events_log_order` index, so each page starts where the last ended without an OFFSET).
async fn page(
    pool: &PgPool,
    since: DateTime<Utc>,
    after: Position,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT event_id, transaction_id::text::bigint AS transaction_id, position, aggregate_type,
                aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at
           FROM events
          WHERE (transaction_id, position) > ($2::bigint::text::xid8, $3)
            AND recorded_at >= $1
          ORDER BY events.transaction_id, events.position
          LIMIT $4",
    )
    .bind(since)
    .bind(after.transaction_id)
    .bind(after.position)
    .bind(PAGE)
    .fetch_all(pool)
    .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// Queues (again) every event since `since` that the endpoint wants; returns how many.
pub async fn replay(
    pool: &PgPool,
    endpoint: &Endpoint,
    since: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    let mut after = Position::START;
    let mut queued = 0;
    loop {
        let events = page(pool, since, after).await?;
        let Some(last) = events.last() else {
            return Ok(queued);
        };
        after = last.position;
        let wanted: Vec<store::Queued> = events
            .iter()
            .filter(|event| endpoint.wants(&event.event_type))
            .map(|event| store::Queued {
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                payload: body_from_cloud_event(&cloud_event(event)),
            })
            .collect();
        store::enqueue_many(pool, endpoint.id, &wanted, true).await?;
        queued += wanted.len();
        if (events.len() as i64) < PAGE {
            return Ok(queued);
        }
    }
}
