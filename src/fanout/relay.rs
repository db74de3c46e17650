//! The relay: publishes every event of the log to JetStream, in commit order, exactly once.
//!
//! It is one more log reader. Each message carries `Nats-Msg-Id` = the event id, so a message
//! sent twice within the stream's duplicate window is stored once; the checkpoint advances only
//! after JetStream acknowledged every message up to it. While NATS is unreachable the relay
//! retries with capped backoff and the API is unaffected. nats-server 2.9 acknowledges before
//! its disk has the message, so a NATS crash can lose acknowledged messages: on every
//! (re)connect the relay compares the stream's last message with its checkpoint and, when the
//! stream is behind, publishes the missing tail again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, Event, HeaderMap};
use projections::log::read_after;
use projections::Position;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::config::Config;
use crate::fanout::cloudevents::{cloud_event, subject};

const BATCH: i64 = 500;
const IDLE_POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

fn nats(err: impl std::fmt::Display) -> RelayError {
    RelayError::Nats(err.to_string())
}

#[derive(Clone)]
pub struct RelaySettings {
    pub nats_url: String,
    pub stream: String,
    pub subject_prefix: String,
    pub duplicate_window: Duration,
}

impl RelaySettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            nats_url: config.nats_url.clone(),
            stream: config.nats_stream.clone(),
            subject_prefix: config.nats_subject_prefix.clone(),
            duplicate_window: config.nats_duplicate_window,
        }
    }
}

/// Creates the stream, or brings an existing one to the configured subjects and window.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &RelaySettings,
) -> Result<stream::Stream, RelayError> {
    let config = stream::Config {
        name: settings.stream.clone(),
        subjects: vec![format!("{}.>", settings.subject_prefix)],
        duplicate_window: settings.duplicate_window,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    match js.get_stream(&settings.stream).await {
        Ok(_) => {
            js.update_stream(config).await.map_err(nats)?;
            js.get_stream(&settings.stream).await.map_err(nats)
        }
        Err(_) => js.create_stream(config).await.map_err(nats),
    }
}

/// Publishes events in order, pipelined, and waits for every ack; returns the last position
/// acknowledged.
pub async fn publish(
    js: &jetstream::Context,
    prefix: &str,
    events: &[projections::log::StoredEvent],
) -> Result<Option<Position>, RelayError> {
    let mut acks = Vec::with_capacity(events.len());
    for event in events {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
        let payload = serde_json::to_vec(&cloud_event(event)).map_err(nats)?;
        let ack = js
            .publish_with_headers(subject(prefix, event), headers, payload.into())
            .await
            .map_err(nats)?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await.map_err(nats)?;
    }
    Ok(events.last().map(|e| e.position))
}

pub struct Relay {
    pool: PgPool,
    database_url: String,
    settings: RelaySettings,
    wake: watch::Receiver<u64>,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        database_url: String,
        settings: RelaySettings,
        wake: &watch::Sender<u64>,
    ) -> Self {
        Self {
            pool,
            database_url,
            settings,
            wake: wake.subscribe(),
        }
    }

    async fn checkpoint(&self) -> Result<Position, sqlx::Error> {
        sqlx::query(
            "INSERT INTO relay_checkpoints (stream) VALUES ($1) ON CONFLICT (stream) DO NOTHING",
        )
        .bind(&self.settings.stream)
        .execute(&self.pool)
        .await?;
        let (tx, pos): (i64, i64) = sqlx::query_as(
            "SELECT transaction_id, position FROM relay_checkpoints WHERE stream = $1",
        )
        .bind(&self.settings.stream)
        .fetch_one(&self.pool)
        .await?;
        Ok(Position::new(tx, pos))
    }

    async fn save(&self, position: Position) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE relay_checkpoints SET transaction_id = $2, position = $3, updated_at = now() WHERE stream = $1",
        )
        .bind(&self.settings.stream)
        .bind(position.transaction_id)
        .bind(position.position)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves the checkpoint back to the stream's last message when the stream lost its tail.
    async fn reconcile(&self, stream: &mut stream::Stream) -> Result<(), RelayError> {
        let last_sequence = stream.info().await.map_err(nats)?.state.last_sequence;
        let in_stream = if last_sequence == 0 {
            Position::START
        } else {
            let message = stream.get_raw_message(last_sequence).await.map_err(nats)?;
            serde_json::from_slice::<serde_json::Value>(&message.payload)
                .ok()
                .and_then(|doc| doc.get("position")?.as_str()?.parse().ok())
                .unwrap_or(Position::START)
        };
        let checkpoint = self.checkpoint().await?;
        if in_stream < checkpoint {
            tracing::warn!(
                stream = %self.settings.stream,
                %checkpoint,
                %in_stream,
                "the stream is behind the relay's checkpoint (NATS lost acknowledged messages); publishing the tail again"
            );
            self.save(in_stream).await?;
        }
        Ok(())
    }

    /// One connection's worth of relaying; returns on the first error.
    async fn session(&mut self) -> Result<(), RelayError> {
        let reconnects = Arc::new(AtomicU64::new(0));
        let counter = reconnects.clone();
        let client = ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .event_callback(move |event| {
                let counter = counter.clone();
                async move {
                    if matches!(event, Event::Connected) {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
            .connect(&self.settings.nats_url)
            .await
            .map_err(nats)?;
        let js = jetstream::new(client);
        let mut stream = ensure_stream(&js, &self.settings).await?;
        self.reconcile(&mut stream).await?;
        let mut seen = reconnects.load(Ordering::SeqCst);
        tracing::info!(stream = %self.settings.stream, "relaying the log to NATS");
        loop {
            let now = reconnects.load(Ordering::SeqCst);
            if now != seen {
                seen = now;
                self.reconcile(&mut stream).await?;
            }
            self.wake.borrow_and_update();
            let checkpoint = self.checkpoint().await?;
            let events = read_after(&self.pool, checkpoint, BATCH).await?;
            if let Some(last) = publish(&js, &self.settings.subject_prefix, &events).await? {
                self.save(last).await?;
                metrics::counter!("chronicle_relay_published_total").increment(events.len() as u64);
                continue;
            }
            let _ = tokio::time::timeout(IDLE_POLL, self.wake.changed()).await;
        }
    }

    /// Leads (one relay per stream across instances) and relays until the task is dropped.
    pub async fn run(mut self) {
        loop {
            let mut leader = projections::runner::lead_as(
                &self.database_url,
                &format!("relay:{}", self.settings.stream),
            )
            .await;
            // The checkpoint row exists before NATS is reached, so lag shows while it is down.
            if let Err(e) = self.checkpoint().await {
                tracing::warn!(error = %e, "cannot read the relay checkpoint");
            }
            let mut backoff = Duration::from_millis(100);
            loop {
                if let Err(e) = self.session().await {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "relay interrupted");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if sqlx::query("SELECT 1").execute(&mut leader).await.is_err() {
                    tracing::warn!("relay lost its leadership connection");
                    break;
                }
            }
        }
    }
}
