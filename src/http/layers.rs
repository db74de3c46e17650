//! The tower layers every request crosses, in one place so their order is visible.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tower::util::MapResponseLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::http::{authenticate, idempotency, metrics, middleware, rate_limit};
use crate::state::AppState;

/// Layers, outermost first: request context (id, span, problem rendering, security headers),
/// the activity counters, panic catch, timeout, body limit, CORS, compression, authentication,
/// rate limit, idempotency, then the routes (each timed by its template). The body limit and
/// the rate limit come before any extractor, so they apply to anyone, signed in or not.
/// Authentication comes before the rate limit and idempotency so both key on a verified
/// principal: a made-up API key counts against its IP, and a stored answer is replayed only to
/// a caller who still verifies.
pub fn apply(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.config.body_limit_bytes;
    let timeout = state.config.request_timeout;
    let cors = cors(&state.config.cors_allowed_origins);
    let activity = state.activity.clone();
    let _ = crate::recorder::handle();
    let routes = routes.route("/metrics", get(metrics::render));
    let routes = if crate::telemetry::propagation::enabled() {
        routes.route_layer(from_fn(middleware::name_after_route))
    } else {
        routes
    };
    let router = routes
        .route_layer(from_fn(metrics::track))
        .layer(from_fn_with_state(state.clone(), idempotency::idempotency))
        .layer(from_fn_with_state(state.clone(), rate_limit::rate_limit))
        .layer(from_fn_with_state(
            state.clone(),
            authenticate::authenticate,
        ))
        .with_state(state)
        // `Router::layer` wraps what came before it: the last layer here is the outermost.
        .layer(CompressionLayer::new().gzip(true).br(true));
    let router = match cors {
        Some(cors) => router.layer(cors).layer(from_fn(preflight_is_no_content)),
        None => router,
    };
    router
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
        // Outside the timeout and the panic catch, so their 408s and 500s are counted too.
        .layer(MapResponseLayer::new(move |response: Response| {
            activity.count(response.status());
            response
        }))
        .layer(from_fn(middleware::request_context))
}

/// CORS for the configured origins only; with none configured, no CORS headers at all.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let names = |list: &[&'static str]| {
        list.iter()
            .map(|h| HeaderName::from_static(h))
            .collect::<Vec<_>>()
    };
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(names(&[
                "authorization",
                "content-type",
                "idempotency-key",
                "if-match",
                "if-none-match",
                "x-request-id",
                "x-api-key",
                "prefer",
                "chronicle-min-position",
            ]))
            .expose_headers(names(&[
                "etag",
                "location",
                "x-request-id",
                "ratelimit-limit",
                "ratelimit-remaining",
                "ratelimit-reset",
                "retry-after",
                "chronicle-position",
            ]))
            .max_age(Duration::from_secs(86_400)),
    )
}

/// API.md answers a preflight with 204 (tower-http says 200), and a preflight from an origin
/// that is not allowed gets no `Access-Control-Allow-*` header at all.
async fn preflight_is_no_content(req: Request, next: Next) -> Response {
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = next.run(req).await;
    if !preflight {
        return response;
    }
    if !response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        let names: Vec<HeaderName> = response
            .headers()
            .keys()
            .filter(|n| n.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in names {
            response.headers_mut().remove(name);
        }
    }
    if response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}
