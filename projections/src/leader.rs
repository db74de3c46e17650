//! Leadership of one role (a projector, the relay) across instances: an advisory lock on a
//! dedicated connection, a fencing epoch bumped at each takeover, and this process's record of
//! the terms it led.
//!
//! The lock alone only says who *should* lead: a leader whose lock connection died (a pooler
//! restart, a terminated backend) keeps running until it notices, while another instance already
//! holds the lock. So a leader checks its lock connection every [`CHECK_EVERY`] and stops its
//! work the moment a check fails, and every write it makes names its epoch: the takeover bumps
//! the epoch in the role's checkpoint row, after which the old leader's writes match no row and
//! are refused. The bump takes the row's lock, so it also waits for a batch the old leader has
//! in flight to commit or roll back before the new leader reads anything.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

/// How often a leader looks at its lock connection.
pub const CHECK_EVERY: Duration = Duration::from_millis(200);
/// A check that takes longer than this counts as a lost connection.
const CHECK_TIMEOUT: Duration = Duration::from_millis(400);
/// How long a new leader waits after a takeover before it works: longer than a deposed leader
/// needs to notice (one check interval and a timed-out check), so two terms do not overlap even
/// in time. Correctness does not rest on it; the epoch does.
const HANDOVER: Duration = Duration::from_millis(1200);
/// How often a standby tries the lock.
const STANDBY_POLL: Duration = Duration::from_millis(500);
/// Terms remembered for `/admin/projections`.
const KEPT_TERMS: usize = 256;

/// Where a role keeps its epoch: the row of its checkpoint, which every write of the leader's
/// updates anyway, so the fencing check costs no extra statement.
#[derive(Debug, Clone)]
pub struct Fence {
    table: &'static str,
    key_column: &'static str,
    key: String,
}

impl Fence {
    pub fn projector(name: &str) -> Self {
        Self {
            table: "projection_checkpoints",
            key_column: "name",
            key: name.to_owned(),
        }
    }

    pub fn relay(stream: &str) -> Self {
        Self {
            table: "relay_checkpoints",
            key_column: "stream",
            key: stream.to_owned(),
        }
    }
}

/// One term of leadership of this process: `until` is `None` while it lasts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Term {
    pub role: String,
    pub epoch: i64,
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

/// The terms this process led, newest last, so tests and operators can check that no two
/// instances led one role at the same moment.
#[derive(Debug, Default)]
pub struct TermLog {
    terms: Mutex<VecDeque<Term>>,
}

impl TermLog {
    fn begin(&self, role: &str, epoch: i64) {
        if let Ok(mut terms) = self.terms.lock() {
            if terms.len() >= KEPT_TERMS {
                terms.pop_front();
            }
            terms.push_back(Term {
                role: role.to_owned(),
                epoch,
                since: Utc::now(),
                until: None,
            });
        }
    }

    fn end(&self, role: &str, epoch: i64) {
        if let Ok(mut terms) = self.terms.lock() {
            if let Some(term) = terms
                .iter_mut()
                .rev()
                .find(|t| t.role == role && t.epoch == epoch)
            {
                term.until.get_or_insert_with(Utc::now);
            }
        }
    }

    pub fn terms(&self) -> Vec<Term> {
        self.terms
            .lock()
            .map(|terms| terms.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The lock connection of a leader and the epoch its writes must carry.
pub struct Leadership {
    conn: PgConnection,
    role: String,
    epoch: i64,
}

impl Leadership {
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Returns once the lock connection fails a check: the lock may be someone else's now, so
    /// the caller drops its work at once (cancelled at its next await; an open transaction is
    /// rolled back).
    pub async fn lost(&mut self) {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let check = sqlx::query("SELECT 1").execute(&mut self.conn);
            match tokio::time::timeout(CHECK_TIMEOUT, check).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(role = %self.role, error = %e, "lost the leadership connection");
                    return;
                }
                Err(_) => {
                    tracing::warn!(role = %self.role, "the leadership connection stopped answering");
                    return;
                }
            }
        }
    }

