//! Webhook endpoints and deliveries in Postgres.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::secrets::{is_sealed_text, SecretBox, SEALED_TEXT_PREFIX};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Sealed under `SECRETS_KEY` (see [`Endpoint::signing_secrets`]); only a row written
    /// before secrets were sealed holds plaintext, until start-up re-seals it.
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    /// `*`, `post.*` or an exact type.
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types
            .iter()
            .any(|pattern| matches(pattern, event_type))
    }

    /// The secrets that sign a delivery now: the current one, and the previous one while its
    /// 24 hours of overlap last. One that does not open is left out (and logged): the receiver
    /// then refuses the signature, which is safer than signing with anything else.
    pub fn signing_secrets(&self, now: DateTime<Utc>, keys: &SecretBox) -> Vec<String> {
        let mut sealed = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) =
            (&self.previous_secret, self.previous_secret_expires_at)
        {
            if now < until {
                sealed.push(previous);
            }
        }
        let context = secret_context(self.id);
        sealed
            .into_iter()
            .filter_map(|stored| match keys.open_text(stored, &context) {
                Ok(secret) => Some(secret),
                Err(e) => {
                    let endpoint = self.id;
                    tracing::error!(%endpoint, error = %e, "cannot open a webhook secret");
                    None
                }
            })
            .collect()
    }
}

/// Both secret columns of a row share one context, so a rotation may move the current secret
/// to `previous_secret` as it is; a sealed secret copied to another endpoint does not open.
fn secret_context(id: Uuid) -> Vec<u8> {
    format!("webhook_endpoints.secret {id}").into_bytes()
}

pub fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix(".*") {
        _ if pattern == "*" => true,
        Some(aggregate) => event_type
            .split_once('.')
            .is_some_and(|(a, _)| a == aggregate),
        None => pattern == event_type,
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const ENDPOINT_COLUMNS: &str =
    "id, url, event_types, description, enabled, disabled_reason, secret, \
     previous_secret, previous_secret_expires_at, created_at, updated_at";
const DELIVERY_COLUMNS: &str = "id, endpoint_id, event_id, event_type, status, attempts, last_status_code, \
     last_error, CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at, delivered_at, created_at";

/// Stores a new endpoint with `secret` sealed under `keys`.
pub async fn create(
    pool: &PgPool,
    keys: &SecretBox,
    url: &str,
    event_types: &[String],
    description: Option<&str>,
    secret: &str,
    created_by: Uuid,
) -> Result<Endpoint, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query_as(&format!(
        "INSERT INTO webhook_endpoints (id, url, event_types, description, secret, created_by)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(url)
    .bind(event_types)
    .bind(description)
    .bind(keys.seal_text(secret, &secret_context(id)))
    .bind(created_by)
    .fetch_one(pool)
    .await
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn list(pool: &PgPool) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at DESC, id DESC"
    ))
    .fetch_all(pool)
    .await
}

pub async fn enabled(pool: &PgPool) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE enabled"
    ))
    .fetch_all(pool)
    .await
}

pub struct Changes<'a> {
    pub url: Option<&'a str>,
    pub event_types: Option<&'a [String]>,
    pub description: Option<&'a str>,
    pub enabled: Option<bool>,
}

pub async fn update(
    pool: &PgPool,
    id: Uuid,
    changes: Changes<'_>,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE webhook_endpoints
            SET url = coalesce($2, url), event_types = coalesce($3, event_types),
                description = coalesce($4, description), enabled = coalesce($5, enabled),
                disabled_reason = CASE WHEN coalesce($5, enabled) THEN NULL ELSE disabled_reason END,
                updated_at = now()
          WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(changes.url)
    .bind(changes.event_types)
    .bind(changes.description)
    .bind(changes.enabled)
    .fetch_optional(pool)
    .await
}

pub async fn delete(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The old secret keeps signing beside the new one for 24 hours; the new one is sealed.
pub async fn rotate_secret(
    pool: &PgPool,
    keys: &SecretBox,
    id: Uuid,
    new_secret: &str,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE webhook_endpoints
            SET previous_secret = secret, previous_secret_expires_at = now() + interval '24 hours',
                secret = $2, updated_at = now()
          WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(keys.seal_text(new_secret, &secret_context(id)))
    .fetch_optional(pool)
    .await
}

#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(
        "the webhook signing secrets do not open under SECRETS_KEY; if JWT_SECRET was rotated \
         without SECRETS_KEY set, set SECRETS_KEY to the old derivation \
         (`chronicle secrets derive-key` with the old JWT_SECRET); if SECRETS_KEY itself \
         changed, set SECRETS_KEY_PREVIOUS to the old one for one start"
    )]
    WrongKey,
}

/// Run at start: seals the secrets that rows written before sealing still hold in plaintext
/// (a migration cannot encrypt), opens those sealed under `previous` (the `SECRETS_KEY` before a
/// change) and seals them again under `keys`, so a key change is one restart with
/// `SECRETS_KEY_PREVIOUS` set. Then checks that a sealed secret opens, so a wrong `SECRETS_KEY`
/// fails the start instead of every delivery's signature. Returns how many rows changed.
pub async fn seal_secrets(
    pool: &PgPool,
    keys: &SecretBox,
    previous: Option<&SecretBox>,
) -> Result<u64, SealingError> {
    let mut sealed = seal_plaintext(pool, keys).await?;
    if let Some(previous) = previous {
        sealed += reseal(pool, keys, previous).await?;
    }
    let sample: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, secret FROM webhook_endpoints ORDER BY created_at DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    if let Some((id, secret)) = sample {
        if keys.open_text(&secret, &secret_context(id)).is_err() {
            return Err(SealingError::WrongKey);
        }
    }
    Ok(sealed)
}

