//! The durable JetStream consumer that turns events into webhook deliveries. Instances share
//! it, so the work is spread; a redelivered message enqueues nothing new (one delivery per
//! endpoint and event).

use std::sync::Arc;

use projections::tail::LogTail;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::fanout::from_log;
use crate::fanout::relay::RelaySettings;
use crate::fanout::webhooks::delivery::body_from_cloud_event;
use crate::fanout::webhooks::store;

pub(crate) const CONSUMER: &str = "chronicle-webhooks";

/// Enqueues a batch of events for the endpoints that want them (the endpoints are read once a
/// batch).
async fn handle_batch(pool: &PgPool, events: &[Value]) -> Result<(), sqlx::Error> {
    let endpoints = store::enabled(pool).await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    for event in events {
        handle(pool, &endpoints, event).await?;
    }
    Ok(())
}

async fn handle(
    pool: &PgPool,
    endpoints: &[store::Endpoint],
    event: &Value,
) -> Result<(), sqlx::Error> {
    let Some(event_id) = event["id"]
        .as_str()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
    else {
        return Ok(());
    };
    let event_type = event["type"].as_str().unwrap_or_default();
    let recorded_at = event["time"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let body = body_from_cloud_event(event);
    for endpoint in endpoints {
        // An endpoint gets the events recorded after it was created; earlier ones only by an
        // explicit replay. So a lagging consumer, or an old message published again on NATS,
        // does not send history to an endpoint that never asked for it.
        let before_endpoint = recorded_at.is_some_and(|at| at < endpoint.created_at);
        if endpoint.wants(event_type) && !before_endpoint {
            store::enqueue(pool, endpoint.id, event_id, event_type, &body, false).await?;
        }
    }
    Ok(())
}

async fn session(
    pool: &PgPool,
    tail: &LogTail,
    settings: &RelaySettings,
    wake: &Notify,
) -> Result<(), String> {
    let consumer = from_log::durable_consumer(settings, CONSUMER).await?;
    // Not acked on a database error: NATS redelivers it, and the enqueue is idempotent.
    from_log::consume(
        tail,
        CONSUMER,
        consumer,
        |events| async move { handle_batch(pool, &events).await },
        || wake.notify_one(),
    )
    .await
}

pub async fn run(pool: PgPool, tail: Arc<LogTail>, settings: RelaySettings, wake: Arc<Notify>) {
    from_log::keep_consuming("webhooks", || session(&pool, &tail, &settings, &wake)).await
}
