//! The tower layers every request crosses, in one place so their order is visible.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::http::middleware;
use crate::state::AppState;

/// Layers, outermost first: request context (id, span, problem rendering, security headers),
/// panic catch, timeout, body limit, then the routes. The body limit sits before any extractor,
/// so an oversized body is a 413 for anyone, signed in or not.
pub fn apply(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.config.body_limit_bytes;
    let timeout = state.config.request_timeout;
    routes
        .with_state(state)
        // `Router::layer` wraps what came before it: the last layer here is the outermost.
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            axum::response::IntoResponse::into_response(StatusCode::INTERNAL_SERVER_ERROR)
        }))
        .layer(axum::middleware::from_fn(middleware::request_context))
}
