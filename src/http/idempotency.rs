//! `Idempotency-Key` on POSTs: the first completed answer is kept 24 hours per principal and
//! key and replayed to retries (`Idempotent-Replayed: true`), so a retried command appends
//! nothing. The same key with another request is 422; while the first is still running, 409.
//! 5xx answers are not kept, so the client may retry them, except a command whose commit
//! outcome is unknown (the database failed under its write and did not come back in time to
//! tell): its record stays claimed, so a retry cannot apply it twice.
//!
//! The record is claimed before the request runs (one insert wins a race), and the request and
//! the storing of its answer run in a spawned task: a client that hangs up cannot leave a
//! command done but its record unwritten.
//!
//! Stored answers are no back door. The layer runs after authentication and scopes records by
//! the verified principal and its role, so a caller whose credentials no longer verify gets the
//! 401 anyone would, and a demoted one runs the request afresh. Bodies are sealed under
//! `SECRETS_KEY`, bound to their principal and key, so the database holds no key or secret an
//! answer carried. `/auth/*` answers (tokens) are never stored: those calls always run.

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::auth::secrets::{OpenError, SecretBox};
use crate::http::authenticate::principal_from;
use crate::http::authenticate::Authenticated;
use crate::http::error::{ApiError, FieldError, OutcomeUnknown};
use crate::http::rate_limit::client_ip_of;
use crate::state::AppState;

pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Headers of the first answer that a replay must repeat.
const KEPT_HEADERS: [&str; 5] = [
    "content-type",
    "location",
    "etag",
    "chronicle-position",
    "x-consistency",
];

/// Answers larger than this are not worth keeping in full; the body limit bounds requests, and
/// no command answer comes near it.
const MAX_KEPT_BODY: usize = 4 * 1024 * 1024;

/// Sign-in, registration, refresh and password resets answer with tokens, and have their own
/// protection (rate limits, reuse detection): they always run.
pub const NEVER_KEPT: &str = "/api/v1/auth/";

/// A record belongs to one principal and one key; a sealed body opens only in its own record.
#[derive(Clone, Copy)]
struct Record<'a> {
    principal: &'a str,
    key: &'a str,
}

impl Record<'_> {
    fn context(&self) -> Vec<u8> {
        format!("idempotency_keys {}\n{}", self.principal, self.key).into_bytes()
    }
}

#[derive(sqlx::FromRow)]
struct StoredAnswer {
    fingerprint: String,
    state: String,
    status: Option<i32>,
    headers: Option<Value>,
    body: Option<Vec<u8>>,
}

enum Claim {
    Claimed,
    Replay(Response),
}

fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn claim(
    pool: &PgPool,
    secrets: &SecretBox,
    record: &Record<'_>,
    print: &str,
) -> Result<Claim, ApiError> {
    let Record { principal, key } = *record;
    let claimed: Option<String> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys (principal, key, fingerprint, state) VALUES ($1, $2, $3, 'running')
         ON CONFLICT (principal, key) DO UPDATE
            SET fingerprint = EXCLUDED.fingerprint, state = 'running', status = NULL, headers = NULL,
                body = NULL, created_at = now()
          WHERE idempotency_keys.created_at < now() - interval '24 hours'
         RETURNING key",
    )
    .bind(principal)
    .bind(key)
    .bind(print)
    .fetch_optional(pool)
    .await?;
    if claimed.is_some() {
        return Ok(Claim::Claimed);
    }
    let row: Option<StoredAnswer> = sqlx::query_as(
        "SELECT fingerprint, state, status, headers, body FROM idempotency_keys WHERE principal = $1 AND key = $2",
    )
    .bind(principal)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    match row {
        // Released (a 5xx) between our insert and this read: let the client retry.
        None => Err(in_use()),
        Some(stored) if stored.fingerprint != print => Err(ApiError::IdempotencyKeyReused),
        Some(stored) if stored.state == "running" && stored.status.is_some() => {
            Err(ApiError::Conflict {
                code: "IDEMPOTENCY_KEY_IN_USE",
                detail: "the first request with this idempotency key may or may not have been \
                         applied (the database failed during its commit); check the resource \
                         rather than retrying it"
                    .into(),
            })
        }
        Some(stored) if stored.state == "running" => Err(in_use()),
        Some(stored) => {
            let body = match stored.body {
                Some(sealed) => match secrets.open(&sealed, &record.context()) {
                    Ok(body) => Some(body),
                    Err(e) => return Err(forget(pool, record, e).await),
                },
                None => None,
            };
            Ok(Claim::Replay(replay(stored.status, stored.headers, body)))
        }
    }
}

/// A kept answer that no longer opens (`SECRETS_KEY` changed) is dropped, like a 5xx: this
/// request fails, and a retry runs afresh rather than failing for the record's 24 hours.
async fn forget(pool: &PgPool, record: &Record<'_>, cause: OpenError) -> ApiError {
    if let Err(e) = sqlx::query("DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2")
        .bind(record.principal)
        .bind(record.key)
        .execute(pool)
        .await
    {
        tracing::error!(error = %e, "could not drop an unreadable idempotent answer");
    }
    ApiError::internal(cause)
}

fn in_use() -> ApiError {
    ApiError::Conflict {
        code: "IDEMPOTENCY_KEY_IN_USE",
        detail: "a request with this idempotency key is still being processed".into(),
    }
}

