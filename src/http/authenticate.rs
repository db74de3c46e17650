//! Resolves the caller of each `/api/v1` request once, before the rate limit and idempotency
//! layers, so that both key on a verified principal and never on a header's unchecked claim.
//!
//! The outcome travels in the request's extensions; the extractors read it from there, so a
//! request costs one credential check however many layers look at it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::principal::Credential;
use crate::auth::Principal;
use crate::http::error::ApiError;
use crate::http::extract::principal_from;
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
            None => crate::http::rate_limit::ip_budget_key(ip),
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
