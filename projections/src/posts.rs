//! The `posts_view` read model: one row per post that is not deleted.

use aggregates::post::PostEvent;
use async_trait::async_trait;
use sqlx::PgConnection;

use crate::log::StoredEvent;
use crate::runner::{ProjectionError, Projector};

pub struct PostsProjector;

#[async_trait]
impl Projector for PostsProjector {
    fn name(&self) -> &'static str {
        "posts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["posts_view"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for event in events.iter().filter(|e| e.aggregate_type == "post") {
            let parsed: PostEvent = serde_json::from_value(event.payload.clone())
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
    event: PostEvent,
) -> Result<(), sqlx::Error> {
    match event {
        PostEvent::Created {
            author_id,
            title,
            body,
            tags,
            created_at,
            ..
        } => {
            sqlx::query(
                "INSERT INTO posts_view (id, author_id, title, body, tags, status, created_at, updated_at, version)
                 VALUES ($1, $2, $3, $4, $5, 'draft', $6, $6, $7)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(author_id.as_uuid())
            .bind(title)
            .bind(body)
            .bind(tags)
            .bind(created_at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        PostEvent::Updated {
            title,
            body,
            tags,
            updated_at,
        } => {
            sqlx::query(
                "UPDATE posts_view SET title = $2, body = $3, tags = $4, updated_at = $5, version = $6 WHERE id = $1",
            )
            .bind(id)
            .bind(title)
            .bind(body)
            .bind(tags)
            .bind(updated_at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        PostEvent::Published { published_at } => {
            sqlx::query(
                "UPDATE posts_view SET status = 'published', published_at = $2, updated_at = $2, version = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(published_at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        PostEvent::Unpublished { unpublished_at } => {
            sqlx::query(
                "UPDATE posts_view SET status = 'draft', published_at = NULL, updated_at = $2, version = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(unpublished_at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        PostEvent::Deleted { .. } => {
            sqlx::query("DELETE FROM posts_view WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// A row of `posts_view`, as queries return it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PostRow {
    pub id: uuid::Uuid,
    pub author_id: uuid::Uuid,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub status: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub published_at: Option<chrono::DateTime<chrono::Utc>>,
    pub version: i64,
}

pub const TABLE: &str = "posts_view";
pub const COLUMNS: &str =
    "id, author_id, title, body, tags, status, created_at, updated_at, published_at, version";

pub const SORT_KEYS: &[crate::listing::SortKey] = &[
    crate::listing::SortKey {
        field: "created_at",
        expr: "created_at",
        ty: crate::listing::SqlType::Timestamp,
    },
    crate::listing::SortKey {
        field: "published_at",
        expr: "coalesce(published_at, '-infinity'::timestamptz)",
        ty: crate::listing::SqlType::Timestamp,
    },
    crate::listing::SortKey {
        field: "title",
        expr: "title",
        ty: crate::listing::SqlType::Text,
    },
];

pub async fn find(pool: &sqlx::PgPool, id: uuid::Uuid) -> Result<Option<PostRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM {TABLE} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}
