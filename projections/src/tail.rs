//! One reader of the log's tail per process. Every in-process log reader (the projectors, the
//! email outbox, the relay, the revocation follower, the consumers' checks against the log)
//! used to wake on each notification and read the same new events with its own query; now one
//! task reads each new batch once and keeps the most recent events in memory, where the others
//! find them. A reader that has fallen further behind than the window reads the database, as
//! before, so the window bounds memory, not correctness.
//!
//! The window holds exactly the readable events after `floor` up to `head`, in log order: the
//! tail reads with the same rule as every reader ([`crate::log::read_after`]), so an event
//! committed late by an old transaction is in it, in its place, once it is readable.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::log::{self, StoredEvent};
use crate::Position;

/// Events kept in memory: a few seconds of a busy log, a few MiB.
const WINDOW: usize = 4_096;
const BATCH: i64 = 1_000;
/// How long the tail sleeps without a notification (one was lost, or another instance's
/// notification did not reach this one).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How soon it looks again after a notification found nothing readable, and for how many
/// looks (a second): an older open transaction keeps the notified events unreadable.
const PENDING_POLL: Duration = Duration::from_millis(20);
const PENDING_LOOKS: u32 = 50;

enum ReadMore {
    Nothing,
    Some,
    /// A whole batch: there may be more right away.
    Full,
}

#[derive(Default)]
struct Window {
    /// Not yet read from the database: until then every read goes there.
    started: bool,
    floor: Position,
    events: VecDeque<Arc<StoredEvent>>,
    by_id: HashMap<Uuid, Arc<StoredEvent>>,
}

pub struct LogTail {
    pool: PgPool,
    window: Mutex<Window>,
    head: watch::Sender<Position>,
    /// Events read since the process started: every event appended meanwhile, by any instance,
    /// counted once (the tail reads each exactly once).
    read: AtomicU64,
}

impl LogTail {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            window: Mutex::new(Window::default()),
            head: watch::channel(Position::START).0,
            read: AtomicU64::new(0),
        }
    }

    /// The last position the tail has read; readers wait on it instead of on notifications.
    pub fn subscribe(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }

    pub fn head(&self) -> Position {
        *self.head.borrow()
    }

    /// How many events the tail has read since it started (those before its start are not
    /// counted): the difference between two readings is what was appended in between.
    pub fn events_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Up to `limit` events after `after`, in commit order: from memory when the window
    /// reaches back that far, from the database otherwise. Empty when `after` is at (or past)
    /// the tail's head: wait on [`LogTail::subscribe`] for more.
    pub async fn read_after(
        &self,
        after: Position,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        if let Some(events) = self.in_window(after, limit) {
            return Ok(events);
        }
        metrics::counter!("chronicle_log_tail_misses_total").increment(1);
        log::read_after(&self.pool, after, limit).await
    }

    fn in_window(&self, after: Position, limit: i64) -> Option<Vec<StoredEvent>> {
        let window = self.window.lock().ok()?;
        if !window.started || after < window.floor {
            return None;
        }
        let start = window.events.partition_point(|e| e.position <= after);
        Some(
            window
                .events
                .range(start..)
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .map(|e| StoredEvent::clone(e))
                .collect(),
        )
    }

    /// The events with these ids (those not in the log are left out), from memory where the
    /// window has them.
    pub async fn events_by_id(&self, ids: &[Uuid]) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let (mut found, missing) = match self.window.lock() {
            Ok(window) => {
                let mut found = Vec::with_capacity(ids.len());
                let mut missing = Vec::new();
                for id in ids {
                    match window.by_id.get(id) {
                        Some(event) => found.push(StoredEvent::clone(event)),
                        None => missing.push(*id),
                    }
                }
                (found, missing)
            }
            Err(_) => (Vec::new(), ids.to_vec()),
        };
        if !missing.is_empty() {
            found.extend(log::events_by_id(&self.pool, &missing).await?);
        }
        Ok(found)
    }

    /// Reads the log's new events until the process stops, woken by the log's notifications.
    ///
    /// A notification whose events are not readable yet (an older transaction is still open)
    /// finds nothing; then the tail looks again every [`PENDING_POLL`] for a while, since the
    /// transaction holding them back may not be an append that notifies when it ends. (Asking
    /// the database whether anything is pending cost more than the read itself.)
    pub async fn run(self: Arc<Self>, mut wake: watch::Receiver<u64>) {
        let mut backoff = Duration::from_millis(100);
        let mut quick_looks = 0;
        loop {
            let woken = wake.has_changed().unwrap_or(false);
            wake.borrow_and_update();
            match self.read_more().await {
                Ok(ReadMore::Full) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                // Events notified with the ones just read may still be held back.
                Ok(ReadMore::Some | ReadMore::Nothing) if woken => quick_looks = PENDING_LOOKS,
                Ok(ReadMore::Some) => {}
                Ok(ReadMore::Nothing) => quick_looks = quick_looks.saturating_sub(1),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the log's tail; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            backoff = Duration::from_millis(100);
            let wait = if quick_looks > 0 {
                PENDING_POLL
            } else {
                IDLE_POLL
            };
            let _ = tokio::time::timeout(wait, wake.changed()).await;
        }
    }

    /// Reads one batch after the head into the window.
    async fn read_more(&self) -> Result<ReadMore, sqlx::Error> {
        let started = self.window.lock().map(|w| w.started).unwrap_or(false);
        if !started {
            // Readers before this point are served by the database; the window starts here.
            let head = log::head(&self.pool).await?;
            if let Ok(mut window) = self.window.lock() {
                window.started = true;
                window.floor = head;
            }
            self.head.send_replace(head);
        }
        let events = log::read_after(&self.pool, self.head(), BATCH).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(ReadMore::Nothing);
        };
        let full = events.len() as i64 == BATCH;
        self.read.fetch_add(events.len() as u64, Ordering::Relaxed);
        if let Ok(mut window) = self.window.lock() {
            for event in events {
                let event = Arc::new(event);
                window.by_id.insert(event.event_id, Arc::clone(&event));
                window.events.push_back(event);
            }
            while window.events.len() > WINDOW {
                if let Some(evicted) = window.events.pop_front() {
                    window.by_id.remove(&evicted.event_id);
                    window.floor = evicted.position;
                }
            }
        }
        self.head.send_replace(last);
        Ok(if full { ReadMore::Full } else { ReadMore::Some })
    }
}
