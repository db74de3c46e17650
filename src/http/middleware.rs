//! The request context every request crosses: its id, its span and log line, and the one place
//! where problem documents are written.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::Instrument;

use crate::http::error::Problem;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: the caller's when it is well-formed, else a fresh one. It is the problem's
/// `trace_id`, a field of every log line of the request, and the `correlation_id` of its events.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

fn is_acceptable_request_id(raw: &str) -> bool {
    (1..=128).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub async fn request_context(mut req: Request, next: Next) -> Response {
    let request_id: Arc<str> = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable_request_id(v))
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(uuid::Uuid::now_v7().to_string()));
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    req.extensions_mut().insert(RequestId(request_id.clone()));

    let span = tracing::info_span!("request", request_id = %request_id, %method, %path);
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;

    let problem = response.extensions_mut().remove::<Problem>().or_else(|| {
        {
            let status = response.status();
            // A handler's own JSON error body (the readiness report on 503) is kept; bodies
            // from outside our handlers (empty, or plain text from a rejection) become problems.
            let has_json_body = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|ct| {
                    ct.as_bytes().starts_with(b"application/problem+json")
                        || ct.as_bytes().starts_with(b"application/json")
                });
            (status.is_client_error() || status.is_server_error()) && !has_json_body
        }
        .then(|| Problem::for_status(response.status()))
    });
    if let Some(problem) = problem {
        response = render_problem(response, &problem, &path, &request_id);
    }

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID.clone(), value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if path.starts_with("/api/v1/auth") || path.starts_with("/api/v1/me") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }

    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(status, latency_ms, "request completed"));
    response
}

/// Replaces the body with the problem document, keeping the status and the headers the error
/// set (`Allow`, `WWW-Authenticate`, `Retry-After`).
fn render_problem(
    response: Response,
    problem: &Problem,
    instance: &str,
    trace_id: &str,
) -> Response {
    let (mut parts, _) = response.into_parts();
    let mut body = json!({
        "type": problem.type_uri(),
        "title": problem.title,
        "status": problem.status.as_u16(),
        "detail": problem.detail,
        "instance": instance,
        "code": problem.code,
        "trace_id": trace_id,
    });
    if !problem.errors.is_empty() {
        body["errors"] = json!(problem.errors);
    }
    let bytes = match serde_json::to_vec(&body) {
        Ok(bytes) => bytes,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::is_acceptable_request_id;

    #[test]
    fn request_ids_are_limited_to_a_safe_alphabet_and_length() {
        assert!(is_acceptable_request_id("abc-123_X.y"));
        assert!(!is_acceptable_request_id(""));
        assert!(!is_acceptable_request_id(&"a".repeat(129)));
        assert!(!is_acceptable_request_id("with space"));
        assert!(!is_acceptable_request_id("new\nline"));
    }
}
