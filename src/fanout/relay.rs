//! The relay: publishes every event of the log to JetStream, in commit order, exactly once.
//!
//! It is one more log reader. Each message carries `Nats-Msg-Id` = the event id, so a message
//! sent twice within the stream's duplicate window is stored once; the checkpoint advances only
//! after JetStream acknowledged every message up to it. While NATS is unreachable the relay
//! retries with capped backoff and the API is unaffected. nats-server 2.9 acknowledges before
//! its disk has the message, so a NATS crash can lose acknowledged messages: on every
//! (re)connect the relay compares the stream's last message with its checkpoint and, when the
//! stream is behind, publishes the missing tail again.
//!
//! That comparison alone is not enough: the client reconnects by itself and sends what it held
//! meanwhile, so new events could land on a restarted stream before the relay looked, hiding the
//! hole behind them. Every message therefore expects the stream's last sequence to be the one the
//! relay knows (`Nats-Expected-Last-Sequence`): a stream that lost its tail refuses them, and the
//! relay reconciles before anything is stored after the hole.
//!
//! One instance relays at a time ([`projections::leader`]), and a relay that lost its lock stops
//! at once; its checkpoint writes carry its leadership epoch and it confirms the epoch before each
//! batch. What a deposed relay already handed to NATS can still land, so ordering does not rest
//! on leadership either: every (re)connect anchors on the stream itself, the last relayed message
//! and the stream's last sequence read together, never on a checkpoint read at another moment.
//! Each message then names the sequence its log predecessor has (or will have), so a message is
//! stored only right behind its predecessor, whoever sent either: two relays anchored that way
//! send the same message for the same slot, and JetStream keeps one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::RawMessageErrorKind;
use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, Event, HeaderMap};
use projections::leader::{self, Fence, TermLog};
use projections::log::StoredEvent;
use projections::tail::LogTail;
use projections::Position;
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::Config;
use crate::fanout::cloudevents::{cloud_event, subject};
use crate::recorder::Gauges;
use crate::telemetry::{propagation, spans};

const BATCH: i64 = 1000;
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often a busy relay proves its leadership epoch (and stores its checkpoint); the
/// handover a new leader waits before starting is twelve times longer.
const FENCE_EVERY: Duration = Duration::from_millis(100);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How far back from the stream's end reconcile looks for a message of the relay's before it
/// gives up and publishes from the start (JetStream drops what it still knows as duplicates).
const MAX_WALK_BACK: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Another instance took over the relay: this one's epoch is no longer the checkpoint's.
    #[error("another instance relays now")]
    Fenced,
}

fn nats_error(err: impl std::fmt::Display) -> RelayError {
    RelayError::Nats(err.to_string())
}

#[derive(Clone)]
pub struct RelaySettings {
    pub nats_url: String,
    pub nats_creds_file: Option<std::path::PathBuf>,
    pub stream: String,
    pub subject_prefix: String,
    pub duplicate_window: Duration,
}

impl RelaySettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            nats_url: config.nats_url.clone(),
            nats_creds_file: config.nats_creds_file.clone(),
            stream: config.nats_stream.clone(),
            subject_prefix: config.nats_subject_prefix.clone(),
            duplicate_window: config.nats_duplicate_window,
        }
    }

    /// Connects with the configured credentials, plus `options`.
    pub async fn connect(&self, options: ConnectOptions) -> Result<async_nats::Client, String> {
        crate::fanout::nats::connect(&self.nats_url, self.nats_creds_file.as_deref(), options).await
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
            js.update_stream(config).await.map_err(nats_error)?;
            js.get_stream(&settings.stream).await.map_err(nats_error)
        }
        Err(_) => js.create_stream(config).await.map_err(nats_error),
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
        let payload = serde_json::to_vec(&cloud_event(event)).map_err(nats_error)?;
        let ack = js
            .publish_with_headers(subject(prefix, event), headers, payload.into())
            .await
            .map_err(nats_error)?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await.map_err(nats_error)?;
    }
    Ok(events.last().map(|e| e.position))
}

