//! The `sessions_view` read model: sign-in sessions, for `/me/sessions`.

use aggregates::session::SessionEvent;
use async_trait::async_trait;
use sqlx::PgConnection;

use crate::log::StoredEvent;
use crate::projector::{ProjectionError, Projector};

pub struct SessionsProjector;

#[async_trait]
impl Projector for SessionsProjector {
    fn name(&self) -> &'static str {
        "sessions"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sessions_view"]
    }

    fn handles(&self, event: &StoredEvent) -> bool {
        event.aggregate_type == "session"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for event in events.iter().filter(|e| e.aggregate_type == "session") {
            let parsed: SessionEvent = serde_json::from_value(event.payload.clone())
                .map_err(|e| ProjectionError::bad_event(event, e))?;
            let id = uuid::Uuid::parse_str(&event.aggregate_id)
                .map_err(|e| ProjectionError::bad_event(event, e))?;
            apply_one(conn, id, event.sequence, parsed).await?;
        }
        Ok(())
    }
}

async fn apply_one(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    version: i64,
    event: SessionEvent,
) -> Result<(), sqlx::Error> {
    match event {
        SessionEvent::Started {
            user_id,
            ip,
            user_agent,
            expires_at,
            started_at,
            ..
        } => {
            sqlx::query(
                "INSERT INTO sessions_view (id, user_id, status, ip, user_agent, created_at, last_used_at, expires_at, version)
                 VALUES ($1, $2, 'active', $3, $4, $5, $5, $6, $7)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(user_id.as_uuid())
            .bind(ip)
            .bind(user_agent)
            .bind(started_at)
            .bind(expires_at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        SessionEvent::Refreshed {
            expires_at,
            refreshed_at,
            ..
        } => {
            sqlx::query("UPDATE sessions_view SET last_used_at = $2, expires_at = $3, version = $4 WHERE id = $1")
                .bind(id)
                .bind(refreshed_at)
                .bind(expires_at)
                .bind(version)
                .execute(&mut *conn)
                .await?;
        }
        SessionEvent::Revoked { revoked_at, .. } => {
            end(conn, id, "revoked", revoked_at, version).await?;
        }
        SessionEvent::Compromised { compromised_at } => {
            end(conn, id, "compromised", compromised_at, version).await?;
        }
    }
    Ok(())
}

async fn end(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    status: &str,
    at: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions_view SET status = $2, revoked_at = coalesce(revoked_at, $3), version = $4 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(at)
        .bind(version)
        .execute(conn)
        .await?;
    Ok(())
}

/// A row of `sessions_view`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SessionRow {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub status: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_used_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A user's sessions that are still usable, newest first.
pub async fn active_for_user(
    pool: &sqlx::PgPool,
    user_id: uuid::Uuid,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, user_id, status, ip, user_agent, created_at, last_used_at, expires_at
           FROM sessions_view
          WHERE user_id = $1 AND status = 'active' AND expires_at > now()
          ORDER BY created_at DESC, id DESC",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
}
