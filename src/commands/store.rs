//! The event store every command goes through: postgres-es for cold loads, plus a bounded cache
//! of aggregates and a one-statement append that returns the log position.
//!
//! Why not plain `PersistedEventStore`: loading is O(events) per command, its snapshot modes
//! apply new events twice (ARCHITECTURE.md), and its append neither reports where the events
//! landed in the global log nor avoids a round trip per event. Here a cached aggregate is
//! brought up to date by reading only the events after its cached sequence, so another
//! instance's appends are never missed, and the append is a single `INSERT ... SELECT FROM
//! UNNEST ... RETURNING`, atomic without an explicit transaction.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use cqrs_es::persist::{
    EventStoreAggregateContext, EventUpcaster, PersistedEventStore, PersistenceError,
    SerializedEvent,
};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use lru::LruCache;
use postgres_es::PostgresEventRepository;
use projections::Position;
use sqlx::{PgPool, Row};

/// What the last successful commit in this task produced. Set by `commit`, read by the command
/// bus, because `CqrsFramework::execute` returns nothing.
pub struct CommitRecord {
    pub version: u64,
    pub position: Option<Position>,
    pub state: Box<dyn Any + Send>,
    pub events: Box<dyn Any + Send>,
}

tokio::task_local! {
    pub static LAST_COMMIT: RefCell<Option<CommitRecord>>;
}

type UpcasterFactory = fn() -> Vec<Box<dyn EventUpcaster>>;

struct Cached<A> {
    aggregate: A,
    sequence: usize,
}

pub struct EventLogStore<A: Aggregate> {
    pool: PgPool,
    cold: PersistedEventStore<PostgresEventRepository, A>,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    cache: Arc<Mutex<LruCache<String, Cached<A>>>>,
}

impl<A: Aggregate + Clone + 'static> EventLogStore<A> {
    pub fn new(pool: PgPool, cache_capacity: usize, upcasters: UpcasterFactory) -> Self {
        let capacity = NonZeroUsize::new(cache_capacity).unwrap_or(NonZeroUsize::MIN);
        Self::with_cache(
            pool,
            Arc::new(Mutex::new(LruCache::new(capacity))),
            upcasters,
        )
    }

    /// A second store over the same cache (the framework owns the first one).
    pub fn sharing_cache(&self, upcasters: UpcasterFactory) -> Self {
        Self::with_cache(self.pool.clone(), Arc::clone(&self.cache), upcasters)
    }

    fn with_cache(
        pool: PgPool,
        cache: Arc<Mutex<LruCache<String, Cached<A>>>>,
        upcasters: UpcasterFactory,
    ) -> Self {
        Self {
            cold: PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()))
                .with_upcasters(upcasters()),
            pool,
            upcasters: upcasters(),
            cache,
        }
    }

    fn cached(&self, aggregate_id: &str) -> Option<(A, usize)> {
        let mut cache = self.cache.lock().ok()?;
        cache
            .get(aggregate_id)
            .map(|c| (c.aggregate.clone(), c.sequence))
    }

    fn remember(&self, aggregate_id: String, aggregate: A, sequence: usize) {
        if let Ok(mut cache) = self.cache.lock() {
            let newer = cache
                .peek(&aggregate_id)
                .is_none_or(|c| c.sequence < sequence);
            if newer {
                cache.put(
                    aggregate_id,
                    Cached {
                        aggregate,
                        sequence,
                    },
                );
            }
        }
    }

    fn forget(&self, aggregate_id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.pop(aggregate_id);
        }
    }

    async fn events_after(
        &self,
        aggregate_id: &str,
        sequence: usize,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
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
        .await
        .map_err(connection_or_unexpected)?;
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
                Ok(serialized)
            })
            .map(|serialized: Result<SerializedEvent, sqlx::Error>| {
                let serialized = self.upcast(serialized.map_err(connection_or_unexpected)?);
                EventEnvelope::<A>::try_from(serialized).map_err(AggregateError::from)
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
}

fn connection_or_unexpected<E: std::error::Error>(err: sqlx::Error) -> AggregateError<E> {
    if crate::db::is_unavailable(&err) {
        AggregateError::DatabaseConnectionError(Box::new(err))
    } else {
        AggregateError::UnexpectedError(Box::new(err))
    }
}

impl<A: Aggregate + Clone + 'static> EventStore<A> for EventLogStore<A> {
    type AC = EventStoreAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.cold.load_events(aggregate_id).await
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<Self::AC, AggregateError<A::Error>> {
        let Some((mut aggregate, mut sequence)) = self.cached(aggregate_id) else {
            let context = self.cold.load_aggregate(aggregate_id).await?;
            if context.current_sequence > 0 {
                self.remember(
                    aggregate_id.to_owned(),
                    context.aggregate.clone(),
                    context.current_sequence,
                );
            }
            return Ok(context);
        };
        for envelope in self.events_after(aggregate_id, sequence).await? {
            sequence = envelope.sequence;
            aggregate.apply(envelope.payload);
        }
        Ok(EventStoreAggregateContext {
            aggregate_id: aggregate_id.to_owned(),
            aggregate,
            current_sequence: sequence,
            current_snapshot: None,
        })
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let EventStoreAggregateContext {
            aggregate_id,
            aggregate,
            current_sequence,
            ..
        } = context;
        let envelopes: Vec<EventEnvelope<A>> = events
            .iter()
            .enumerate()
            .map(|(i, event)| EventEnvelope {
                aggregate_id: aggregate_id.clone(),
                sequence: current_sequence + i + 1,
                payload: event.clone(),
                metadata: metadata.clone(),
            })
            .collect();

        let position = if envelopes.is_empty() {
            // Nothing appended: the answer still names a position, the aggregate's last event,
            // so read-your-writes and `Chronicle-Position` work for no-op commands too.
            self.last_position(&aggregate_id).await?
        } else {
            Some(self.append(&envelopes).await.inspect_err(|e| {
                if matches!(e, AggregateError::AggregateConflict) {
                    self.forget(&aggregate_id);
                }
            })?)
        };

        let sequence = current_sequence + envelopes.len();
        // `handle` has already applied the new events to this aggregate (EventSink::write).
        self.remember(aggregate_id, aggregate.clone(), sequence);
        let _ = LAST_COMMIT.try_with(|slot| {
            *slot.borrow_mut() = Some(CommitRecord {
                version: sequence as u64,
                position,
                state: Box::new(aggregate),
                events: Box::new(events),
            });
        });
        Ok(envelopes)
    }
}

