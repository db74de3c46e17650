//! The write side's wiring: a cqrs-es framework per aggregate over [`store::EventLogStore`],
//! with the services the aggregates need, behind a [`CommandBus`] that reports what a command
//! appended.

pub mod services;
pub mod store;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use aggregates::{DomainError, UserId};
use cqrs_es::persist::EventUpcaster;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use projections::Position;
use sqlx::PgPool;

use crate::http::error::ApiError;
use store::{EventLogStore, LAST_COMMIT};

/// Commands racing on one aggregate without `If-Match` are retried on fresh state this often.
const MAX_ATTEMPTS: usize = 50;

/// How many aggregates of each type the store keeps in memory.
const CACHE_CAPACITY: usize = 10_000;

/// No event shape has changed yet; an upcaster for `post.created` 1.0 -> 2.0 would go here.
fn no_upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}

/// Who asked, and on behalf of which request; stored as the events' metadata.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    pub correlation_id: String,
    pub actor_id: Option<UserId>,
}

impl CommandMeta {
    fn to_metadata(&self) -> HashMap<String, String> {
        let mut metadata = HashMap::with_capacity(2);
        metadata.insert("correlation_id".to_owned(), self.correlation_id.clone());
        if let Some(actor) = self.actor_id {
            metadata.insert("actor_id".to_owned(), actor.to_string());
        }
        metadata
    }
}

/// The outcome of a successful command.
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    pub state: A,
    /// The aggregate's version after the command (its sequence; the ETag).
    pub version: u64,
    /// Where the last appended event sits in the global log; `None` when nothing was appended.
    pub position: Option<Position>,
    pub events: Vec<A::Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    #[error(transparent)]
    Domain(E),
    /// Another writer appended first. With `If-Match` that is a failed precondition; without it,
    /// only the retries ran out.
    #[error("concurrent modification")]
    Conflict { precondition: bool },
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("command failed")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl<E: DomainError> From<CommandError<E>> for ApiError {
    fn from(err: CommandError<E>) -> Self {
        match err {
            CommandError::Domain(e) => ApiError::domain(&e),
            CommandError::Conflict { precondition: true } => ApiError::PreconditionFailed {
                detail: "the resource changed since the version in If-Match".into(),
            },
            CommandError::Conflict {
                precondition: false,
            } => ApiError::Conflict {
                code: "CONFLICT",
                detail: "the resource is being changed by others; try again".into(),
            },
            CommandError::Unavailable(cause) if cause.is::<crate::db::CommitUnknown>() => {
                ApiError::CommitUnknown
            }
            CommandError::Unavailable(_) => ApiError::database_unavailable(),
            CommandError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

pub struct CommandBus<A: Aggregate + Clone + 'static> {
    cqrs: CqrsFramework<A, EventLogStore<A>>,
    reader: EventLogStore<A>,
}

impl<A> CommandBus<A>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone + Send + Sync + 'static,
    A::Error: Send + 'static,
    A::Event: 'static,
{
    pub fn new(pool: PgPool, services: A::Services) -> Self {
        // No queries are registered: read models are catch-up projectors (ARCHITECTURE.md).
        let store = EventLogStore::new(pool, CACHE_CAPACITY, no_upcasters);
        Self {
            reader: store.sharing_cache(no_upcasters),
            cqrs: CqrsFramework::new(store, vec![], services),
        }
    }

    /// Runs a command to completion even if the caller goes away: it is spawned, so a client
    /// hanging up cannot cancel it between the append and whatever must follow.
    /// `retry_on_conflict` is false when the client sent `If-Match`.
    pub async fn execute(
        self: &Arc<Self>,
        aggregate_id: String,
        command: A::Command,
        meta: &CommandMeta,
        retry_on_conflict: bool,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let bus = Arc::clone(self);
        let metadata = meta.to_metadata();
        let task = tokio::spawn(async move {
            bus.run(aggregate_id, command, metadata, retry_on_conflict)
                .await
        });
        match task.await {
            Ok(result) => result,
            Err(join) => Err(CommandError::Internal(Box::new(join))),
        }
    }

    async fn run(
        &self,
        aggregate_id: String,
        command: A::Command,
        metadata: HashMap<String, String>,
        retry_on_conflict: bool,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let attempts = if retry_on_conflict { MAX_ATTEMPTS } else { 1 };
        for _ in 0..attempts {
            let (result, record) = LAST_COMMIT
                .scope(RefCell::new(None), async {
                    let result = self
                        .cqrs
                        .execute_with_metadata(&aggregate_id, command.clone(), metadata.clone())
                        .await;
                    (result, LAST_COMMIT.with(|slot| slot.borrow_mut().take()))
                })
                .await;
            match result {
                Ok(()) => return executed_from(record),
                Err(AggregateError::AggregateConflict) if retry_on_conflict => {
                    tokio::task::yield_now().await
                }
                Err(AggregateError::AggregateConflict) => {
                    return Err(CommandError::Conflict { precondition: true });
                }
                Err(AggregateError::UserError(e)) => return Err(CommandError::Domain(e)),
                Err(AggregateError::DatabaseConnectionError(e)) => {
                    return Err(CommandError::Unavailable(e))
                }
                Err(AggregateError::DeserializationError(e))
                | Err(AggregateError::UnexpectedError(e)) => {
                    return Err(CommandError::Internal(e));
                }
            }
        }
        Err(CommandError::Conflict {
            precondition: false,
        })
    }

    /// The aggregate's current state, for answers and checks that need no command (login).
    pub async fn load(&self, aggregate_id: &str) -> Result<(A, u64), CommandError<A::Error>> {
        use cqrs_es::EventStore;
        match self.reader.load_aggregate(aggregate_id).await {
            Ok(context) => Ok((context.aggregate, context.current_sequence as u64)),
            Err(AggregateError::DatabaseConnectionError(e)) => Err(CommandError::Unavailable(e)),
            Err(AggregateError::UserError(e)) => Err(CommandError::Domain(e)),
            Err(AggregateError::AggregateConflict) => Err(CommandError::Conflict {
                precondition: false,
            }),
            Err(AggregateError::DeserializationError(e))
            | Err(AggregateError::UnexpectedError(e)) => Err(CommandError::Internal(e)),
        }
    }
}

fn executed_from<A: Aggregate + 'static>(
    record: Option<store::CommitRecord>,
) -> Result<Executed<A>, CommandError<A::Error>> {
    let record =
        record.ok_or_else(|| CommandError::Internal("the store recorded no commit".into()))?;
    let state = record
        .state
        .downcast::<A>()
        .map_err(|_| CommandError::Internal("commit record of another aggregate".into()))?;
    let events = record
        .events
        .downcast::<Vec<A::Event>>()
        .map_err(|_| CommandError::Internal("commit record of another aggregate".into()))?;
    Ok(Executed {
        state: *state,
        version: record.version,
        position: record.position,
        events: *events,
    })
}
