//! The durable JetStream consumer that turns events into webhook deliveries. Instances share
//! it, so the work is spread; a redelivered message enqueues nothing new (one delivery per
//! endpoint and event).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use projections::tail::LogTail;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::fanout::from_log;
use crate::fanout::relay::{ensure_stream, RelaySettings};
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
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&pool, &tail, &settings, &wake).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, "webhook consumer interrupted; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
