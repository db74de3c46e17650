//! API keys: `sk_live_` + 32 random bytes (base64url), shown once, stored as SHA-256.

use aggregates::{Role, UserId};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::tokens::{random_secret, sha256_hex};

pub const KEY_PREFIX: &str = "sk_live_";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key and its stored row; the key itself exists only in this value.
pub struct IssuedKey {
    pub key: String,
    pub row: ApiKeyRow,
}

pub fn looks_like_api_key(credential: &str) -> bool {
    credential.starts_with(KEY_PREFIX)
}

pub async fn create(
    pool: &PgPool,
    name: &str,
    role: Role,
    created_by: UserId,
) -> Result<IssuedKey, sqlx::Error> {
    let key = format!("{KEY_PREFIX}{}", random_secret(32));
    // Enough of the key to recognise it in a list, far too little to use it.
    let prefix: String = key.chars().take(KEY_PREFIX.len() + 6).collect();
    let row = sqlx::query_as(
        "INSERT INTO api_keys (id, name, role, prefix, key_hash, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, name, role, prefix, created_by, created_at, revoked_at",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(role.as_str())
    .bind(&prefix)
    .bind(sha256_hex(&key))
    .bind(created_by.as_uuid())
    .fetch_one(pool)
    .await?;
    Ok(IssuedKey { key, row })
}

/// The live key with this secret, if any (one indexed lookup).
pub async fn authenticate(pool: &PgPool, key: &str) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, role, prefix, created_by, created_at, revoked_at
           FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(sha256_hex(key))
    .fetch_optional(pool)
    .await
}

pub async fn list(pool: &PgPool) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, role, prefix, created_by, created_at, revoked_at
           FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at DESC, id DESC",
    )
    .fetch_all(pool)
    .await
}

/// Revokes a live key; false when there is none with that id.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let result =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(pool)
            .await?;
    Ok(result.rows_affected() == 1)
}
