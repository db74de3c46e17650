//! Rate limits on `/api/v1`: a budget per verified principal (user, API key, else client IP),
//! and a stricter one per client IP on sign-in, registration and refresh, which count only
//! against that stricter budget. Counters live in this instance's memory (GCRA via
//! `governor`), so behind a load balancer each instance enforces its own share: documented in
//! the README.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::authenticate::Authenticated;
use crate::http::error::ApiError;
use crate::rate_limits::ip_budget_key;
use crate::state::AppState;

/// Who a request counts against: the principal the authentication layer verified (a user, or
/// an API key by its id), else the client's IP. Credentials that do not verify, a made-up
/// `sk_live_` value included, count against the IP, so inventing them buys no fresh budget.
pub fn principal_key(req: &Request, ip: IpAddr) -> String {
    req.extensions()
        .get::<Authenticated>()
        .map_or_else(|| ip_budget_key(ip), |auth| auth.principal_key(ip))
}

/// The request's client IP under the `TRUSTED_PROXIES` rule.
pub fn client_ip_of(state: &AppState, req: &Request) -> IpAddr {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    state.rate_limits.client_ip(peer, req.headers())
}

const AUTH_PATHS: [&str; 5] = [
    "/api/v1/auth/login",
    "/api/v1/auth/register",
    "/api/v1/auth/refresh",
    // Unauthenticated and able to send email: the strict per-IP budget applies.
    "/api/v1/auth/password-reset",
    "/api/v1/auth/password-reset/confirm",
];

pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !path.starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let limits = &state.rate_limits;
    let ip = client_ip_of(&state, &req);
    let (group, decision) = if AUTH_PATHS.contains(&path) {
        ("auth", limits.spend_auth(&ip_budget_key(ip)))
    } else {
        ("api", limits.spend_general(&principal_key(&req, ip)))
    };
    let mut response = if decision.allowed {
        next.run(req).await
    } else {
        metrics::counter!("chronicle_rate_limit_rejections_total", "group" => group).increment(1);
        ApiError::RateLimited {
            retry_after_secs: decision.reset_secs,
        }
        .into_response()
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("limit", decision.limit as u64),
        ("remaining", decision.remaining as u64),
        ("reset", decision.reset_secs),
    ] {
        for prefix in ["ratelimit-", "x-ratelimit-"] {
            if let Ok(header) = HeaderName::try_from(format!("{prefix}{name}")) {
                headers.insert(header, HeaderValue::from(value));
            }
        }
    }
    response
}
