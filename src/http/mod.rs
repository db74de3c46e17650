//! The HTTP edge: the router, its layers, and one module per URL collection.

pub mod api_keys;
pub mod auth;
pub mod consistency;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod listing;
pub mod me;
pub mod middleware;
pub mod posts;
pub mod respond;
pub mod sessions;
pub mod users;
pub mod validate;
pub mod views;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::http::error::ApiError;
use crate::state::AppState;

/// Layers, outermost first: request context (id, span, problem rendering, security headers),
/// panic catch, timeout, body limit, then the routes. The body limit sits before any extractor,
/// so an oversized body is a 413 for anyone, signed in or not.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit_bytes;
    let timeout = state.config.request_timeout;
    let api = Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(posts::router())
        .merge(me::router())
        .merge(sessions::router())
        .merge(api_keys::router())
        .merge(events::router());
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .nest("/api/v1", api)
        .fallback(not_found)
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

async fn not_found() -> ApiError {
    ApiError::NotFound
}
