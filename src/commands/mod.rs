//! The write side: a [`CommandBus`] per aggregate runs a command as plain typed steps (state,
//! `Aggregate::handle`, append) and reports what it appended. The aggregates keep cqrs-es's
//! `Aggregate` trait and its test framework; its `CqrsFramework` is not used, because its
//! `execute` returns nothing and always loads before it handles.

pub mod group;
pub mod services;
pub mod store;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use aggregates::UserId;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use lru::LruCache;
use projections::Position;
use sqlx::PgPool;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::telemetry::propagation;
use store::{EventLog, StoreError};

/// Commands racing on one aggregate without `If-Match` are retried on fresh state this often.
const MAX_ATTEMPTS: usize = 50;

/// How many aggregates of each type the store keeps in memory.
const CACHE_CAPACITY: usize = 10_000;

/// No event shape has changed yet; an upcaster for `post.created` 1.0 -> 2.0 would go here.
fn no_upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}

/// The time a command records: microseconds, the precision Postgres keeps, so an answer built
/// from the command's events equals every later read of the same resource byte for byte.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
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

/// What traces and metrics call a command (`post.create`): a fixed set of names.
pub trait CommandName {
    fn command_name(&self) -> &'static str;
}

impl CommandName for aggregates::post::PostCommand {
    fn command_name(&self) -> &'static str {
        self.name()
    }
}

impl CommandName for aggregates::user::UserCommand {
    fn command_name(&self) -> &'static str {
        self.name()
    }
}

impl CommandName for aggregates::session::SessionCommand {
    fn command_name(&self) -> &'static str {
        self.name()
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

/// How a command finds the state it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// A fresh id (a v7 UUID the server just made): nothing to load.
    New,
    /// The cached state as it is, unchecked: the append's optimistic concurrency catches a
    /// stale cache, and an error or a no-op is checked against the log before it stands.
    Cached,
    /// The state brought up to date from the log.
    Loaded,
}

struct Cached<A> {
    aggregate: A,
    sequence: u64,
}

/// Runs commands: the state (cached, or loaded from the log), `Aggregate::handle`, the append,
/// and the typed outcome, in a loop that retries races on fresh state.
pub struct CommandBus<A: Aggregate> {
    log: EventLog<A>,
    services: A::Services,
    cache: Mutex<LruCache<String, Cached<A>>>,
}

