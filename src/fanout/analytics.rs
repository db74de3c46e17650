//! The analytics consumer: a durable JetStream consumer that keeps hourly counters per event
//! type and the users active in each hour. Each event is counted once, also when NATS
//! redelivers it: its id goes into a ledger in the same transaction as its counters, one
//! transaction for each batch of messages.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, Utc};
use projections::tail::LogTail;
use serde_json::Value;
use sqlx::PgPool;

use crate::fanout::from_log;
use crate::fanout::relay::RelaySettings;

pub(crate) const CONSUMER: &str = "chronicle-analytics";

/// The user an event counts as activity of: the actor, else the user it is about.
fn active_user(event: &Value) -> Option<uuid::Uuid> {
    let actor = event["actorid"].as_str().filter(|a| !a.is_empty());
    let subject_user = match event["type"].as_str() {
        Some(t) if t.starts_with("user.") => event["aggregateid"].as_str(),
        Some(t) if t.starts_with("session.") => event["data"]["user_id"].as_str(),
        _ => None,
    };
    actor
        .or(subject_user)
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
}

/// Counts a batch of CloudEvents in one transaction; returns how many were new (a redelivered
/// event is in the ledger already and counts nothing).
pub async fn record(pool: &PgPool, events: &[Value]) -> Result<usize, sqlx::Error> {
    let parsed: Vec<(uuid::Uuid, &str, DateTime<Utc>, Option<uuid::Uuid>)> = events
        .iter()
        .filter_map(|event| {
            let id = event["id"]
                .as_str()
                .and_then(|id| uuid::Uuid::parse_str(id).ok())?;
            let event_type = event["type"].as_str()?;
            let time = event["time"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())?
                .with_timezone(&Utc);
            let bucket = time
                .duration_trunc(chrono::Duration::hours(1))
                .unwrap_or(time);
            Some((id, event_type, bucket, active_user(event)))
        })
        .collect();
    if parsed.is_empty() {
        return Ok(0);
    }
    let ids: Vec<uuid::Uuid> = parsed.iter().map(|p| p.0).collect();
    let mut tx = pool.begin().await?;
    let fresh: std::collections::HashSet<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO analytics_processed (event_id) SELECT * FROM UNNEST($1::uuid[])
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut counts: std::collections::BTreeMap<(DateTime<Utc>, &str), i64> = Default::default();
    let mut active: std::collections::BTreeSet<(DateTime<Utc>, uuid::Uuid)> = Default::default();
    for (id, event_type, bucket, user) in &parsed {
        if fresh.contains(id) {
            *counts.entry((*bucket, event_type)).or_default() += 1;
            if let Some(user) = user {
                active.insert((*bucket, *user));
            }
        }
    }
    if counts.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let (buckets, (types, numbers)): (Vec<_>, (Vec<_>, Vec<_>)) = counts
        .iter()
        .map(|((bucket, event_type), n)| (*bucket, (*event_type, *n)))
        .unzip();
    sqlx::query(
        "INSERT INTO analytics_hourly (bucket, event_type, count)
         SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::bigint[])
         ON CONFLICT (bucket, event_type) DO UPDATE SET count = analytics_hourly.count + EXCLUDED.count",
    )
    .bind(&buckets)
    .bind(&types)
    .bind(&numbers)
    .execute(&mut *tx)
    .await?;
    if !active.is_empty() {
        let (buckets, users): (Vec<_>, Vec<_>) = active.into_iter().unzip();
        sqlx::query(
            "INSERT INTO analytics_active_users (bucket, user_id)
             SELECT * FROM UNNEST($1::timestamptz[], $2::uuid[]) ON CONFLICT DO NOTHING",
        )
        .bind(&buckets)
        .bind(&users)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(fresh.len())
}

async fn session(pool: &PgPool, tail: &LogTail, settings: &RelaySettings) -> Result<(), String> {
    let consumer = from_log::durable_consumer(settings, CONSUMER).await?;
    // Not acked on a database error: NATS redelivers, and the ledger keeps counting exact.
    from_log::consume(
        tail,
        CONSUMER,
        consumer,
        |events| async move { record(pool, &events).await.map(|_| ()) },
        || {},
    )
    .await
}

pub async fn run(pool: PgPool, tail: Arc<LogTail>, settings: RelaySettings) {
    from_log::keep_consuming("analytics", || session(&pool, &tail, &settings)).await
}
