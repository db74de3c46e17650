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

use std::sync::Mutex;

use cqrs_es::persist::SerializedEvent;
use projections::Position;
use sqlx::{PgPool, Row};
use tokio::sync::{oneshot, Semaphore};

/// Group inserts in flight at once: one fills while the other commits.
const FLUSHERS: usize = 2;
/// The most commands in one group.
const MAX_GROUP: usize = 128;

/// What became of a command's events in its group.
pub enum Grouped {
    Appended(Position),
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
    queue: Mutex<Vec<Pending>>,
    flushers: Semaphore,
}

impl GroupCommit {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            queue: Mutex::new(Vec::new()),
            flushers: Semaphore::new(FLUSHERS),
        }
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
        metrics::histogram!("chronicle_append_group_commands").record(group.len() as f64);
        let result = insert(&self.pool, group.iter().flat_map(|p| &p.events)).await;
        match result {
            Ok(positions) => {
                for pending in group {
                    let position = pending
                        .events
                        .iter()
                        .filter_map(|e| {
                            positions
                                .iter()
                                .find(|(id, seq, _)| *id == e.aggregate_id && *seq == e.sequence)
                                .map(|(_, _, p)| *p)
                        })
                        .max();
                    let _ = pending.reply.send(match position {
                        Some(position) => Grouped::Appended(position),
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

/// One statement for any number of events of any aggregates; `(aggregate_id, sequence,
/// position)` of each row.
pub async fn insert<'a>(
    pool: &PgPool,
    events: impl Iterator<Item = &'a SerializedEvent>,
) -> Result<Vec<(String, usize, Position)>, sqlx::Error> {
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
         RETURNING aggregate_id, sequence, transaction_id::text::bigint AS transaction_id, position",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .bind(&event_types)
    .bind(&versions)
    .bind(&payloads)
    .bind(&metadata)
    .fetch_all(&mut *crate::recorder::pool::acquire(pool).await?)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>("aggregate_id")?,
                row.try_get::<i64, _>("sequence")? as usize,
                Position::new(row.try_get("transaction_id")?, row.try_get("position")?),
            ))
        })
        .collect()
}
