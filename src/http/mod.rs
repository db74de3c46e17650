//! The HTTP edge: the router, its layers, and one module per URL collection.

pub mod admin;
pub mod analytics;
pub mod api_keys;
pub mod auth;
pub mod authenticate;
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
pub mod openapi;
pub mod parse;
pub mod password_reset;
pub mod posts;
pub mod query;
pub mod rate_limit;
pub mod respond;
pub mod sessions;
pub mod users;
pub mod views;
pub mod webhooks;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::error::ApiError;
use crate::state::AppState;

/// The whole HTTP application: [`routes`] wrapped in [`layers::apply`].
pub fn router(state: AppState) -> Router {
    layers::apply(routes(), state)
}

/// Every route the server answers, but `/metrics`, which [`layers::apply`] adds.
pub fn routes() -> Router<AppState> {
    let (routes, _) = documented_routes().split_for_parts();
    routes.fallback(not_found)
}

/// The OpenAPI document of every route the server answers, served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, document) = documented_routes().split_for_parts();
    openapi::finish(document)
}

/// The routes with their documentation: `routes!` registers a handler under the method and
/// path of its `#[utoipa::path]`, so a route cannot exist without its operation in the document.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(openapi::docs))
        .merge(auth::router())
        .merge(password_reset::router())
        .merge(users::router())
        .merge(posts::router())
        .merge(me::router())
        .merge(sessions::router())
        .merge(api_keys::router())
        .merge(events::router())
        .merge(webhooks::router())
        .merge(analytics::router())
        .merge(admin::router())
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