impl<A: Aggregate + Clone + 'static> EventLogStore<A> {
    async fn last_position(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<Position>, AggregateError<A::Error>> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::bigint, position FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2
              ORDER BY sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(connection_or_unexpected)?;
        Ok(row.map(|(tx, pos)| Position::new(tx, pos)))
    }

    async fn append(
        &self,
        envelopes: &[EventEnvelope<A>],
    ) -> Result<Position, AggregateError<A::Error>> {
        let serialized: Vec<SerializedEvent> = envelopes
            .iter()
            .map(SerializedEvent::try_from)
            .collect::<Result<_, PersistenceError>>()?;
        match self.insert(&serialized).await {
            Ok(position) => Ok(position),
            Err(err) if crate::db::outcome_unknown(&err) => self.resolve(&serialized, err).await,
            Err(err) => Err(append_error(err)),
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
    ) -> Result<Position, AggregateError<A::Error>> {
        tracing::warn!(error = %first, "the connection broke during an append; resolving its outcome");
        let deadline = tokio::time::Instant::now() + RESOLVE_WITHIN;
        let mut pause = std::time::Duration::from_millis(100);
        let mut last = first;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
            let attempt = match self.insert(serialized).await {
                Ok(position) => return Ok(position),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    match self.stored_as_ours(serialized).await {
                        Ok(Some(position)) => return Ok(position),
                        Ok(None) => return Err(AggregateError::AggregateConflict),
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            if !crate::db::is_unavailable(&attempt) {
                return Err(append_error(attempt));
            }
            last = attempt;
        }
        Err(AggregateError::DatabaseConnectionError(Box::new(
            crate::db::CommitUnknown(last),
        )))
    }

    async fn insert(&self, serialized: &[SerializedEvent]) -> Result<Position, sqlx::Error> {
        let aggregate_id = &serialized[0].aggregate_id;
        let sequences: Vec<i64> = serialized.iter().map(|e| e.sequence as i64).collect();
        let types: Vec<&str> = serialized.iter().map(|e| e.event_type.as_str()).collect();
        let versions: Vec<&str> = serialized
            .iter()
            .map(|e| e.event_version.as_str())
            .collect();
        let payloads: Vec<&serde_json::Value> = serialized.iter().map(|e| &e.payload).collect();
        let metadata: Vec<&serde_json::Value> = serialized.iter().map(|e| &e.metadata).collect();

        let rows = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, e.metadata
               FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
                    AS e(sequence, event_type, event_version, payload, metadata)
             RETURNING transaction_id::text::bigint AS transaction_id, position",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(&sequences)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Position::new(
                    row.try_get("transaction_id")?,
                    row.try_get("position")?,
                ))
            })
            .collect::<Result<Vec<Position>, sqlx::Error>>()?
            .into_iter()
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

fn append_error<E: std::error::Error>(err: sqlx::Error) -> AggregateError<E> {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => AggregateError::AggregateConflict,
        _ => connection_or_unexpected(err),
    }
}
