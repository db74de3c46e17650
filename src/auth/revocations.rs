//! What every instance must know to refuse a still-valid access token at once: revoked
//! sessions, deactivated users and changed roles, learned from the log.
//!
//! Checking the database on every request would cost a round trip per request, so each
//! instance follows the log instead (woken by the same NOTIFY as the projectors, so it learns
//! of a revocation within milliseconds) and keeps the facts in memory. Access tokens live 15
//! minutes, so a fact older than that can no longer matter: entries are pruned after
//! [`MEMORY`], and a restarting instance reloads the events of that window before serving.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use aggregates::Role;
use projections::log::StoredEvent;
use projections::tail::LogTail;
use projections::Position;
use sqlx::PgPool;
use uuid::Uuid;

/// Longer than an access token lives, with a margin for clock skew.
pub const MEMORY: Duration = Duration::from_secs(16 * 60);
const BATCH: i64 = 1000;
const POLL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Revocations {
    sessions: RwLock<HashMap<Uuid, Instant>>,
    blocked_users: RwLock<HashMap<Uuid, Instant>>,
    roles: RwLock<HashMap<Uuid, (Role, Instant)>>,
    checkpoint: RwLock<Position>,
}

impl Revocations {
    pub fn is_session_revoked(&self, session: &Uuid) -> bool {
        self.sessions
            .read()
            .map(|s| s.contains_key(session))
            .unwrap_or(true)
    }

    pub fn is_user_blocked(&self, user: &Uuid) -> bool {
        self.blocked_users
            .read()
            .map(|u| u.contains_key(user))
            .unwrap_or(true)
    }

    /// The user's role if it changed recently (tokens carry the role they were issued with).
    pub fn current_role(&self, user: &Uuid) -> Option<Role> {
        self.roles
            .read()
            .ok()
            .and_then(|r| r.get(user).map(|(role, _)| *role))
    }

    /// How far this instance has read the log: its view of the log's head, for `/metrics`.
    pub fn followed_to(&self) -> Position {
        self.checkpoint.read().map(|c| *c).unwrap_or_default()
    }

    /// Records a revocation this instance just made, before the log follower sees it.
    pub fn revoke_session(&self, session: Uuid) {
        if let Ok(mut sessions) = self.sessions.write() {
            sessions.insert(session, Instant::now());
        }
    }

    fn learn(&self, event: &StoredEvent) {
        let Ok(id) = Uuid::parse_str(&event.aggregate_id) else {
            return;
        };
        let now = Instant::now();
        match event.event_type.as_str() {
            "session.revoked" | "session.compromised" => self.revoke_session(id),
            "user.deactivated" => {
                if let Ok(mut users) = self.blocked_users.write() {
                    users.insert(id, now);
                }
            }
            "user.reactivated" => {
                if let Ok(mut users) = self.blocked_users.write() {
                    users.remove(&id);
                }
            }
            "user.role_changed" => {
                let role = event.payload["user.role_changed"]["role"]
                    .as_str()
                    .and_then(Role::parse);
                if let (Some(role), Ok(mut roles)) = (role, self.roles.write()) {
                    roles.insert(id, (role, now));
                }
            }
            _ => {}
        }
    }

    fn prune(&self) {
        let fresh = |at: &Instant| at.elapsed() < MEMORY;
        if let Ok(mut sessions) = self.sessions.write() {
            sessions.retain(|_, at| fresh(at));
        }
        if let Ok(mut users) = self.blocked_users.write() {
            users.retain(|_, at| fresh(at));
        }
        if let Ok(mut roles) = self.roles.write() {
            roles.retain(|_, (_, at)| fresh(at));
        }
    }

    /// Loads the facts of the last [`MEMORY`] and sets the follower's starting point.
    pub async fn load_recent(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let head = projections::log::head(pool).await?;
        let recent = sqlx::query(
            "SELECT event_id, transaction_id::text::bigint AS transaction_id, position, aggregate_type,
                    aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at
               FROM events
              WHERE recorded_at > now() - make_interval(secs => $1)
                AND event_type IN ('session.revoked', 'session.compromised', 'user.deactivated',
                                   'user.reactivated', 'user.role_changed')
                AND (transaction_id, position) <= ($2::bigint::text::xid8, $3)
              ORDER BY transaction_id, position",
        )
        .bind(MEMORY.as_secs_f64())
        .bind(head.transaction_id)
        .bind(head.position)
        .fetch_all(pool)
        .await?;
        for row in &recent {
            self.learn(&StoredEvent::from_row(row)?);
        }
        if let Ok(mut checkpoint) = self.checkpoint.write() {
            *checkpoint = head;
        }
        Ok(())
    }

    async fn catch_up(&self, tail: &LogTail) -> Result<usize, sqlx::Error> {
        let mut total = 0;
        loop {
            let after = self.checkpoint.read().map(|c| *c).unwrap_or_default();
            let events = tail.read_after(after, BATCH).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                return Ok(total);
            };
            events.iter().for_each(|e| self.learn(e));
            total += events.len();
            if let Ok(mut checkpoint) = self.checkpoint.write() {
                *checkpoint = last;
            }
        }
    }

    /// Follows the log until the process stops; call [`Self::load_recent`] first.
    pub async fn follow(self: std::sync::Arc<Self>, tail: std::sync::Arc<LogTail>) {
        let mut head = tail.subscribe();
        let mut last_prune = Instant::now();
        loop {
            head.borrow_and_update();
            if let Err(e) = self.catch_up(&tail).await {
                tracing::warn!(error = %e, "cannot follow revocations; retrying");
            }
            if last_prune.elapsed() > Duration::from_secs(60) {
                self.prune();
                last_prune = Instant::now();
            }
            let _ = tokio::time::timeout(POLL, head.changed()).await;
        }
    }
}
