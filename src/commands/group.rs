//! Group commit: commands that append at the same time share one `INSERT` (one transaction,
//! one WAL flush) instead of paying one each.
//!
//! There is no timer and no batching task. A command puts its events in the queue and, if one
//! of the [`FLUSHERS`] slots is free, takes it and appends everything queued, its own events
//! and whatever arrived meanwhile; otherwise a busy flusher takes its events on its next round,
//! because a flusher gives its slot back only after it has seen the queue empty (under the
//! queue's lock, so nothing can slip in between). Under no load a group is one command, so the
//! cost is one statement as before; under load groups grow by themselves.
//!
//! The statement is all or nothing. Per-command optimistic concurrency is kept by falling back:
//! when any command of a group lost its race (a unique violation on `(aggregate_type,
//! aggregate_id, sequence)`), nothing of the group was written and every command appends alone,
//! so only the loser sees the conflict. When the connection broke under the statement, its
//! outcome is unknown for every command of the group alike, and each resolves its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cqrs_es::persist::SerializedEvent;
use projections::inline::InlineProjection;
use projections::log::StoredEvent;
use projections::Position;
use sqlx::{PgPool, Row};
use tokio::sync::{oneshot, Semaphore};

/// Group inserts in flight at once: one fills while the other commits.
const FLUSHERS: usize = 2;
/// The most commands in one group.
const MAX_GROUP: usize = 128;

/// What became of a command's events in its group.
pub enum Grouped {
    /// `projected`: the inline projection shows every event of the group.
    Appended {
        position: Position,
        projected: bool,
    },
    /// The group could not go in as a whole; append alone.
    Alone,
    /// The connection broke during the group's statement: committed or not, nobody knows yet.
    Unknown(String),
    Failed {
        unavailable: bool,
        message: String,
    },
}

struct Pending {
    events: Vec<SerializedEvent>,
    reply: oneshot::Sender<Grouped>,
}

pub struct GroupCommit {
    pool: PgPool,
    inline: Option<Arc<dyn InlineProjection>>,
    queue: Mutex<Vec<Pending>>,
    flushers: Semaphore,
}

impl GroupCommit {
    pub fn new(pool: PgPool, inline: Option<Arc<dyn InlineProjection>>) -> Self {
        Self {
            pool,
            inline,
            queue: Mutex::new(Vec::new()),
            flushers: Semaphore::new(FLUSHERS),
        }
    }

    /// One command's events alone, with the inline projection if there is one.
    pub async fn insert_alone(&self, events: &[SerializedEvent]) -> Result<Inserted, sqlx::Error> {
        insert(&self.pool, events.iter(), self.inline.as_deref()).await
    }

    /// Appends one command's events (one aggregate, contiguous sequences) with whatever other
    /// commands are appending now.
    pub async fn append(&self, events: Vec<SerializedEvent>) -> Grouped {
        let (reply, answer) = oneshot::channel();
        match self.queue.lock() {
            Ok(mut queue) => queue.push(Pending { events, reply }),
            Err(_) => return Grouped::Alone,
        }
        if let Ok(permit) = self.flushers.try_acquire() {
            self.flush(permit).await;
        }
        answer.await.unwrap_or(Grouped::Alone)
    }

    async fn flush(&self, permit: tokio::sync::SemaphorePermit<'_>) {
        loop {
            let group: Vec<Pending> = {
                let Ok(mut queue) = self.queue.lock() else {
                    return;
                };
                if queue.is_empty() {
                    // Given back under the lock: a command queued after this look finds the
                    // slot free and flushes itself.
                    drop(permit);
                    return;
                }
                take_group(&mut queue)
            };
            self.append_group(group).await;
        }
    }

    async fn append_group(&self, group: Vec<Pending>) {
        metrics::histogram!("chronicle_append_group_size").record(group.len() as f64);
        let result = insert(
            &self.pool,
            group.iter().flat_map(|p| &p.events),
            self.inline.as_deref(),
        )
        .await;
        match result {
            Ok(inserted) => {
                for pending in group {
                    let position = pending
                        .events
                        .iter()
                        .filter_map(|e| inserted.position_of(&e.aggregate_id, e.sequence))
                        .max();
                    let _ = pending.reply.send(match position {
                        Some(position) => Grouped::Appended {
                            position,
                            projected: inserted.projected,
                        },
                        None => Grouped::Failed {
                            unavailable: false,
                            message: "the append returned no row for a command".into(),
                        },
                    });
                }
            }
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                for pending in group {
                    let _ = pending.reply.send(Grouped::Alone);
                }
            }
            Err(err) if crate::db::outcome_unknown(&err) => {
                for pending in group {
                    let _ = pending.reply.send(Grouped::Unknown(err.to_string()));
                }
            }
            Err(err) => {
                let unavailable = crate::db::is_unavailable(&err);
                for pending in group {
                    let _ = pending.reply.send(Grouped::Failed {
                        unavailable,
                        message: err.to_string(),
                    });
                }
            }
        }
    }
}

