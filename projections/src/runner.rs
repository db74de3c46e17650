//! The projector runner: reads the log after a projector's checkpoint in batches, applies them
//! and moves the checkpoint in the same transaction, so a crash repeats nothing and loses
//! nothing.
//!
//! One instance runs a given projector at a time ([`crate::leader`]): the leader holds an
//! advisory lock on a dedicated connection and stops the moment that connection fails a check.
//! Correctness does not rest on the lock: each batch locks the checkpoint row `FOR UPDATE` and
//! writes it only while the row still carries the runner's leadership epoch, so a deposed leader's
//! batch is refused, not merely unlikely.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::event_spans::{self, EventSpan};
use crate::leader::{self, Fence, TermLog};
use crate::log::StoredEvent;
use crate::progress::Progress;
use crate::projector::{ProjectionError, Projector};
use crate::tail::LogTail;
use crate::Position;

const BATCH_SIZE: i64 = 500;
const IDLE_POLL: Duration = Duration::from_secs(1);
const RETRY_START: Duration = Duration::from_secs(1);
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(300);
/// How stale the stored checkpoint may get while only irrelevant events pass by.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How soon a runner notices that someone else moved its checkpoint (a reset, a rebuild's
/// swap) when no batch of its own would have found out.
const VERIFY_EVERY: Duration = Duration::from_millis(250);

/// Where this runner believes the checkpoint is: `persisted` is what it last stored (or
/// read), `current` is past events it skipped because they were not its projector's.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    persisted: Position,
    current: Position,
}

pub struct Runner {
    pool: PgPool,
    database_url: String,
    projector: Arc<dyn Projector>,
    progress: Arc<Progress>,
    tail: Arc<LogTail>,
    head: watch::Receiver<Position>,
    cursor: std::sync::Mutex<Option<Cursor>>,
    last_flush: std::sync::Mutex<Instant>,
    last_verified: std::sync::Mutex<Instant>,
    /// The leadership epoch every write must match; `None` when run directly (tests, tools).
    epoch: std::sync::Mutex<Option<i64>>,
    terms: Arc<TermLog>,
    event_spans: Option<EventSpan>,
}

impl Runner {
    pub fn new(
        pool: PgPool,
        database_url: String,
        projector: Arc<dyn Projector>,
        progress: Arc<Progress>,
        tail: &Arc<LogTail>,
    ) -> Self {
        Self {
            pool,
            database_url,
            projector,
            progress,
            head: tail.subscribe(),
            tail: Arc::clone(tail),
            cursor: std::sync::Mutex::new(None),
            last_flush: std::sync::Mutex::new(Instant::now()),
            last_verified: std::sync::Mutex::new(Instant::now()),
            epoch: std::sync::Mutex::new(None),
            terms: Arc::new(TermLog::default()),
            event_spans: None,
        }
    }

    /// Records this runner's terms of leadership in the process's shared log.
    /// Gives each applied event a span made by `span_of` (the server's, in the event's trace).
    pub fn with_event_spans(mut self, span_of: EventSpan) -> Self {
        self.event_spans = Some(span_of);
        self
    }

    pub fn with_terms(mut self, terms: Arc<TermLog>) -> Self {
        self.terms = terms;
        self
    }

    fn epoch(&self) -> Option<i64> {
        self.epoch.lock().ok().and_then(|e| *e)
    }

    fn set_epoch(&self, epoch: Option<i64>) {
        if let Ok(mut slot) = self.epoch.lock() {
            *slot = epoch;
        }
    }

