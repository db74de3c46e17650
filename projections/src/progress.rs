//! How far each projector has got, as this process sees it, and the listener that keeps that
//! and the log's wake-up current from Postgres notifications.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio::sync::watch;

use crate::Position;

/// How far each projector has got, as seen by this process: fed by the runners it leads and by
/// the other instances' progress notifications. Read-your-writes waits on it.
pub struct Progress {
    positions: HashMap<&'static str, watch::Sender<Position>>,
}

impl Progress {
    pub fn new(names: &[&'static str]) -> Self {
        Self {
            positions: names
                .iter()
                .map(|n| (*n, watch::channel(Position::START).0))
                .collect(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.positions.keys().copied()
    }

    pub fn advance(&self, name: &str, position: Position) {
        if let Some(sender) = self.positions.get(name) {
            sender.send_if_modified(|current| {
                let newer = position > *current;
                if newer {
                    *current = position;
                }
                newer
            });
        }
    }

    pub fn current(&self, name: &str) -> Option<Position> {
        self.positions.get(name).map(|s| *s.borrow())
    }

    /// The least position over `names`: what a reader of all of them can rely on.
    pub fn least(&self, names: &[&str]) -> Position {
        names
            .iter()
            .filter_map(|n| self.current(n))
            .min()
            .unwrap_or(Position::START)
    }

    /// Waits until every named projector has reached `target`; false on timeout.
    pub async fn wait_for(&self, names: &[&str], target: Position, timeout: Duration) -> bool {
        let wait_all = async {
            for name in names {
                if let Some(sender) = self.positions.get(name) {
                    let mut receiver = sender.subscribe();
                    if receiver.wait_for(|p| *p >= target).await.is_err() {
                        return false;
                    }
                }
            }
            true
        };
        tokio::time::timeout(timeout, wait_all)
            .await
            .unwrap_or(false)
    }

    /// Loads every checkpoint, e.g. at start or after missed notifications.
    pub async fn refresh(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let rows = sqlx::query("SELECT name, transaction_id, position FROM projection_checkpoints")
            .fetch_all(pool)
            .await?;
        for row in rows {
            let name: String = row.try_get("name")?;
            self.advance(
                &name,
                Position::new(row.try_get("transaction_id")?, row.try_get("position")?),
            );
        }
        Ok(())
    }
}

/// Bumped whenever the log may have grown; runners wait on it instead of polling fast.
pub type LogWake = watch::Sender<u64>;

/// Listens for new events and for other instances' progress until the process stops.
/// Notifications can be missed while reconnecting, so every reconnect refreshes everything.
pub async fn listen(pool: PgPool, progress: Arc<Progress>, wake: Arc<LogWake>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for log notifications; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener
            .listen_all(["chronicle_events", "chronicle_projections"])
            .await
        {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        let _ = progress.refresh(&pool).await;
        wake.send_modify(|n| *n = n.wrapping_add(1));
        // `None` or an error means the connection was lost: reconnect and refresh what may
        // have been missed meanwhile.
        while let Ok(Some(notification)) = listener.try_recv().await {
            match notification.channel() {
                "chronicle_events" => wake.send_modify(|n| *n = n.wrapping_add(1)),
                _ => {
                    if let Some((name, token)) = notification.payload().split_once(' ') {
                        if let Ok(position) = token.parse() {
                            progress.advance(name, position);
                        }
                    }
                }
            }
        }
    }
}