/// Takes up to [`MAX_GROUP`] commands, at most one per aggregate: a second command on an
/// aggregate in the group would make the group's statement fail for everyone in it.
fn take_group(queue: &mut Vec<Pending>) -> Vec<Pending> {
    let mut taken = std::collections::HashMap::new();
    let mut group = Vec::new();
    let mut rest = Vec::new();
    for pending in queue.drain(..) {
        let Some(first) = pending.events.first() else {
            let _ = pending.reply.send(Grouped::Alone);
            continue;
        };
        let key = (first.aggregate_type.clone(), first.aggregate_id.clone());
        match taken.get(&key) {
            // Decided on the same state as one in the group: it can only lose, and it loses
            // alone now rather than taking a later group down with it.
            Some(sequence) if *sequence == first.sequence => {
                let _ = pending.reply.send(Grouped::Alone);
            }
            Some(_) => rest.push(pending),
            None if group.len() < MAX_GROUP => {
                taken.insert(key, first.sequence);
                group.push(pending);
            }
            None => rest.push(pending),
        }
    }
    *queue = rest;
    group
}

/// What an insert wrote: each row's position by `(aggregate_id, sequence)`, and whether the
/// inline projection shows all of them.
pub struct Inserted {
    positions: HashMap<(String, usize), Position>,
    pub projected: bool,
}

impl Inserted {
    pub fn position_of(&self, aggregate_id: &str, sequence: usize) -> Option<Position> {
        self.positions
            .get(&(aggregate_id.to_owned(), sequence))
            .copied()
    }

    pub fn last(&self) -> Option<Position> {
        self.positions.values().max().copied()
    }
}

/// Appends any number of events of any aggregates in one statement; with an inline projection,
/// in one transaction with it.
pub async fn insert<'a>(
    pool: &PgPool,
    events: impl Iterator<Item = &'a SerializedEvent> + Clone,
    inline: Option<&dyn InlineProjection>,
) -> Result<Inserted, sqlx::Error> {
    let Some(inline) = inline else {
        let rows = insert_rows(&mut *pool.acquire().await?, events).await?;
        return Ok(Inserted {
            positions: rows
                .into_iter()
                .map(|r| ((r.aggregate_id, r.sequence), r.position))
                .collect(),
            projected: false,
        });
    };
    // Until COMMIT is sent, a broken connection means nothing was written: only the COMMIT's
    // own failure leaves the outcome unknown.
    let before_commit = crate::db::NotCommitted::before_commit;
    let mut tx = pool.begin().await.map_err(before_commit)?;
    let rows = insert_rows(&mut tx, events.clone())
        .await
        .map_err(before_commit)?;
    let by_key: HashMap<(&str, usize), &InsertedRow> = rows
        .iter()
        .map(|r| ((r.aggregate_id.as_str(), r.sequence), r))
        .collect();
    let mut stored: Vec<StoredEvent> = events
        .filter_map(|e| {
            let row = by_key.get(&(e.aggregate_id.as_str(), e.sequence))?;
            Some(StoredEvent {
                event_id: row.event_id,
                position: row.position,
                aggregate_type: e.aggregate_type.clone(),
                aggregate_id: e.aggregate_id.clone(),
                sequence: e.sequence as i64,
                event_type: e.event_type.clone(),
                event_version: e.event_version.clone(),
                payload: e.payload.clone(),
                metadata: e.metadata.clone(),
                recorded_at: row.recorded_at,
            })
        })
        .collect();
    stored.sort_by_key(|e| e.position);
    let projected = match inline.apply_inline(&mut tx, &stored).await {
        Ok(projected) => projected,
        Err(projections::runner::ProjectionError::Database(e)) => return Err(before_commit(e)),
        Err(other) => return Err(sqlx::Error::Decode(Box::new(other))),
    };
    tx.commit().await?;
    Ok(Inserted {
        positions: rows
            .into_iter()
            .map(|r| ((r.aggregate_id, r.sequence), r.position))
            .collect(),
        projected,
    })
}

struct InsertedRow {
    aggregate_id: String,
    sequence: usize,
    event_id: uuid::Uuid,
    recorded_at: chrono::DateTime<chrono::Utc>,
    position: Position,
}

async fn insert_rows<'a>(
    conn: &mut sqlx::PgConnection,
    events: impl Iterator<Item = &'a SerializedEvent>,
) -> Result<Vec<InsertedRow>, sqlx::Error> {
    let mut types = Vec::new();
    let mut ids = Vec::new();
    let mut sequences = Vec::new();
    let mut event_types = Vec::new();
    let mut versions = Vec::new();
    let mut payloads = Vec::new();
    let mut metadata = Vec::new();
    for e in events {
        types.push(e.aggregate_type.as_str());
        ids.push(e.aggregate_id.as_str());
        sequences.push(e.sequence as i64);
        event_types.push(e.event_type.as_str());
        versions.push(e.event_version.as_str());
        payloads.push(&e.payload);
        metadata.push(&e.metadata);
    }
    // WITH ORDINALITY keeps the rows in the order given, so each command's events take
    // ascending positions and one command's events stay together in the log.
    let rows = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata
           FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
                WITH ORDINALITY AS e(aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, n)
          ORDER BY e.n
         RETURNING aggregate_id, sequence, event_id, recorded_at,
                   transaction_id::text::bigint AS transaction_id, position",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .bind(&event_types)
    .bind(&versions)
    .bind(&payloads)
    .bind(&metadata)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(InsertedRow {
                aggregate_id: row.try_get("aggregate_id")?,
                sequence: row.try_get::<i64, _>("sequence")? as usize,
                event_id: row.try_get("event_id")?,
                recorded_at: row.try_get("recorded_at")?,
                position: Position::new(row.try_get("transaction_id")?, row.try_get("position")?),
            })
        })
        .collect()
}