fn replay(status: Option<i32>, headers: Option<Value>, body: Option<Vec<u8>>) -> Response {
    let status = status
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (status, Body::from(body.unwrap_or_default())).into_response();
    if let Some(Value::Object(map)) = headers {
        for (name, value) in map {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::try_from(name.as_str()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response.headers_mut().insert(
        IDEMPOTENT_REPLAYED.clone(),
        HeaderValue::from_static("true"),
    );
    response
}

fn kept_headers(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in KEPT_HEADERS {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            map.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
    Value::Object(map)
}

/// What becomes of the record once the request has its answer.
enum Outcome {
    /// Kept claimed, marked by its status, so a retry is refused rather than run again.
    Unknown { status: i32 },
    /// A 5xx: released, so the client may retry.
    Released,
    Stored {
        status: i32,
        headers: Value,
        sealed: Vec<u8>,
    },
}

async fn record_outcome(
    pool: &PgPool,
    principal: &str,
    key: &str,
    outcome: &Outcome,
) -> Result<(), sqlx::Error> {
    let query = match outcome {
        Outcome::Unknown { status } => {
            sqlx::query("UPDATE idempotency_keys SET status = $3 WHERE principal = $1 AND key = $2")
                .bind(principal)
                .bind(key)
                .bind(status)
        }
        Outcome::Released => {
            sqlx::query("DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2")
                .bind(principal)
                .bind(key)
        }
        Outcome::Stored {
            status,
            headers,
            sealed,
        } => sqlx::query(
            "UPDATE idempotency_keys SET state = 'done', status = $3, headers = $4, body = $5
              WHERE principal = $1 AND key = $2",
        )
        .bind(principal)
        .bind(key)
        .bind(status)
        .bind(headers)
        .bind(sealed),
    };
    query.execute(pool).await.map(|_| ())
}

/// How long a record whose outcome could not be written keeps being retried: the database is
/// usually back within that, and until it is written the key answers 409 IN_USE.
const RECORD_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(600);

async fn finish(
    pool: &PgPool,
    secrets: &SecretBox,
    record: &Record<'_>,
    response: Response,
) -> Response {
    let Record { principal, key } = *record;
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, MAX_KEPT_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => Bytes::new(),
    };
    let status = i32::from(parts.status.as_u16());
    let outcome = if parts.extensions.get::<OutcomeUnknown>().is_some() {
        Outcome::Unknown { status }
    } else if parts.status.is_server_error() {
        Outcome::Released
    } else {
        Outcome::Stored {
            status,
            headers: kept_headers(&parts.headers),
            sealed: secrets.seal(&bytes, &record.context()),
        }
    };
    if let Err(e) = record_outcome(pool, principal, key, &outcome).await {
        // Typically the database went away with the request (a 5xx). Left as it is, the record
        // would stay `running` and refuse this key for 24 hours; keep writing it until the
        // database is back.
        tracing::warn!(error = %e, "could not record the idempotent answer; retrying");
        let (pool, principal, key) = (pool.clone(), principal.to_owned(), key.to_owned());
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut pause = std::time::Duration::from_millis(200);
            while started.elapsed() < RECORD_RETRY_FOR {
                tokio::time::sleep(pause).await;
                match record_outcome(&pool, &principal, &key, &outcome).await {
                    Ok(()) => return,
                    Err(_) => pause = (pause * 2).min(std::time::Duration::from_secs(10)),
                }
            }
            tracing::error!(
                "gave up recording an idempotent answer; the key stays in use for 24 hours"
            );
        });
    }
    Response::from_parts(parts, Body::from(bytes))
}

pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.uri().path().starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let Some(raw_key) = req.headers().get(&IDEMPOTENCY_KEY) else {
        return next.run(req).await;
    };
    let key = match raw_key.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) => k.to_owned(),
        _ => {
            return ApiError::Malformed {
                detail: "Idempotency-Key must be 1 to 255 characters".into(),
                errors: vec![FieldError::new(
                    "Idempotency-Key",
                    "LENGTH",
                    "must be 1 to 255 characters",
                )],
            }
            .into_response()
        }
    };
    if req.uri().path().starts_with(NEVER_KEPT) {
        return next.run(req).await;
    }
    // Credentials that do not verify get the answer any request would, before any record is
    // read or claimed.
    let caller = match req.extensions().get::<Authenticated>() {
        Some(caller) => caller.clone(),
        None => Authenticated::new(principal_from(req.headers(), &state).await),
    };
    if let Err(refused) = caller.result() {
        return refused.into_response();
    }
    let principal = match caller.principal() {
        Some(verified) => format!(
            "{}:{}",
            caller.principal_key(client_ip_of(&state, &req)),
            verified.role.as_str()
        ),
        None => caller.principal_key(client_ip_of(&state, &req)),
    };
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, state.config.body_limit_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::PayloadTooLarge.into_response(),
    };
    let print = fingerprint(&parts.method, parts.uri.path(), &bytes);
    let record = Record {
        principal: &principal,
        key: &key,
    };
    match claim(&state.pool, &state.secrets, &record, &print).await {
        Ok(Claim::Replay(response)) => return response,
        Ok(Claim::Claimed) => {}
        Err(e) => return e.into_response(),
    }
    let req = Request::from_parts(parts, Body::from(bytes));
    let pool = state.pool.clone();
    let secrets = state.secrets.clone();
    let task = tokio::spawn(async move {
        let response = next.run(req).await;
        let record = Record {
            principal: &principal,
            key: &key,
        };
        finish(&pool, &secrets, &record, response).await
    });
    match task.await {
        Ok(response) => response,
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// Deletes records older than 24 hours, hourly, until the process stops.
pub async fn sweep(pool: PgPool) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        interval.tick().await;
        match sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'",
        )
        .execute(&pool)
        .await
        {
            Ok(done) if done.rows_affected() > 0 => {
                tracing::info!(
                    deleted = done.rows_affected(),
                    "swept expired idempotency keys"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "idempotency sweep failed"),
        }
    }
}
