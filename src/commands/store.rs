//! The `events` table as the write side sees it: one aggregate's events after a sequence, and
//! an append (grouped with concurrent ones, see [`super::group`]) that returns where the events
//! landed in the global log.
//!
//! The table keeps postgres-es's layout (its repository still reads what this writes; a test
//! holds that), but its repository is not on the command path: its load reads the whole
//! history every time and its append takes a round trip per event and reports no log
//! position. The append here is a single `INSERT ... SELECT FROM UNNEST ... RETURNING`,
//! atomic without an explicit transaction, and the `(aggregate_type, aggregate_id, sequence)`
//! key is the optimistic concurrency check.

use std::collections::HashMap;

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};
use projections::Position;
use sqlx::{PgPool, Row};

use super::group::{self, GroupCommit, Grouped};

/// Why an append or a load did not go through.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer took one of the sequences first.
    #[error("another writer appended first")]
    Conflict,
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the event store failed")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ if crate::db::is_unavailable(&err) => Self::Unavailable(Box::new(err)),
            _ => Self::Internal(Box::new(err)),
        }
    }
}

type UpcasterFactory = fn() -> Vec<Box<dyn EventUpcaster>>;

pub struct EventLog<A: Aggregate> {
    pool: PgPool,
    group: GroupCommit,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    _aggregate: std::marker::PhantomData<fn() -> A>,
}

impl<A: Aggregate> EventLog<A> {
    pub fn new(pool: PgPool, upcasters: UpcasterFactory) -> Self {
        Self {
            group: GroupCommit::new(pool.clone()),
            pool,
            upcasters: upcasters(),
            _aggregate: std::marker::PhantomData,
        }
    }

    /// The aggregate's events after `sequence`, oldest first, upcast and deserialized.
    pub async fn events_after(
        &self,
        aggregate_id: &str,
        sequence: u64,
    ) -> Result<Vec<EventEnvelope<A>>, StoreError> {
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
               FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
              ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(sequence as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let serialized = SerializedEvent::new(
                    row.try_get("aggregate_id")?,
                    row.try_get::<i64, _>("sequence")? as usize,
                    row.try_get("aggregate_type")?,
                    row.try_get("event_type")?,
                    row.try_get("event_version")?,
                    row.try_get("payload")?,
                    row.try_get("metadata")?,
                );
                let serialized = self.upcast(serialized);
                EventEnvelope::<A>::try_from(serialized)
                    .map_err(|e| StoreError::Internal(Box::new(e)))
            })
            .collect()
    }

    fn upcast(&self, event: SerializedEvent) -> SerializedEvent {
        self.upcasters.iter().fold(event, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        })
    }

    /// Where the aggregate's last event sits in the log (`None` for an aggregate with none):
    /// the position a command that appended nothing names.
    pub async fn last_position(&self, aggregate_id: &str) -> Result<Option<Position>, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::bigint, position FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2
              ORDER BY sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(tx, pos)| Position::new(tx, pos)))
    }

    /// Appends `events` as sequences `after + 1 ..`; `Conflict` when any of them is taken.
    pub async fn append(
        &self,
        aggregate_id: &str,
        after: u64,
        events: &[A::Event],
        metadata: &HashMap<String, String>,
    ) -> Result<Position, StoreError> {
        let serialized = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                SerializedEvent::try_from(&EventEnvelope::<A> {
                    aggregate_id: aggregate_id.to_owned(),
                    sequence: after as usize + i + 1,
                    payload: event.clone(),
                    metadata: metadata.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
        match self.group.append(serialized.clone()).await {
            Grouped::Appended(position) => Ok(position),
            Grouped::Alone => match self.insert(&serialized).await {
                Ok(position) => Ok(position),
                Err(err) if crate::db::outcome_unknown(&err) => {
                    self.resolve(&serialized, err).await
                }
                Err(err) => Err(err.into()),
            },
            Grouped::Unknown(message) => {
                self.resolve(&serialized, sqlx::Error::Protocol(message))
                    .await
            }
            Grouped::Failed {
                unavailable: true,
                message,
            } => Err(StoreError::Unavailable(message.into())),
            Grouped::Failed { message, .. } => Err(StoreError::Internal(message.into())),
        }
    }

    /// Finds out whether an append whose connection broke under it was committed, by appending
    /// the same events again once the database answers: the (aggregate, sequence) key either
    /// takes them now (the first try was not committed), or refuses them because they are there
    /// (ours, committed, if they are the same events; another writer's otherwise). A first try
    /// still running on a half-dead connection makes the second wait on the key until it ends.
    async fn resolve(
        &self,
        serialized: &[SerializedEvent],
        first: sqlx::Error,
    ) -> Result<Position, StoreError> {
        tracing::warn!(error = %first, "the connection broke during an append; resolving its outcome");
        let deadline = tokio::time::Instant::now() + RESOLVE_WITHIN;
        let mut pause = std::time::Duration::from_millis(100);
        let mut last = first;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
            // The deadline bounds each attempt too: one waiting for a pooled connection would
            // otherwise run the whole acquire timeout past it.
            let Ok(attempt) = tokio::time::timeout_at(deadline, self.insert(serialized)).await
            else {
                break;
            };
            let attempt = match attempt {
                Ok(position) => return Ok(position),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    match self.stored_as_ours(serialized).await {
                        Ok(Some(position)) => return Ok(position),
                        Ok(None) => return Err(StoreError::Conflict),
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            if !crate::db::is_unavailable(&attempt) {
                return Err(attempt.into());
            }
            last = attempt;
        }
        Err(StoreError::Unavailable(Box::new(crate::db::CommitUnknown(
            last,
        ))))
    }

    /// One command's events alone.
    async fn insert(&self, serialized: &[SerializedEvent]) -> Result<Position, sqlx::Error> {
        group::insert(&self.pool, serialized.iter())
            .await?
            .into_iter()
            .map(|(_, _, position)| position)
            .max()
            .ok_or_else(|| sqlx::Error::Protocol("the append returned no rows".into()))
    }

    /// The position of these events if the log holds exactly them at their sequences.
    async fn stored_as_ours(
        &self,
        serialized: &[SerializedEvent],
    ) -> Result<Option<Position>, sqlx::Error> {
        let sequences: Vec<i64> = serialized.iter().map(|e| e.sequence as i64).collect();
        let stored: Vec<(i64, String, serde_json::Value, serde_json::Value, i64, i64)> =
            sqlx::query_as(
                "SELECT sequence, event_type, payload, metadata, transaction_id::text::bigint, position
                   FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = ANY($3)
                  ORDER BY sequence",
            )
            .bind(A::TYPE)
            .bind(&serialized[0].aggregate_id)
            .bind(&sequences)
            .fetch_all(&self.pool)
            .await?;
        let ours = stored.len() == serialized.len()
            && stored.iter().zip(serialized).all(|(row, event)| {
                row.0 == event.sequence as i64
                    && row.1 == event.event_type
                    && row.2 == event.payload
                    && row.3 == event.metadata
            });
        Ok(ours
            .then(|| stored.iter().map(|r| Position::new(r.4, r.5)).max())
            .flatten())
    }
}

/// How long an append whose outcome is unknown keeps trying to learn it before the command is
/// answered with an unknown outcome: long enough for a restart, short enough to answer within
/// a client's patience (only commands in flight when the database failed wait).
const RESOLVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);