/// Seals again under `keys` every secret that only `previous` opens; returns how many rows.
async fn reseal(
    pool: &PgPool,
    keys: &SecretBox,
    previous: &SecretBox,
) -> Result<u64, SealingError> {
    let rows: Vec<(Uuid, String, Option<String>)> =
        sqlx::query_as("SELECT id, secret, previous_secret FROM webhook_endpoints")
            .fetch_all(pool)
            .await?;
    let mut resealed = 0;
    for (id, secret, before) in rows {
        let context = secret_context(id);
        // A value the current key opens stays; one only the previous key opens is moved over;
        // one neither opens is left for the start check to report.
        let moved = |value: &str| -> Option<String> {
            if keys.open_text(value, &context).is_ok() {
                return None;
            }
            let plain = previous.open_text(value, &context).ok()?;
            Some(keys.seal_text(&plain, &context))
        };
        let new_secret = moved(&secret);
        let new_before = before.as_deref().and_then(moved);
        if new_secret.is_none() && new_before.is_none() {
            continue;
        }
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET secret = $4, previous_secret = $5
              WHERE id = $1 AND secret = $2 AND previous_secret IS NOT DISTINCT FROM $3",
        )
        .bind(id)
        .bind(&secret)
        .bind(&before)
        .bind(new_secret.as_deref().unwrap_or(&secret))
        .bind(new_before.or_else(|| before.clone()))
        .execute(pool)
        .await?;
        resealed += done.rows_affected();
    }
    Ok(resealed)
}

async fn seal_plaintext(pool: &PgPool, keys: &SecretBox) -> Result<u64, SealingError> {
    let plaintext: Vec<(Uuid, String, Option<String>)> = sqlx::query_as(
        "SELECT id, secret, previous_secret FROM webhook_endpoints
          WHERE left(secret, length($1)) <> $1 OR left(previous_secret, length($1)) <> $1",
    )
    .bind(SEALED_TEXT_PREFIX)
    .fetch_all(pool)
    .await?;
    let mut sealed = 0;
    for (id, secret, previous) in plaintext {
        let context = secret_context(id);
        let seal = |value: &str| {
            if is_sealed_text(value) {
                value.to_owned()
            } else {
                keys.seal_text(value, &context)
            }
        };
        // Only if the row is unchanged: a rotation on another instance meanwhile wins.
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET secret = $4, previous_secret = $5
              WHERE id = $1 AND secret = $2 AND previous_secret IS NOT DISTINCT FROM $3",
        )
        .bind(id)
        .bind(&secret)
        .bind(&previous)
        .bind(seal(&secret))
        .bind(previous.as_deref().map(seal))
        .execute(pool)
        .await?;
        sealed += done.rows_affected();
    }
    Ok(sealed)
}

pub async fn disable(pool: &PgPool, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(reason)
        .execute(pool)
        .await?;
    Ok(())
}

/// Queues a delivery; a second enqueue of the same event for the same endpoint is a no-op
/// unless `reset` (a replay), which makes it pending again.
pub async fn enqueue(
    pool: &PgPool,
    endpoint: Uuid,
    event_id: Uuid,
    event_type: &str,
    payload: &serde_json::Value,
    reset: bool,
) -> Result<(), sqlx::Error> {
    let on_conflict = if reset {
        "DO UPDATE SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL,
                       last_status_code = NULL, delivered_at = NULL"
    } else {
        "DO NOTHING"
    };
    sqlx::query(&format!(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (endpoint_id, event_id) {on_conflict}"
    ))
    .bind(Uuid::now_v7())
    .bind(endpoint)
    .bind(event_id)
    .bind(event_type)
    .bind(payload)
    .execute(pool)
    .await?;
    Ok(())
}

/// One event to queue for an endpoint.
pub struct Queued {
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
}

/// [`enqueue`] for many events in one statement (a replay's page).
pub async fn enqueue_many(
    pool: &PgPool,
    endpoint: Uuid,
    events: &[Queued],
    reset: bool,
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let on_conflict = if reset {
        "DO UPDATE SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL,
                       last_status_code = NULL, delivered_at = NULL"
    } else {
        "DO NOTHING"
    };
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = events.iter().map(|e| &e.payload).collect();
    sqlx::query(&format!(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload)
         SELECT id, $2, event_id, event_type, payload
           FROM unnest($1::uuid[], $3::uuid[], $4::text[], $5::jsonb[])
                AS q(id, event_id, event_type, payload)
         ON CONFLICT (endpoint_id, event_id) {on_conflict}"
    ))
    .bind(&ids)
    .bind(endpoint)
    .bind(&event_ids)
    .bind(&types)
    .bind(&payloads)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn deliveries(
    pool: &PgPool,
    endpoint: Uuid,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
          WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2)
          ORDER BY created_at DESC, id DESC LIMIT $3"
    ))
    .bind(endpoint)
    .bind(status)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Makes one delivery due now; false when it does not belong to the endpoint.
pub async fn retry(pool: &PgPool, endpoint: Uuid, delivery: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now()
          WHERE id = $1 AND endpoint_id = $2",
    )
    .bind(delivery)
    .bind(endpoint)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_everything_an_aggregate_or_one_type() {
        assert!(matches("*", "user.registered"));
        assert!(matches("post.*", "post.published"));
        assert!(!matches("post.*", "user.registered"));
        assert!(!matches("post.*", "postal.sent"));
        assert!(matches("post.published", "post.published"));
        assert!(!matches("post.published", "post.created"));
    }
}
