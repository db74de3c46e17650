//! The analytics consumer: a durable JetStream consumer that keeps hourly counters per event
//! type and the users active in each hour. Each event is counted once, also when NATS
//! redelivers it: its id goes into a ledger in the same transaction as its counters.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, DurationRound, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::fanout::from_log;
use crate::fanout::relay::{ensure_stream, RelaySettings};

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

/// Counts one CloudEvent; returns false when it had been counted before.
pub async fn record(pool: &PgPool, event: &Value) -> Result<bool, sqlx::Error> {
    let (Some(id), Some(event_type), Some(time)) = (
        event["id"]
            .as_str()
            .and_then(|id| uuid::Uuid::parse_str(id).ok()),
        event["type"].as_str(),
        event["time"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
    ) else {
        return Ok(false);
    };
    let bucket = time
        .with_timezone(&Utc)
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap_or_else(|_| time.with_timezone(&Utc));
    let mut tx = pool.begin().await?;
    let first_time = sqlx::query(
        "INSERT INTO analytics_processed (event_id) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !first_time {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO analytics_hourly (bucket, event_type, count) VALUES ($1, $2, 1)
         ON CONFLICT (bucket, event_type) DO UPDATE SET count = analytics_hourly.count + 1",
    )
    .bind(bucket)
    .bind(event_type)
    .execute(&mut *tx)
    .await?;
    if let Some(user) = active_user(event) {
        sqlx::query("INSERT INTO analytics_active_users (bucket, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(bucket)
            .bind(user)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

async fn session(pool: &PgPool, settings: &RelaySettings) -> Result<(), String> {
    let client = settings.connect(async_nats::ConnectOptions::new()).await?;
    let js = jetstream::new(client);
    let stream = ensure_stream(&js, settings)
        .await
        .map_err(|e| e.to_string())?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    // Not acked on a database error: NATS redelivers, and the ledger keeps counting exact.
    from_log::consume(
        pool,
        CONSUMER,
        consumer,
        |event| async move { record(pool, &event).await.map(|_| ()) },
        || {},
    )
    .await
}

pub async fn run(pool: PgPool, settings: RelaySettings) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&pool, &settings).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, "analytics consumer interrupted; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
