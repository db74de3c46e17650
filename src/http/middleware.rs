//! The request context every request crosses: its id, its span and log line, and the one place
//! where problem documents are written.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::http::error::Problem;
use crate::telemetry::propagation;
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

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
    req.extensions_mut().insert(RequestId(request_id.clone()));

    let span = request_span(&req, &request_id);
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
    if propagation::enabled() {
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "error");
        }
    }
    span.in_scope(|| tracing::info!(status, latency_ms, "request completed"));
    response
}

/// The request's span. With traces exported it is an OpenTelemetry server span named after the
/// route (see [`name_after_route`]) and continues the caller's `traceparent`; without, it only
/// gives log lines their request id, method and path.
fn request_span(req: &Request, request_id: &str) -> Span {
    let method = req.method();
    let path = req.uri().path();
    if !propagation::enabled() {
        return tracing::info_span!("request", request_id = %request_id, %method, %path);
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = Empty,
        request_id = %request_id,
        %method,
        %path,
        http.request.method = %method,
        url.path = %path,
        http.route = Empty,
        http.response.status_code = Empty,
    );
    let traceparent = req
        .headers()
        .get(propagation::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    propagation::follow(&span, traceparent);
    span
}

/// Names the request's span `<method> <route template>` once routing has matched (installed
/// only while traces are exported).
pub async fn name_after_route(req: Request, next: Next) -> Response {
    if let Some(route) = req.extensions().get::<MatchedPath>() {
        let span = Span::current();
        span.record("http.route", route.as_str());
        // The OpenTelemetry span has started by now, and `otel.name` renames only spans that
        // have not.
        span.context()
            .span()
            .update_name(format!("{} {}", req.method(), route.as_str()));
    }
    next.run(req).await
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
