//! The `users_view` read model: one row per registered user.

use aggregates::user::UserEvent;
use async_trait::async_trait;
use sqlx::PgConnection;

use crate::log::StoredEvent;
use crate::projector::{ProjectionError, Projector};

pub struct UsersProjector;

#[async_trait]
impl Projector for UsersProjector {
    fn name(&self) -> &'static str {
        "users"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users_view"]
    }

    fn handles(&self, event: &StoredEvent) -> bool {
        event.aggregate_type == "user"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for event in events.iter().filter(|e| e.aggregate_type == "user") {
            let parsed: UserEvent = serde_json::from_value(event.payload.clone())
                .map_err(|e| ProjectionError::bad_event(event, e))?;
            apply_one(conn, event, parsed).await?;
        }
        Ok(())
    }
}

fn uuid_of(event: &StoredEvent) -> Result<uuid::Uuid, ProjectionError> {
    uuid::Uuid::parse_str(&event.aggregate_id).map_err(|e| ProjectionError::bad_event(event, e))
}

/// Every statement sets values taken from the event (and the version to its sequence), so
/// applying an event twice changes nothing.
async fn apply_one(
    conn: &mut PgConnection,
    event: &StoredEvent,
    parsed: UserEvent,
) -> Result<(), ProjectionError> {
    let id = uuid_of(event)?;
    let version = event.sequence;
    match parsed {
        UserEvent::Registered {
            email,
            name,
            role,
            registered_at,
            ..
        } => {
            sqlx::query(
                "INSERT INTO users_view (id, email, name, role, status, created_at, updated_at, version)
                 VALUES ($1, $2, $3, $4, 'active', $5, $5, $6)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(email)
            .bind(name)
            .bind(role.as_str())
            .bind(registered_at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        UserEvent::Updated {
            name,
            bio,
            updated_at,
        } => {
            sqlx::query("UPDATE users_view SET name = $2, bio = $3, updated_at = $4, version = $5 WHERE id = $1")
                .bind(id)
                .bind(name)
                .bind(bio)
                .bind(updated_at)
                .bind(version)
                .execute(&mut *conn)
                .await?;
        }
        UserEvent::RoleChanged { role, changed_at } => {
            set(conn, id, "role = $2", role.as_str(), changed_at, version).await?;
        }
        UserEvent::EmailVerificationRequested { .. } | UserEvent::PasswordResetRequested { .. } => {
            sqlx::query("UPDATE users_view SET version = $2 WHERE id = $1")
                .bind(id)
                .bind(version)
                .execute(&mut *conn)
                .await?;
        }
        UserEvent::EmailVerified { verified_at, .. } => {
            sqlx::query("UPDATE users_view SET email_verified = true, updated_at = $2, version = $3 WHERE id = $1")
                .bind(id)
                .bind(verified_at)
                .bind(version)
                .execute(&mut *conn)
                .await?;
        }
        UserEvent::PasswordChanged { changed_at, .. } => {
            sqlx::query("UPDATE users_view SET updated_at = $2, version = $3 WHERE id = $1")
                .bind(id)
                .bind(changed_at)
                .bind(version)
                .execute(&mut *conn)
                .await?;
        }
        UserEvent::Deactivated { deactivated_at } => {
            set(
                conn,
                id,
                "status = $2",
                "deactivated",
                deactivated_at,
                version,
            )
            .await?;
        }
        UserEvent::Reactivated { reactivated_at } => {
            set(conn, id, "status = $2", "active", reactivated_at, version).await?;
        }
    }
    Ok(())
}

async fn set(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    assignment: &'static str,
    value: &str,
    at: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Result<(), sqlx::Error> {
    let sql =
        format!("UPDATE users_view SET {assignment}, updated_at = $3, version = $4 WHERE id = $1");
    sqlx::query(&sql)
        .bind(id)
        .bind(value)
        .bind(at)
        .bind(version)
        .execute(conn)
        .await?;
    Ok(())
}

/// A row of `users_view`, as queries return it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UserRow {
    pub id: uuid::Uuid,
    pub email: String,
    pub name: String,
    pub bio: String,
    pub role: String,
    pub status: String,
    pub email_verified: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub version: i64,
}

pub const TABLE: &str = "users_view";
pub const COLUMNS: &str =
    "id, email, name, bio, role, status, email_verified, created_at, updated_at, version";

pub const SORT_KEYS: &[crate::listing::SortKey] = &[
    crate::listing::SortKey {
        field: "created_at",
        expr: "created_at",
        ty: crate::listing::SqlType::Timestamp,
    },
    crate::listing::SortKey {
        field: "name",
        expr: "name",
        ty: crate::listing::SqlType::Text,
    },
    crate::listing::SortKey {
        field: "email",
        expr: "email",
        ty: crate::listing::SqlType::Text,
    },
];

#[tracing::instrument(level = "trace", name = "query users_view.find", skip(pool))]
pub async fn find(pool: &sqlx::PgPool, id: uuid::Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM {TABLE} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}
