//! The point-read baseline: a minimal axum + sqlx server that answers
//! `GET /api/v1/posts/{id}` from the same `posts_view` row, with the same pool size and the
//! same JSON shape as Chronicle, and nothing else (no middleware, auth, positions or ETags).

use std::net::SocketAddr;

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

#[derive(sqlx::FromRow)]
struct PostRow {
    id: uuid::Uuid,
    author_id: uuid::Uuid,
    title: String,
    body: String,
    tags: Vec<String>,
    status: String,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    published_at: Option<chrono::DateTime<chrono::Utc>>,
    version: i64,
}

async fn get_post(State(pool): State<PgPool>, Path(id): Path<uuid::Uuid>) -> Response {
    let row: Result<Option<PostRow>, _> = sqlx::query_as(
        "SELECT id, author_id, title, body, tags, status, created_at, updated_at, published_at, version
           FROM posts_view WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&pool)
    .await;
    match row {
        Ok(Some(p)) => Json(json!({"data": {
            "id": p.id, "author_id": p.author_id, "title": p.title, "body": p.body,
            "tags": p.tags, "status": p.status, "created_at": p.created_at,
            "updated_at": p.updated_at, "published_at": p.published_at, "version": p.version,
        }}))
        .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

pub async fn serve(database_url: &str, bind: SocketAddr, pool_size: u32) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .connect(database_url)
        .await
        .context("connecting to Postgres")?;
    let app = Router::new()
        .route("/api/v1/posts/{id}", get(get_post))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