    /// Runs `work` while this leadership holds: `None` when the lock connection failed first,
    /// and then the work was dropped at its next await point (an open transaction rolls back).
    pub async fn hold<F: Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::select! {
            () = self.lost() => None,
            output = work => Some(output),
        }
    }

    /// Like [`Leadership::hold`], for work that must not be cut at any await point (a message
    /// a server accepted would be sent again): when the lock connection fails, `work` is told
    /// through its receiver and awaited until it has wound down.
    pub async fn hold_winding_down<F: Future>(
        &mut self,
        work: impl FnOnce(watch::Receiver<bool>) -> F,
    ) -> F::Output {
        let (stop, stopping) = watch::channel(false);
        let work = work(stopping);
        tokio::pin!(work);
        tokio::select! {
            () = self.lost() => {
                let _ = stop.send(true);
                work.await
            }
            output = &mut work => output,
        }
    }

    /// Ends the term (after the work stopped) and releases the lock if it is still held.
    pub async fn end(self, log: &TermLog) {
        log.end(&self.role, self.epoch);
        let _ = tokio::time::timeout(CHECK_TIMEOUT, self.conn.close()).await;
    }
}

/// Becomes the one instance doing the work named `role`, waiting while another instance is; the
/// role's checkpoint row (`fence`) must exist. Returns after the epoch was bumped, which fences
/// the previous leader off.
pub async fn acquire(database_url: &str, role: &str, fence: &Fence, log: &TermLog) -> Leadership {
    acquire_fenced_by(database_url, role, Some(fence), log).await
}

/// Leadership for work that needs no fence because every unit of it is claimed under its own
/// row lock (the email sender's leases): the lock and the connection check only keep it to one
/// instance at a time. Its epoch is always 0.
pub async fn acquire_unfenced(database_url: &str, role: &str, log: &TermLog) -> Leadership {
    acquire_fenced_by(database_url, role, None, log).await
}

async fn acquire_fenced_by(
    database_url: &str,
    role: &str,
    fence: Option<&Fence>,
    log: &TermLog,
) -> Leadership {
    let key = advisory_key(role);
    let mut announced = false;
    loop {
        let Ok(mut conn) = PgConnection::connect(database_url).await else {
            tokio::time::sleep(STANDBY_POLL).await;
            continue;
        };
        loop {
            let locked: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut conn)
                .await;
            match locked {
                Ok(true) => match take_over(&mut conn, fence).await {
                    Ok(epoch) => {
                        if epoch > 1 {
                            // A previous leader may not have noticed yet that it is one.
                            tokio::time::sleep(HANDOVER).await;
                        }
                        tracing::info!(role, epoch, "leading");
                        log.begin(role, epoch);
                        return Leadership {
                            conn,
                            role: role.to_owned(),
                            epoch,
                        };
                    }
                    Err(e) => {
                        tracing::warn!(role, error = %e, "cannot take over; retrying");
                        break;
                    }
                },
                Ok(false) => {
                    if !announced {
                        tracing::info!(role, "another instance leads; standing by");
                        announced = true;
                    }
                    tokio::time::sleep(STANDBY_POLL).await;
                }
                Err(_) => break,
            }
        }
        let _ = conn.close().await;
        tokio::time::sleep(STANDBY_POLL).await;
    }
}

async fn take_over(conn: &mut PgConnection, fence: Option<&Fence>) -> Result<i64, sqlx::Error> {
    let Some(fence) = fence else {
        return Ok(0);
    };
    sqlx::query_scalar(&format!(
        "UPDATE {} SET leader_epoch = leader_epoch + 1, leader_since = now()
          WHERE {} = $1 RETURNING leader_epoch",
        fence.table, fence.key_column
    ))
    .bind(&fence.key)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(sqlx::Error::RowNotFound)
}

/// A stable 64-bit key for an advisory lock (FNV-1a; std's hasher is not stable across builds).
pub fn advisory_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}