    pub fn name(&self) -> &'static str {
        self.projector.name()
    }

    pub async fn ensure_checkpoint(&self) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        )
        .bind(self.name())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn cursor(&self) -> Option<Cursor> {
        self.cursor.lock().ok().and_then(|c| *c)
    }

    fn set_cursor(&self, cursor: Option<Cursor>) {
        if let Ok(mut slot) = self.cursor.lock() {
            *slot = cursor;
        }
    }

    /// Applies one batch; returns how many events it applied (0 when caught up).
    ///
    /// Every event of the log passes every projector, and most are not its own. So a runner
    /// that knows where its checkpoint is looks for new events without a transaction; a batch
    /// with nothing for its projector only moves the position in memory (stored by
    /// [`Runner::flush`]); a batch with work takes the checkpoint's lock and applies only if
    /// the checkpoint is still the one this runner stored. Skipped events are by definition
    /// no-ops for this projector, so jumping over them is safe; a checkpoint moved by anyone
    /// else (a reset, a rebuild's swap, another runner) sends it back to the locked read.
    pub async fn step(&self) -> Result<usize, ProjectionError> {
        // A reset or a rebuild's swap moves the stored checkpoint: then start over from it. A
        // batch with work finds out under the row's lock and a flush by its condition; this
        // look is for runners that only skip events, so it need not be on every step.
        if let Some(cursor) = self.cursor().filter(|_| self.verify_due()) {
            if self.stored_checkpoint().await? != cursor.persisted {
                self.set_cursor(None);
            }
        }
        if let Some(cursor) = self.cursor() {
            let events = self.tail.read_after(cursor.current, BATCH_SIZE).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                self.progress.advance(self.name(), cursor.current);
                return Ok(0);
            };
            if !events.iter().any(|e| self.projector.handles(e)) {
                self.set_cursor(Some(Cursor {
                    current: last,
                    ..cursor
                }));
                self.progress.advance(self.name(), last);
                return Ok(events.len());
            }
            let mut tx = self.pool.begin().await?;
            if self.lock_checkpoint(&mut tx).await? == cursor.persisted {
                self.apply_and_commit(tx, &events, last).await?;
                return Ok(events.len());
            }
            tx.rollback().await?;
            self.set_cursor(None);
        }
        let mut tx = self.pool.begin().await?;
        let checkpoint = self.lock_checkpoint(&mut tx).await?;
        let events = self.tail.read_after(checkpoint, BATCH_SIZE).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            tx.rollback().await?;
            self.set_cursor(Some(Cursor {
                persisted: checkpoint,
                current: checkpoint,
            }));
            self.progress.advance(self.name(), checkpoint);
            return Ok(0);
        };
        self.apply_and_commit(tx, &events, last).await?;
        Ok(events.len())
    }

    fn verify_due(&self) -> bool {
        let Ok(mut at) = self.last_verified.lock() else {
            return true;
        };
        let due = at.elapsed() >= VERIFY_EVERY;
        if due {
            *at = Instant::now();
        }
        due
    }

    async fn stored_checkpoint(&self) -> Result<Position, sqlx::Error> {
        let (tx, pos): (i64, i64) = sqlx::query_as(
            "SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1",
        )
        .bind(self.name())
        .fetch_one(&self.pool)
        .await?;
        Ok(Position::new(tx, pos))
    }

    /// Locks the checkpoint row for a batch; refuses when another leader's epoch is on it.
    async fn lock_checkpoint(&self, conn: &mut PgConnection) -> Result<Position, ProjectionError> {
        // A batch and its checkpoint commit together, so losing the last batches to a crash
        // before the WAL reaches the disk only means applying them again: the batch's commit
        // need not wait for the flush (the events themselves were committed durably). Set in
        // this statement to spare a round trip.
        let row = sqlx::query(
            "SELECT transaction_id, position, leader_epoch, set_config('synchronous_commit', 'off', true)
               FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
        )
            .bind(self.name())
            .fetch_one(&mut *conn)
            .await?;
        let stored: i64 = row.try_get("leader_epoch")?;
        if self.epoch().is_some_and(|mine| mine != stored) {
            return Err(ProjectionError::Fenced);
        }
        Ok(Position::new(
            row.try_get("transaction_id")?,
            row.try_get("position")?,
        ))
    }

    async fn apply_and_commit(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        events: &[StoredEvent],
        last: Position,
    ) -> Result<(), ProjectionError> {
        let _spans = event_spans::around_batch(self.event_spans, self.projector.as_ref(), events);
        let started = std::time::Instant::now();
        self.projector.apply(&mut tx, events).await?;
        let moved = sqlx::query(
            "UPDATE projection_checkpoints
                SET transaction_id = $2, position = $3, status = 'running', last_error = NULL, updated_at = now()
              WHERE name = $1 AND ($4::bigint IS NULL OR leader_epoch = $4)",
        )
        .bind(self.name())
        .bind(last.transaction_id)
        .bind(last.position)
        .bind(self.epoch())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            // Dropping the transaction rolls the batch back.
            return Err(ProjectionError::Fenced);
        }
        tx.commit().await?;
        crate::measure::batch_applied(self.name(), events.len(), started.elapsed());
        self.set_cursor(Some(Cursor {
            persisted: last,
            current: last,
        }));
        self.progress.advance(self.name(), last);
        Ok(())
    }

    /// Stores the position reached by skipping events, if the stored checkpoint is still the
    /// one this runner knows (a reset or another runner may have moved it; then it re-reads).
    pub async fn flush(&self) -> Result<(), sqlx::Error> {
        let Some(cursor) = self.cursor().filter(|c| c.current != c.persisted) else {
            return Ok(());
        };
        let stored = sqlx::query(
            "UPDATE projection_checkpoints
                SET transaction_id = $2, position = $3, status = 'running', last_error = NULL, updated_at = now()
              WHERE name = $1 AND transaction_id = $4 AND position = $5
                AND ($6::bigint IS NULL OR leader_epoch = $6)",
        )
        .bind(self.name())
        .bind(cursor.current.transaction_id)
        .bind(cursor.current.position)
        .bind(cursor.persisted.transaction_id)
        .bind(cursor.persisted.position)
        .bind(self.epoch())
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.set_cursor((stored == 1).then_some(Cursor {
            persisted: cursor.current,
            current: cursor.current,
        }));
        if let Ok(mut at) = self.last_flush.lock() {
            *at = Instant::now();
        }
        Ok(())
    }

    fn flush_due(&self) -> bool {
        self.last_flush
            .lock()
            .map_or(true, |at| at.elapsed() >= FLUSH_EVERY)
    }

    /// Steps until caught up; for tests and rebuilds.
    pub async fn run_to_idle(&self) -> Result<usize, ProjectionError> {
        let mut total = 0;
        loop {
            match self.step().await? {
                0 => {
                    self.flush().await?;
                    return Ok(total);
                }
                n => total += n,
            }
        }
    }

    async fn record_failure(&self, error: &ProjectionError) {
        crate::measure::failed(self.name());
        tracing::error!(projector = self.name(), error = %error, "projector failed; it will retry with backoff");
        let _ = sqlx::query(
            "UPDATE projection_checkpoints SET status = 'failed', last_error = $2, updated_at = now()
              WHERE name = $1 AND ($3::bigint IS NULL OR leader_epoch = $3)",
        )
        .bind(self.name())
        .bind(error.to_string())
        .bind(self.epoch())
        .execute(&self.pool)
        .await;
    }

    /// Runs until the task is dropped: leads, projects, follows new events, and stops at once
    /// when its leadership is lost or fenced, to stand by for the next term.
    pub async fn run(mut self) {
        let role = format!("projector:{}", self.name());
        loop {
            if let Err(e) = self.ensure_checkpoint().await {
                tracing::warn!(projector = self.name(), error = %e, "cannot reach the database; retrying");
                tokio::time::sleep(RETRY_START).await;
                continue;
            }
            let mut leadership = leader::acquire(
                &self.database_url,
                &role,
                &Fence::projector(self.name()),
                &self.terms,
            )
            .await;
            self.set_epoch(Some(leadership.epoch()));
            // Another leader may have moved the checkpoint while this one stood by.
            self.set_cursor(None);
            // Requested rebuilds are the leader's work too, beside the live projection.
            let rebuilds = crate::rebuild::carry_out_requests(
                self.pool.clone(),
                self.database_url.clone(),
                self.name(),
                leadership.epoch(),
            );
            let lead_and_rebuild = async {
                tokio::select! {
                    () = self.lead() => {
                        tracing::warn!(projector = self.name(), "another instance took over; standing by");
                    }
                    () = rebuilds => {
                        tracing::warn!(projector = self.name(), "another instance took the rebuild over; standing by");
                    }
                }
            };
            leadership.hold(lead_and_rebuild).await;
            leadership.end(&self.terms).await;
        }
    }

    /// Projects while this runner leads; returns only when a write was fenced off.
    async fn lead(&mut self) {
        let mut failures: u32 = 0;
        loop {
            self.head.borrow_and_update();
            let result = self.step().await;
            if result.is_ok() && failures > 0 {
                metrics::gauge!("chronicle_projection_failed", "projector" => self.name()).set(0.0);
            }
            match result {
                Ok(0) => {
                    failures = 0;
                    if self.flush_due() {
                        if let Err(e) = self.flush().await {
                            tracing::warn!(projector = self.name(), error = %e, "cannot store the checkpoint; retrying");
                        }
                    }
                    self.idle().await;
                }
                Ok(_) => failures = 0,
                Err(ProjectionError::Fenced) => return,
                Err(e) => {
                    failures += 1;
                    self.record_failure(&e).await;
                    let backoff =
                        Duration::from_secs(1u64 << failures.min(9)).min(MAX_FAILURE_BACKOFF);
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// Waits for the log's tail to move past this runner (it finds events that commit late
    /// behind an open transaction, once they are readable).
    async fn idle(&mut self) {
        let Some(cursor) = self.cursor() else {
            return;
        };
        if *self.head.borrow_and_update() > cursor.current {
            return;
        }
        let _ = tokio::time::timeout(IDLE_POLL, self.head.changed()).await;
    }
}
