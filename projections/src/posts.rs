//! The `posts_view` read model: one row per post that is not deleted.

use aggregates::post::PostEvent;
use async_trait::async_trait;
use serde::Deserialize;
use sqlx::PgConnection;

use crate::log::StoredEvent;
use crate::projector::{ProjectionError, Projector};

pub struct PostsProjector;

#[async_trait]
impl Projector for PostsProjector {
    fn name(&self) -> &'static str {
        "posts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["posts_view"]
    }

    fn handles(&self, event: &StoredEvent) -> bool {
        event.aggregate_type == "post"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        // Runs of consecutive creations go in one statement (a rebuild is mostly those); any
        // other event first flushes the run, so the log's order is kept.
        let mut created = NewPosts::default();
        for event in events.iter().filter(|e| e.aggregate_type == "post") {
            let parsed = PostEvent::deserialize(&event.payload)
                .map_err(|e| ProjectionError::bad_event(event, e))?;
            let id = uuid::Uuid::parse_str(&event.aggregate_id)
                .map_err(|e| ProjectionError::bad_event(event, e))?;
            match parsed {
                PostEvent::Created {
                    author_id,
                    title,
                    body,
                    tags,
                    created_at,
                    ..
                } => created.push(
                    id,
                    *author_id.as_uuid(),
                    title,
                    body,
                    &tags,
                    created_at,
                    event.sequence,
                ),
                other => {
                    created.flush(conn).await?;
                    apply_one(conn, id, event.sequence, other).await?;
                }
            }
        }
        created.flush(conn).await?;
        Ok(())
    }
}

/// `post.created` rows waiting to be inserted together.
#[derive(Default)]
struct NewPosts {
    ids: Vec<uuid::Uuid>,
    authors: Vec<uuid::Uuid>,
    titles: Vec<String>,
    bodies: Vec<String>,
    /// Each post's tags joined by U+001F; tags are `[a-z0-9-]`, so the separator cannot occur.
    tags: Vec<String>,
    created: Vec<chrono::DateTime<chrono::Utc>>,
    versions: Vec<i64>,
}

impl NewPosts {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        id: uuid::Uuid,
        author: uuid::Uuid,
        title: String,
        body: String,
        tags: &[String],
        created_at: chrono::DateTime<chrono::Utc>,
        version: i64,
    ) {
        self.ids.push(id);
        self.authors.push(author);
        self.titles.push(title);
        self.bodies.push(body);
        self.tags.push(tags.join(TAG_SEPARATOR));
        self.created.push(created_at);
        self.versions.push(version);
    }

    async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO posts_view (id, author_id, title, body, tags, status, created_at, updated_at, version)
             SELECT e.id, e.author_id, e.title, e.body,
                    CASE WHEN e.tags = '' THEN '{}'::text[] ELSE string_to_array(e.tags, chr(31)) END,
                    'draft', e.created_at, e.created_at, e.version
               FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bigint[])
                    AS e(id, author_id, title, body, tags, created_at, version)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&self.ids)
        .bind(&self.authors)
        .bind(&self.titles)
        .bind(&self.bodies)
        .bind(&self.tags)
        .bind(&self.created)
        .bind(&self.versions)
        .execute(&mut *conn)
        .await?;
        *self = Self::default();
        Ok(())
    }
}

const TAG_SEPARATOR: &str = "\u{1f}";

async fn apply_one(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    version: i64,
    event: PostEvent,
) -> Result<(), sqlx::Error> {
    match event {
        // Batched by the caller.
        PostEvent::Created { .. } => {}
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

#[tracing::instrument(level = "trace", name = "query posts_view.find", skip(pool))]
pub async fn find(pool: &sqlx::PgPool, id: uuid::Uuid) -> Result<Option<PostRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM {TABLE} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}
