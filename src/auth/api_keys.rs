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

impl ApiKeyRow {
    /// The row as answers show it: `prefix` with the `sk_live_` it is stored without.
    fn shown(mut self) -> Self {
        self.prefix = format!("{KEY_PREFIX}{}", self.prefix);
        self
    }
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
    let secret = random_secret(32);
    let key = format!("{KEY_PREFIX}{secret}");
    // Enough of the key to recognise it in a list, far too little to use it. The constant
    // `sk_live_` is added when shown, so a scan of the database for it finds real keys only.
    let prefix: String = secret.chars().take(6).collect();
    let row: ApiKeyRow = sqlx::query_as(
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
    Ok(IssuedKey {
        key,
        row: row.shown(),
    })
}

/// A live key and what the users read model says of the admin who created it (nothing while
/// that read model is being reset).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PresentedKey {
    pub id: Uuid,
    pub role: String,
    pub created_by: Uuid,
    pub creator_role: Option<String>,
    pub creator_status: Option<String>,
}

impl PresentedKey {
    /// A key never outranks its creator, and a deactivated creator's keys stop working: keys
    /// live until revoked, so this cannot rest on the in-memory revocations, which forget
    /// after a token's lifetime.
    pub fn creator_active(&self) -> bool {
        self.creator_status.as_deref().is_none_or(|s| s == "active")
    }

    pub fn effective_role(&self) -> Role {
        match Role::parse(&self.role).unwrap_or_default() {
            Role::Admin if self.creator_role.as_deref() == Some("user") => Role::User,
            role => role,
        }
    }
}

/// The live key with this secret, if any (one indexed lookup and its creator's row).
pub async fn authenticate(pool: &PgPool, key: &str) -> Result<Option<PresentedKey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.id, k.role, k.created_by, u.role AS creator_role, u.status AS creator_status
           FROM api_keys k LEFT JOIN users_view u ON u.id = k.created_by
          WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
    )
    .bind(sha256_hex(key))
    .fetch_optional(pool)
    .await
}

pub async fn list(pool: &PgPool) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    let rows: Vec<ApiKeyRow> = sqlx::query_as(
        "SELECT id, name, role, prefix, created_by, created_at, revoked_at
           FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at DESC, id DESC",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(ApiKeyRow::shown).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(role: &str, creator_role: Option<&str>, creator_status: Option<&str>) -> PresentedKey {
        PresentedKey {
            id: Uuid::nil(),
            role: role.to_owned(),
            created_by: Uuid::nil(),
            creator_role: creator_role.map(str::to_owned),
            creator_status: creator_status.map(str::to_owned),
        }
    }

    #[test]
    fn a_key_never_outranks_its_creator() {
        assert_eq!(
            key("admin", Some("admin"), None).effective_role(),
            Role::Admin
        );
        assert_eq!(
            key("admin", Some("user"), None).effective_role(),
            Role::User
        );
        assert_eq!(
            key("user", Some("admin"), None).effective_role(),
            Role::User
        );
        // While the users read model is reset the key keeps its own role.
        assert_eq!(key("admin", None, None).effective_role(), Role::Admin);
    }

    #[test]
    fn a_deactivated_creators_keys_stop_working() {
        assert!(key("admin", None, Some("active")).creator_active());
        assert!(!key("admin", None, Some("deactivated")).creator_active());
        assert!(key("admin", None, None).creator_active());
    }
}
