//! Resolves the caller of each `/api/v1` request once, before the rate limit and idempotency
//! layers, so that both key on a verified principal and never on a header's unchecked claim.
//!
//! The outcome travels in the request's extensions; the extractors read it from there, so a
//! request costs one credential check however many layers look at it.

use std::sync::Arc;

use aggregates::{Role, SessionId, UserId};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::api_keys;
use crate::auth::jwt::TokenError;
use crate::auth::principal::Credential;
use crate::auth::Principal;
use crate::http::error::ApiError;
use crate::state::AppState;

/// The caller: anonymous, a verified principal, or credentials that do not verify (which is
/// a 401 wherever credentials matter, never silently anonymous).
#[derive(Clone)]
pub struct Authenticated(Result<Option<Principal>, Refusal>);

#[derive(Clone)]
enum Refusal {
    Unauthorized {
        code: &'static str,
        detail: &'static str,
    },
    /// The check itself failed (e.g. the database is unreachable).
    Failed(Arc<str>),
}

impl Authenticated {
    pub fn new(result: Result<Option<Principal>, ApiError>) -> Self {
        Self(result.map_err(|e| match e {
            ApiError::Unauthorized { code, detail } => Refusal::Unauthorized { code, detail },
            other => Refusal::Failed(Arc::from(other.to_string())),
        }))
    }

    pub fn result(&self) -> Result<Option<Principal>, ApiError> {
        match &self.0 {
            Ok(principal) => Ok(*principal),
            Err(Refusal::Unauthorized { code, detail }) => {
                Err(ApiError::Unauthorized { code, detail })
            }
            Err(Refusal::Failed(reason)) => Err(ApiError::internal(reason.to_string())),
        }
    }

    /// The verified principal, if any.
    pub fn principal(&self) -> Option<&Principal> {
        self.0.as_ref().ok().and_then(Option::as_ref)
    }

    /// Whom a request counts against and scopes idempotency keys by: the user or the API key
    /// (by id, so a made-up key is no principal), else the client's IP.
    pub fn principal_key(&self, ip: std::net::IpAddr) -> String {
        match self.principal() {
            Some(Principal {
                credential: Credential::ApiKey(key),
                ..
            }) => format!("key:{key}"),
            Some(principal) => format!("user:{}", principal.user_id),
            None => crate::rate_limits::ip_budget_key(ip),
        }
    }
}

pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/api/v1/") {
        let resolved = Authenticated::new(principal_from(req.headers(), &state).await);
        req.extensions_mut().insert(resolved);
    }
    next.run(req).await
}

fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::unauthorized())?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::unauthorized()),
    }
}

fn revoked() -> ApiError {
    ApiError::Unauthorized {
        code: "UNAUTHORIZED",
        detail: "the session has been revoked; sign in again",
    }
}

/// The caller behind `X-API-Key`, or `Authorization: Bearer` with an API key or an access
/// token. Access tokens are checked against this instance's revocation list, so no database
/// round trip is needed for them; API keys take one indexed lookup, so revoking one is instant.
pub(crate) async fn principal_from(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Option<Principal>, ApiError> {
    let api_key_header = match headers.get("x-api-key") {
        Some(value) => Some(value.to_str().map_err(|_| ApiError::unauthorized())?.trim()),
        None => None,
    };
    let credential = match api_key_header {
        Some(key) => Some(key),
        None => bearer_token(headers)?,
    };
    let Some(credential) = credential else {
        return Ok(None);
    };
    if api_key_header.is_some() || api_keys::looks_like_api_key(credential) {
        let key = api_keys::authenticate(&state.pool, credential)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if !key.creator_active() || state.revocations.is_user_blocked(&key.created_by) {
            return Err(revoked());
        }
        // The revocations know of a demotion before the read model does.
        let role = match state.revocations.current_role(&key.created_by) {
            Some(Role::User) => Role::User,
            _ => key.effective_role(),
        };
        return Ok(Some(Principal {
            user_id: UserId::from_uuid(key.created_by),
            role,
            credential: Credential::ApiKey(key.id),
        }));
    }

    let claims = state.jwt.verify(credential).map_err(|e| match e {
        TokenError::Expired => ApiError::Unauthorized {
            code: "TOKEN_EXPIRED",
            detail: "the access token has expired; refresh it",
        },
        TokenError::Invalid => ApiError::unauthorized(),
    })?;
    if state.revocations.is_session_revoked(&claims.sid)
        || state.revocations.is_user_blocked(&claims.sub)
    {
        return Err(revoked());
    }
    Ok(Some(Principal {
        user_id: UserId::from_uuid(claims.sub),
        role: state
            .revocations
            .current_role(&claims.sub)
            .unwrap_or(claims.role),
        credential: Credential::Session(SessionId::from_uuid(claims.sid)),
    }))
}