impl<A> CommandBus<A>
where
    A: Aggregate + Clone + 'static,
    A::Command: CommandName + Clone + Send + Sync + 'static,
    A::Error: Send + 'static,
    A::Event: 'static,
    A::Services: 'static,
{
    pub fn new(pool: PgPool, services: A::Services) -> Self {
        let capacity = NonZeroUsize::new(CACHE_CAPACITY).unwrap_or(NonZeroUsize::MIN);
        Self {
            log: EventLog::new(pool, no_upcasters),
            services,
            cache: Mutex::new(LruCache::new(capacity)),
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
        self.spawn(
            aggregate_id,
            command,
            meta,
            retry_on_conflict,
            Start::Cached,
        )
        .await
    }

    /// Like [`CommandBus::execute`] for an aggregate whose id the server has just made: no load.
    /// Should the id exist after all, the append conflicts and the command runs on its state.
    pub async fn create(
        self: &Arc<Self>,
        aggregate_id: String,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        self.spawn(aggregate_id, command, meta, true, Start::New)
            .await
    }

    async fn spawn(
        self: &Arc<Self>,
        aggregate_id: String,
        command: A::Command,
        meta: &CommandMeta,
        retry_on_conflict: bool,
        start: Start,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let bus = Arc::clone(self);
        let name = command.command_name();
        let started = std::time::Instant::now();
        let span = tracing::trace_span!(
            "command",
            otel.name = command.command_name(),
            aggregate.type = A::TYPE,
            aggregate.id = %aggregate_id,
            command = command.command_name(),
            outcome = Empty,
            retries = Empty,
        );
        let mut metadata = meta.to_metadata();
        // Whatever the events cause later (projection, relay, webhooks, email) continues this
        // command's trace.
        if let Some(traceparent) = propagation::traceparent(&span) {
            metadata.insert(propagation::TRACEPARENT.to_owned(), traceparent);
        }
        let task = tokio::spawn(
            async move {
                let result = bus
                    .run(aggregate_id, command, metadata, retry_on_conflict, start)
                    .await;
                if propagation::enabled() {
                    Span::current().record("outcome", outcome(&result));
                }
                result
            }
            .instrument(span),
        );
        let result = match task.await {
            Ok(result) => result,
            Err(join) => Err(CommandError::Internal(Box::new(join))),
        };
        let appended = result.as_ref().map_or(0, |done| done.events.len());
        crate::recorder::commands::record(
            A::TYPE,
            name,
            crate::recorder::commands::outcome(&result),
            started.elapsed(),
            appended,
        );
        result
    }

    async fn run(
        &self,
        aggregate_id: String,
        command: A::Command,
        metadata: HashMap<String, String>,
        retry_on_conflict: bool,
        mut start: Start,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let mut conflicts = 0;
        loop {
            let (mut aggregate, sequence, checked) = match start {
                Start::New => (A::default(), 0, true),
                Start::Cached => match self.cached(&aggregate_id) {
                    Some((aggregate, sequence)) => (aggregate, sequence, false),
                    None => {
                        let (aggregate, sequence) = self.load(&aggregate_id).await?;
                        (aggregate, sequence, true)
                    }
                },
                Start::Loaded => {
                    let (aggregate, sequence) = self.load(&aggregate_id).await?;
                    (aggregate, sequence, true)
                }
            };
            let sink = EventSink::default();
            let handled = aggregate
                .handle(command.clone(), &self.services, &sink)
                .await;
            let events = sink.collect().await;
            // A refusal or a no-op decided on unchecked state stands only if the state was
            // current; otherwise the command runs again on the log's state.
            let decided_without_append = handled.is_err() || events.is_empty();
            if decided_without_append && !checked && self.stale(&aggregate_id, sequence).await? {
                start = Start::Loaded;
                continue;
            }
            if let Err(e) = handled {
                return Err(CommandError::Domain(e));
            }
            if events.is_empty() {
                // Nothing appended: the answer still names a position, the aggregate's last
                // event, so read-your-writes and `Chronicle-Position` work for no-ops too.
                let position = self
                    .log
                    .last_position(&aggregate_id)
                    .await
                    .map_err(from_store)?;
                return Ok(Executed {
                    state: aggregate,
                    version: sequence,
                    position,
                    events,
                });
            }
            let appended = self
                .log
                .append(&aggregate_id, sequence, &events, &metadata)
                .instrument(tracing::trace_span!("append", events = events.len()))
                .await;
            match appended {
                Ok(position) => {
                    let version = sequence + events.len() as u64;
                    self.remember(&aggregate_id, &aggregate, version);
                    return Ok(Executed {
                        state: aggregate,
                        version,
                        position: Some(position),
                        events,
                    });
                }
                Err(StoreError::Conflict) => {
                    self.forget(&aggregate_id);
                    // A stale cache (or an id that was not new) is not yet a lost race: the
                    // command gets one run on the log's state before `If-Match` fails it.
                    if start != Start::Loaded {
                        start = Start::Loaded;
                        continue;
                    }
                    conflicts += 1;
                    Span::current().record("retries", conflicts);
                    if !retry_on_conflict {
                        return Err(CommandError::Conflict { precondition: true });
                    }
                    if conflicts >= MAX_ATTEMPTS {
                        return Err(CommandError::Conflict {
                            precondition: false,
                        });
                    }
                    tokio::task::yield_now().await;
                }
                Err(other) => return Err(from_store(other)),
            }
        }
    }

    /// The aggregate's current state, for answers and checks that need no command (login).
    pub async fn load(&self, aggregate_id: &str) -> Result<(A, u64), CommandError<A::Error>> {
        let (mut aggregate, mut sequence) = self
            .cached(aggregate_id)
            .unwrap_or_else(|| (A::default(), 0));
        let newer = self
            .log
            .events_after(aggregate_id, sequence)
            .await
            .map_err(from_store)?;
        if newer.is_empty() {
            return Ok((aggregate, sequence));
        }
        for envelope in newer {
            sequence = envelope.sequence as u64;
            aggregate.apply(envelope.payload);
        }
        self.remember(aggregate_id, &aggregate, sequence);
        Ok((aggregate, sequence))
    }

    /// Whether the log holds events of this aggregate after `sequence`.
    async fn stale(
        &self,
        aggregate_id: &str,
        sequence: u64,
    ) -> Result<bool, CommandError<A::Error>> {
        let newer = self
            .log
            .events_after(aggregate_id, sequence)
            .await
            .map_err(from_store)?;
        Ok(!newer.is_empty())
    }

    fn cached(&self, aggregate_id: &str) -> Option<(A, u64)> {
        let mut cache = self.cache.lock().ok()?;
        cache
            .get(aggregate_id)
            .map(|c| (c.aggregate.clone(), c.sequence))
    }

    fn remember(&self, aggregate_id: &str, aggregate: &A, sequence: u64) {
        if let Ok(mut cache) = self.cache.lock() {
            let newer = cache
                .peek(aggregate_id)
                .is_none_or(|c| c.sequence < sequence);
            if newer {
                cache.put(
                    aggregate_id.to_owned(),
                    Cached {
                        aggregate: aggregate.clone(),
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
}

/// The `outcome` of a command's span: how it ended, in a word.
fn outcome<A: Aggregate>(result: &Result<Executed<A>, CommandError<A::Error>>) -> &'static str {
    match result {
        Ok(executed) if executed.events.is_empty() => "unchanged",
        Ok(_) => "ok",
        Err(CommandError::Domain(_)) => "rejected",
        Err(CommandError::Conflict { .. }) => "conflict",
        Err(CommandError::Unavailable(_)) => "unavailable",
        Err(CommandError::Internal(_)) => "error",
    }
}

fn from_store<E: std::error::Error>(err: StoreError) -> CommandError<E> {
    match err {
        StoreError::Conflict => CommandError::Conflict {
            precondition: false,
        },
        StoreError::Unavailable(cause) => CommandError::Unavailable(cause),
        StoreError::Internal(cause) => CommandError::Internal(cause),
    }
}
