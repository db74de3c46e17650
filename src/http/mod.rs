//! The HTTP edge: the router, its layers, and one module per URL collection.

pub mod api_keys;
pub mod auth;
pub mod consistency;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod layers;
pub mod listing;
pub mod me;
pub mod metrics;
pub mod middleware;
pub mod posts;
pub mod rate_limit;
pub mod respond;
pub mod sessions;
pub mod users;
pub mod validate;
pub mod views;
pub mod webhooks;

use axum::routing::get;
use axum::Router;

use crate::http::error::ApiError;
use crate::state::AppState;

/// The whole HTTP application: [`routes`] wrapped in [`layers::apply`].
pub fn router(state: AppState) -> Router {
    layers::apply(routes(), state)
}

/// Every route the server answers.
pub fn routes() -> Router<AppState> {
    let api = Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(posts::router())
        .merge(me::router())
        .merge(sessions::router())
        .merge(api_keys::router())
        .merge(events::router())
        .merge(webhooks::router());
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .nest("/api/v1", api)
        .fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
