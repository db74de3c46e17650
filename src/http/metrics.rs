//! `GET /metrics`: Prometheus text of every family `recorder` keeps, and the `track`
//! middleware that times each request under the OpenTelemetry HTTP server conventions.
//!
//! A scrape asks nothing of the database (`recorder::scrape` samples memory only), and every
//! family is registered at start (`recorder::families`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::error::ApiError;
use crate::recorder::handle;
use crate::state::AppState;

/// Counts and times matched requests by their route template, never the raw path, so ids do
/// not explode the label space.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let active = metrics::gauge!("http_server_active_requests");
    active.increment(1.0);
    let started = Instant::now();

    let response = next.run(req).await;

    active.decrement(1.0);
    let status = response.status().as_u16().to_string();
    metrics::histogram!("http_server_request_duration_seconds", "http_request_method" => method, "http_route" => route, "http_response_status_code" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The method as the conventions spell it, `_OTHER` for one outside the known set, so a client
/// cannot add label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in constant time
/// (the digests hide the token's length too).
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, credentials)| credentials.trim());
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(token.as_bytes());
    given.ct_eq(&expected).into()
}

/// Samples what is read rather than counted, then renders everything.
pub async fn render(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics_token {
        if !bearer_matches(&headers, token) {
            return ApiError::unauthorized().into_response();
        }
    }
    let Some(handle) = handle() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response();
    };
    crate::recorder::scrape::sample(&state);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            headers
        };

        assert!(bearer_matches(&with("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(&with("bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(&with("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(&with("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }
}
