//! Rate limits on `/api/v1`: a budget per principal (user, API key, else client IP), and a
//! stricter one per client IP on sign-in, registration and refresh, which count only against
//! that stricter budget. Counters live in this instance's memory (GCRA via `governor`), so
//! behind a load balancer each instance enforces its own share: documented in the README.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

use crate::auth::api_keys::looks_like_api_key;
use crate::auth::tokens::sha256_hex;
use crate::config::Config;
use crate::http::error::ApiError;
use crate::state::AppState;

type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

struct Budget {
    limiter: KeyedLimiter,
    per_minute: u32,
}

impl Budget {
    fn new(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            per_minute,
        }
    }

    /// Spends one request of `key`'s budget; the headers describe what is left either way.
    fn spend(&self, key: &str) -> Decision {
        let refill = Duration::from_secs(60) / self.per_minute;
        match self.limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.per_minute.saturating_sub(remaining);
                Decision {
                    allowed: true,
                    limit: self.per_minute,
                    remaining,
                    reset_secs: (refill * used).as_secs_f64().ceil() as u64,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Decision {
                    allowed: false,
                    limit: self.per_minute,
                    remaining: 0,
                    reset_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            }
        }
    }
}

struct Decision {
    allowed: bool,
    limit: u32,
    remaining: u32,
    reset_secs: u64,
}

pub struct RateLimits {
    general: Budget,
    auth: Budget,
    trusted_proxies: Vec<IpNet>,
}

impl RateLimits {
    pub fn new(config: &Config) -> Self {
        let trusted_proxies = config
            .trusted_proxies
            .iter()
            .filter_map(|entry| {
                entry
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
            })
            .collect();
        Self {
            general: Budget::new(config.rate_limit_per_minute),
            auth: Budget::new(config.auth_rate_limit_per_minute),
            trusted_proxies,
        }
    }

    fn trusted(&self, ip: &IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }

    /// The socket peer, unless it is a trusted proxy: then the right-most `X-Forwarded-For`
    /// entry that is not one. Entries left of that are the client's own claims and are never
    /// believed, so sending `X-Forwarded-For` cannot buy a fresh budget.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(&peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|entry| entry.trim().parse().ok())
            .collect();
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !self.trusted(ip))
            .unwrap_or(peer)
    }

    /// Forgets idle keys; run now and then so memory follows active clients only.
    pub fn prune(&self) {
        self.general.limiter.retain_recent();
        self.auth.limiter.retain_recent();
    }
}

/// Who a request counts against. Credentials are checked cheaply (a JWT's signature, a key's
/// hash); anything that does not verify counts against the client's IP. Idempotency keys are
/// scoped by the same principal.
pub fn principal_key(state: &AppState, headers: &HeaderMap, ip: IpAddr) -> String {
    let credential = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
        });
    match credential {
        Some(key) if looks_like_api_key(key) => format!("key:{}", sha256_hex(key)),
        Some(token) => match state.jwt.verify(token) {
            Ok(claims) => format!("user:{}", claims.sub),
            Err(_) => format!("ip:{ip}"),
        },
        None => format!("ip:{ip}"),
    }
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
    let decision = if AUTH_PATHS.contains(&path) {
        limits.auth.spend(&format!("ip:{ip}"))
    } else {
        limits
            .general
            .spend(&principal_key(&state, req.headers(), ip))
    };
    let mut response = if decision.allowed {
        next.run(req).await
    } else {
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
