//! Extractors: typed, validated input and the authenticated principal, so handlers never parse
//! headers or bodies by hand and their signatures say what they need.

use std::str::FromStr;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{self, HeaderMap};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::auth::principal::Credential;
use crate::auth::Principal;
use crate::commands::CommandMeta;
use crate::http::authenticate::{principal_from, Authenticated};
use crate::http::error::{ApiError, FieldError};
use crate::http::middleware::RequestId;
use crate::http::parse::Parse;
use crate::state::AppState;
use aggregates::UserId;

/// A signed-in caller. No credentials or bad ones are a 401 (`TOKEN_EXPIRED` for an expired
/// access token).
pub struct AuthUser(pub Principal);

/// A caller who may be anonymous; bad credentials are still a 401, never silently anonymous.
pub struct MaybeAuthUser(pub Option<Principal>);

/// The principal the authentication layer resolved for this request, or (outside `/api/v1`,
/// where that layer does not run) resolved now.
async fn principal_of(parts: &Parts, state: &AppState) -> Result<Option<Principal>, ApiError> {
    match parts.extensions.get::<Authenticated>() {
        Some(resolved) => resolved.result(),
        None => principal_from(&parts.headers, state).await,
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        principal_of(parts, state)
            .await?
            .map(AuthUser)
            .ok_or_else(ApiError::unauthorized)
    }
}

impl FromRequestParts<AppState> for MaybeAuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        principal_of(parts, state).await.map(MaybeAuthUser)
    }
}

/// An admin caller; anyone else signed in gets 403.
pub struct AdminUser(pub Principal);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AuthUser(principal) = AuthUser::from_request_parts(parts, state).await?;
        if principal.is_admin() {
            Ok(AdminUser(principal))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// A person signed in with a session. An API key is refused with 403: a key never manages its
/// creator's sign-ins (`/auth/logout*`, `/me/sessions*`), so a leaked key cannot read them or
/// lock its owner out.
pub struct SessionUser(pub Principal);

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AuthUser(principal) = AuthUser::from_request_parts(parts, state).await?;
        match principal.credential {
            Credential::Session(_) => Ok(SessionUser(principal)),
            Credential::ApiKey(_) => Err(ApiError::Forbidden),
        }
    }
}

/// A caller who may manage the account named by the path's `{id}`: with an API key, that is
/// never the key's creator (no deactivating them or changing their password). What else the
/// caller may do to the account the aggregate decides.
pub struct AccountManager(pub Principal);

impl FromRequestParts<AppState> for AccountManager {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AuthUser(principal) = AuthUser::from_request_parts(parts, state).await?;
        if matches!(principal.credential, Credential::ApiKey(_)) {
            // A malformed id names no account; `PathId` answers it with 404.
            let target = Path::<String>::from_request_parts(parts, state)
                .await
                .ok()
                .and_then(|Path(raw)| raw.parse::<UserId>().ok());
            if target == Some(principal.user_id) {
                return Err(ApiError::Forbidden);
            }
        }
        Ok(AccountManager(principal))
    }
}

/// The request's correlation id, for the metadata of the events it appends.
pub struct RequestMeta(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.to_string())
            .unwrap_or_default();
        Ok(RequestMeta(id))
    }
}

impl RequestMeta {
    /// The metadata of the events a command of this request appends, acting for `actor`.
    pub fn command_meta(&self, actor: Option<UserId>) -> CommandMeta {
        CommandMeta {
            correlation_id: self.0.clone(),
            actor_id: actor,
        }
    }
}

/// `If-Match: "3"` (or `W/"3"`): the version a write expects. A value that is not one of our
/// ETags can never match, so it is a 412 rather than being ignored.
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(raw) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let raw = raw.to_str().unwrap_or_default().trim();
        if raw == "*" {
            return Ok(IfMatch(None));
        }
        let unquoted = raw.trim_start_matches("W/").trim_matches('"');
        unquoted
            .parse()
            .map(|v| IfMatch(Some(v)))
            .map_err(|_| ApiError::PreconditionFailed {
                detail: "If-Match does not name a version of this resource".into(),
            })
    }
}

/// An id from the path; a malformed one is a 404, since no such resource can exist.
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: FromStr + Send> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        raw.parse().map(PathId).map_err(|_| ApiError::NotFound)
    }
}

/// A JSON body, deserialised strictly and parsed into domain values: 415 without a JSON
/// content type, 400 for bytes that are not JSON, 422 with one entry per field for a missing
/// field, a wrong type, an unknown field or a value the domain refuses.
pub struct Parsed<T: Parse>(pub T::Output);

impl<S, T> FromRequest<S> for Parsed<T>
where
    S: Send + Sync,
    T: Parse,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::Malformed {
                        detail: "the request body could not be read".into(),
                        errors: Vec::new(),
                    }
                }
            })?;
        let body: T = parse_json(&bytes)?;
        body.parse().map(Parsed).map_err(ApiError::validation)
    }
}

fn has_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == "application"
                && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"))
        })
}

/// Syntax errors are 400; anything that is JSON but not the expected shape is a 422 naming the
/// field by its JSON path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let document = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(document) => document,
        Err(e) => {
            return Err(ApiError::Malformed {
                detail: format!("the body is not valid JSON: {e}"),
                errors: Vec::new(),
            })
        }
    };
    let mut with_nul = Vec::new();
    nul_fields(&document, "", &mut with_nul);
    if !with_nul.is_empty() {
        return Err(ApiError::validation(
            with_nul
                .into_iter()
                .map(|field| FieldError::new(field, "FORMAT", "must not contain the NUL character"))
                .collect(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = inner.split(" at line ").next().unwrap_or(&inner).to_owned();
        // serde_path_to_error's path already ends at an unknown field, but stops at the parent
        // of a missing one.
        let (field, code) = if message.starts_with("unknown field `") {
            (path, "UNKNOWN_FIELD")
        } else if let Some(missing) = message.strip_prefix("missing field `") {
            let name = missing.split('`').next().unwrap_or_default();
            (join_path(&path, name), "REQUIRED")
        } else {
            (if path == "." { String::new() } else { path }, "TYPE")
        };
        ApiError::field(&field, code, &message)
    })
}

/// Postgres text and jsonb cannot hold U+0000: a string with it is refused here, naming the
/// field, instead of failing at the database with a 500.
fn nul_fields(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) if text.contains('\0') => out.push(path.to_owned()),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nul_fields(item, &format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(fields) => {
            for (name, item) in fields {
                nul_fields(item, &join_path(path, name), out);
            }
        }
        _ => {}
    }
}

fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() || parent == "." {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}