pub struct Relay {
    pool: PgPool,
    database_url: String,
    settings: RelaySettings,
    tail: Arc<LogTail>,
    head: watch::Receiver<Position>,
    gauges: Arc<Gauges>,
    terms: Arc<TermLog>,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        database_url: String,
        settings: RelaySettings,
        tail: &Arc<LogTail>,
        terms: Arc<TermLog>,
    ) -> Self {
        Self {
            pool,
            database_url,
            settings,
            head: tail.subscribe(),
            tail: Arc::clone(tail),
            gauges: Arc::new(Gauges::default()),
            terms,
        }
    }

    /// Reports the checkpoint to this instance's `/metrics` (only the leading relay knows it).
    pub fn reporting_to(mut self, gauges: Arc<Gauges>) -> Self {
        self.gauges = gauges;
        self
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
        self.gauges.relay_at(Position::new(tx, pos));
        Ok(Position::new(tx, pos))
    }

    /// Stores the checkpoint if this relay still holds the epoch; `Fenced` when it does not.
    async fn save(&self, position: Position, epoch: i64) -> Result<(), RelayError> {
        let saved = sqlx::query(
            "UPDATE relay_checkpoints SET transaction_id = $2, position = $3, updated_at = now()
              WHERE stream = $1 AND leader_epoch = $4",
        )
        .bind(&self.settings.stream)
        .bind(position.transaction_id)
        .bind(position.position)
        .bind(epoch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if saved == 0 {
            return Err(RelayError::Fenced);
        }
        self.gauges.relay_at(position);
        Ok(())
    }

    /// `Fenced` unless this relay's epoch is still the checkpoint's.
    async fn confirm(&self, epoch: i64) -> Result<(), RelayError> {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT leader_epoch FROM relay_checkpoints WHERE stream = $1")
                .bind(&self.settings.stream)
                .fetch_optional(&self.pool)
                .await?;
        if current != Some(epoch) {
            return Err(RelayError::Fenced);
        }
        Ok(())
    }

    /// Where publishing goes on, read from the stream: the position of its last relayed event
    /// and its last sequence, which the next message expects. The checkpoint follows: lowered
    /// when NATS lost acknowledged messages, raised when a relay before this one published
    /// beyond what it checkpointed.
    async fn anchor(
        &self,
        stream: &mut stream::Stream,
        epoch: i64,
    ) -> Result<(Position, u64), RelayError> {
        let state = stream.info().await.map_err(nats_error)?.state.clone();
        let in_stream = last_relayed(&self.pool, stream, &state).await?;
        let checkpoint = self.checkpoint().await?;
        if in_stream < checkpoint {
            tracing::warn!(
                stream = %self.settings.stream,
                %checkpoint,
                %in_stream,
                "the stream is behind the relay's checkpoint (NATS lost acknowledged messages); publishing the tail again"
            );
        }
        if in_stream != checkpoint {
            self.save(in_stream, epoch).await?;
        }
        Ok((in_stream, state.last_sequence))
    }

    /// One connection's worth of relaying; returns on the first error. A session that got as
    /// far as relaying resets the retry backoff, so the next outage starts with a short wait.
    async fn session(&mut self, epoch: i64, backoff: &mut Duration) -> Result<(), RelayError> {
        let reconnects = Arc::new(AtomicU64::new(0));
        let counter = reconnects.clone();
        let options = ConnectOptions::new().event_callback(move |event| {
            let counter = counter.clone();
            async move {
                if matches!(event, Event::Connected) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let client = self.settings.connect(options).await.map_err(nats_error)?;
        let js = jetstream::new(client);
        let mut stream = ensure_stream(&js, &self.settings).await?;
        // Only this session moves the checkpoint while it leads, so the anchor is read once per
        // (re)connect and then followed in memory.
        let (mut checkpoint, mut last_sequence) = self.anchor(&mut stream, epoch).await?;
        *backoff = FIRST_BACKOFF;
        let mut seen = reconnects.load(Ordering::SeqCst);
        let mut read_ahead: Vec<StoredEvent> = Vec::new();
        // What the table holds and when this relay last proved its epoch there.
        let mut saved = checkpoint;
        let mut fenced_at = tokio::time::Instant::now();
        tracing::info!(stream = %self.settings.stream, epoch, "relaying the log to NATS");
        loop {
            let now = reconnects.load(Ordering::SeqCst);
            if now != seen {
                seen = now;
                (checkpoint, last_sequence) = self.anchor(&mut stream, epoch).await?;
                read_ahead.clear();
            }
            self.head.borrow_and_update();
            // An empty read-ahead is read again: events may have committed since, and their
            // wake-up was just taken.
            let events = if read_ahead.is_empty() {
                self.tail.read_after(checkpoint, BATCH).await?
            } else {
                std::mem::take(&mut read_ahead)
            };
            let Some(last) = events.last().map(|e| e.position) else {
                // Caught up: the checkpoint is stored once the relay has been idle for a
                // moment, not after every batch of a steady trickle.
                let unsaved = saved != checkpoint;
                if unsaved && fenced_at.elapsed() >= FENCE_EVERY {
                    self.save(checkpoint, epoch).await?;
                    saved = checkpoint;
                    fenced_at = tokio::time::Instant::now();
                }
                let wait = if unsaved { FENCE_EVERY } else { IDLE_POLL };
                let _ = tokio::time::timeout(wait, self.head.changed()).await;
                continue;
            };
            // The epoch is proved before publishing, by storing the checkpoint (an update that
            // matches only this relay's epoch), at most every FENCE_EVERY: far inside the
            // handover, during which a deposed leader's lock check stops it anyway. A busy
            // relay so pays one statement per FENCE_EVERY instead of two per batch.
            if fenced_at.elapsed() >= FENCE_EVERY {
                if saved != checkpoint {
                    self.save(checkpoint, epoch).await?;
                    saved = checkpoint;
                } else {
                    self.confirm(epoch).await?;
                }
                fenced_at = tokio::time::Instant::now();
            }
            // The next batch is read while JetStream acknowledges this one, so NATS never waits
            // on Postgres between batches.
            let published = async {
                let started = std::time::Instant::now();
                let batch =
                    publish_onto(&js, &self.settings.subject_prefix, &events, last_sequence).await;
                metrics::histogram!("chronicle_relay_publish_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                batch
            };
            let (batch, next) = tokio::join!(published, self.tail.read_after(last, BATCH));
            if let Some(through) = batch.through {
                checkpoint = through;
                self.gauges.relay_at(through);
                metrics::counter!("chronicle_relay_published_total").increment(batch.count as u64);
            }
            last_sequence = batch.last_sequence;
            if let Some(error) = batch.error {
                if saved != checkpoint {
                    let _ = self.save(checkpoint, epoch).await;
                }
                return Err(error);
            }
            if batch.through == Some(last) {
                // A failed read-ahead only means reading again.
                read_ahead = next.unwrap_or_default();
            }
        }
    }

    /// Leads (one relay per stream across instances) and relays until the task is dropped;
    /// stops at once when its leadership is lost or fenced, to stand by for the next term.
    pub async fn run(mut self) {
        let role = format!("relay:{}", self.settings.stream);
        let fence = Fence::relay(&self.settings.stream);
        loop {
            // The checkpoint row holds the epoch; it exists before NATS is reached, so lag
            // shows while NATS is down.
            if let Err(e) = self.checkpoint().await {
                tracing::warn!(error = %e, "cannot read the relay checkpoint; retrying");
                tokio::time::sleep(MAX_BACKOFF).await;
                continue;
            }
            let mut leadership =
                leader::acquire(&self.database_url, &role, &fence, &self.terms).await;
            let epoch = leadership.epoch();
            if leadership.hold(self.lead(epoch)).await.is_some() {
                tracing::warn!(stream = %self.settings.stream, "another instance took over the relay; standing by");
            }
            leadership.end(&self.terms).await;
        }
    }

    /// Relays while this instance leads; returns only when fenced off.
    async fn lead(&mut self, epoch: i64) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.session(epoch, &mut backoff).await {
                Err(RelayError::Fenced) => return,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "relay interrupted")
                }
                Ok(()) => {}
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// The relay's checkpoint and leader, as operators see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RelayStatus {
    pub stream: String,
    pub position: String,
    pub leader_epoch: i64,
    pub leader_since: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn status(pool: &PgPool, stream: &str) -> Result<RelayStatus, sqlx::Error> {
    let row: Option<(i64, i64, i64, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
        "SELECT transaction_id, position, leader_epoch, leader_since FROM relay_checkpoints WHERE stream = $1",
    )
    .bind(stream)
    .fetch_optional(pool)
    .await?;
    let (tx, pos, leader_epoch, leader_since) = row.unwrap_or((0, 0, 0, None));
    Ok(RelayStatus {
        stream: stream.to_owned(),
        position: Position::new(tx, pos).to_string(),
        leader_epoch,
        leader_since,
    })
}

/// What a pipelined batch achieved: everything up to `through` is in the stream, in order.
struct Batch {
    through: Option<Position>,
    count: usize,
    last_sequence: u64,
    error: Option<RelayError>,
}

/// The span of one publish, and its context as the message's `traceparent` header (so a
/// consumer elsewhere continues the trace); `Span::none()` when traces are not exported.
fn traced_publish(subject: &str, event: &StoredEvent, headers: &mut HeaderMap) -> tracing::Span {
    if !propagation::enabled() {
        return tracing::Span::none();
    }
    let span = spans::relay_publish(subject, event);
    if let Some(traceparent) = propagation::traceparent(&span) {
        headers.insert(propagation::TRACEPARENT, traceparent.as_str());
    }
    span
}

/// Publishes events in order onto a stream whose last sequence is `last_sequence`, pipelined;
/// each message expects the sequence its predecessor will get, so nothing is stored behind a
/// hole. Stops at the first refusal.
async fn publish_onto(
    js: &jetstream::Context,
    prefix: &str,
    events: &[StoredEvent],
    last_sequence: u64,
) -> Batch {
    let mut batch = Batch {
        through: None,
        count: 0,
        last_sequence,
        error: None,
    };
    let mut acks = Vec::with_capacity(events.len());
    for (expected, event) in (last_sequence..).zip(events) {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
        // 0 means "no expectation" to JetStream, which is right for an empty stream.
        headers.insert("Nats-Expected-Last-Sequence", expected.to_string().as_str());
        let subject = subject(prefix, event);
        let span = traced_publish(&subject, event, &mut headers);
        let sent = match serde_json::to_vec(&cloud_event(event)) {
            Ok(payload) => {
                js.publish_with_headers(subject, headers, payload.into())
                    .instrument(span)
                    .await
            }
            Err(e) => {
                batch.error = Some(nats_error(e));
                break;
            }
        };
        match sent {
            Ok(ack) => acks.push(ack),
            Err(e) => {
                batch.error = Some(nats_error(e));
                break;
            }
        }
    }
    let mut resent = false;
    for (event, ack) in events.iter().zip(acks) {
        match ack.await {
            // Already in the stream (the relay stopped between the ack and its checkpoint):
            // stored nothing, so every later message of this batch expected one too many and is
            // refused; the next batch goes on from here.
            Ok(ack) if ack.duplicate => resent = true,
            Ok(ack) if ack.sequence == batch.last_sequence + 1 => {
                batch.last_sequence = ack.sequence
            }
            Ok(ack) => {
                batch.error = Some(RelayError::Nats(format!(
                    "stored at sequence {} where {} was expected",
                    ack.sequence,
                    batch.last_sequence + 1
                )));
                break;
            }
            // Refused for the expectation a resent message threw off, not for a lost tail.
            Err(_) if resent => break,
            Err(e) => {
                batch.error = Some(nats_error(e));
                break;
            }
        }
        batch.through = Some(event.position);
        batch.count += 1;
    }
    batch
}

/// The position of the newest relayed event in the stream. Walks back over sequences whose
/// message is gone (deleted, or lost while its sequence survived) and over messages that are
/// not the relay's, so a hole at the end never reads as an empty stream.
///
/// A message counts only if the log holds its event id at its position: anyone who can publish
/// on the subjects could otherwise move the anchor, forward (events never relayed) or back
/// (events relayed twice). Candidates are checked a chunk at a time, and the newest verified
/// position of the first chunk that has one wins, so a few copies of old real messages at the
/// end do not pull the anchor back either. NATS publish permissions on the subjects are the
/// guard against anyone who can flood the stream.
async fn last_relayed(
    pool: &PgPool,
    stream: &stream::Stream,
    state: &stream::State,
) -> Result<Position, RelayError> {
    const CHUNK: usize = 32;
    if state.messages == 0 {
        return Ok(Position::START);
    }
    let floor = state
        .first_sequence
        .max(state.last_sequence.saturating_sub(MAX_WALK_BACK))
        .max(1);
    let mut candidates: Vec<(uuid::Uuid, Position)> = Vec::new();
    let mut sequence = state.last_sequence;
    loop {
        let exhausted = sequence < floor;
        if !exhausted {
            match stream.get_raw_message(sequence).await {
                Ok(message) => {
                    let doc = serde_json::from_slice::<serde_json::Value>(&message.payload).ok();
                    let id = doc
                        .as_ref()
                        .and_then(|d| d.get("id")?.as_str()?.parse::<uuid::Uuid>().ok());
                    let position = doc
                        .as_ref()
                        .and_then(|d| d.get("position")?.as_str()?.parse::<Position>().ok());
                    if let (Some(id), Some(position)) = (id, position) {
                        candidates.push((id, position));
                    }
                }
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(nats_error(e)),
            }
            sequence -= 1;
        }
        if candidates.len() >= CHUNK || (exhausted && !candidates.is_empty()) {
            if let Some(position) = newest_in_log(pool, &candidates).await? {
                return Ok(position);
            }
            tracing::warn!(
                messages = candidates.len(),
                "messages at the end of the stream are not in the log; skipping them"
            );
            candidates.clear();
        }
        if exhausted {
            break;
        }
    }
    tracing::warn!(
        last_sequence = state.last_sequence,
        "no relayed message near the end of the stream; publishing from the start"
    );
    Ok(Position::START)
}

/// The newest of `candidates` whose event id the log holds at that very position.
async fn newest_in_log(
    pool: &PgPool,
    candidates: &[(uuid::Uuid, Position)],
) -> Result<Option<Position>, RelayError> {
    let ids: Vec<uuid::Uuid> = candidates.iter().map(|(id, _)| *id).collect();
    let logged = projections::log::events_by_id(pool, &ids).await?;
    Ok(candidates
        .iter()
        .filter(|(id, position)| {
            logged
                .iter()
                .any(|event| event.event_id == *id && event.position == *position)
        })
        .map(|(_, position)| *position)
        .max())
}
