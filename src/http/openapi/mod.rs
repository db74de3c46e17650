//! The OpenAPI 3.1 document and the two endpoints that serve it, `/openapi.json` and `/docs`.
//!
//! The document is built from the annotations of exactly the routes the router registers:
//! `utoipa_axum::routes!` takes a handler only together with its `#[utoipa::path]`, whose method
//! and path are also what the route is registered under. [`conventions`] then adds what layers
//! do for every route (request ids, rate limits, idempotency keys) to every operation.

mod conventions;
mod envelopes;
mod problems;
pub mod schemas;

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, OpenApi as Document};
use utoipa::{Modify, OpenApi};

use crate::http::error::ApiError;
use crate::http::openapi::schemas::{
    BadRequest, Forbidden, InternalError, NotFound, PayloadTooLarge, PreconditionFailed, Problem,
    ProblemField, RateLimited, RequestTimeout, Unauthorized, Unavailable, UnsupportedMediaType,
    ValidationFailed,
};

/// The document's fixed parts; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chronicle",
        description = "An event-sourced REST backend. Success bodies are `{\"data\": ...}` \
            (lists add `pagination`); every error is an RFC 9457 problem document \
            (`application/problem+json`)."
    ),
    servers((url = "/")),
    tags(
        (name = "auth", description = "Registration, sign-in, token refresh and sign-out"),
        (name = "me", description = "The signed-in caller's own user and sessions"),
        (name = "users", description = "Users, their profiles, passwords and histories"),
        (name = "posts", description = "Posts: drafts, publishing, histories"),
        (name = "events", description = "The global event log (admins)"),
        (name = "api-keys", description = "API keys for services (admins)"),
        (name = "operations", description = "Health, readiness and this documentation"),
    ),
    components(
        schemas(Problem, ProblemField),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            PreconditionFailed,
            PayloadTooLarge,
            UnsupportedMediaType,
            ValidationFailed,
            RequestTimeout,
            RateLimited,
            Unavailable,
            InternalError
        )
    ),
    paths(metrics),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// `bearer` (a JWT access token, or an API key sent as a bearer token) and `api_key`
/// (`X-API-Key`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Components::new);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from /auth/login, /auth/register or /auth/refresh \
                         (15 min), or an API key (`sk_live_...`). Access tokens are JWTs \
                         handled as RFC8725 (JWT best current practices) asks: one fixed \
                         algorithm (HS256; `none` and any other are refused), and `exp`, \
                         `iss` and `aud` are always checked.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key (`sk_live_...`); it acts as the admin who created it, with its role.",
            ))),
        );
    }
}

/// Completes the document the router assembled: title, version, and the edge's conventions.
pub fn finish(mut document: Document) -> Document {
    document.info.title = "Chronicle".into();
    document.info.version = env!("CARGO_PKG_VERSION").into();
    // The one server is the public API itself (OWASP API9: say who each server is for).
    for server in document.servers.iter_mut().flatten() {
        server
            .extensions
            .get_or_insert_with(Default::default)
            .insert("x-internal".to_owned(), serde_json::Value::Bool(false));
    }
    conventions::apply(&mut document);
    document
}

/// The served document, serialised once.
fn document_json() -> Option<&'static Bytes> {
    static DOCUMENT: OnceLock<Option<Bytes>> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| match crate::http::openapi().to_json() {
            Ok(json) => Some(Bytes::from(json)),
            Err(error) => {
                tracing::error!(%error, "the OpenAPI document does not serialise");
                None
            }
        })
        .as_ref()
}

/// The OpenAPI document.
///
/// OpenAPI 3.1, generated from the routes this server registers.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object,
            content_type = "application/json"),
    )
)]
pub async fn openapi_json() -> Result<Response, ApiError> {
    let json = document_json().ok_or_else(|| ApiError::internal("no OpenAPI document"))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response())
}

/// The API documentation page.
///
/// A self-contained HTML page (no external assets) that fetches `/openapi.json` and lists the
/// operations by tag.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    responses(
        (status = 200, description = "The documentation page", body = String,
            content_type = "text/html; charset=utf-8"),
    )
)]
pub async fn docs() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("docs.html"),
    )
        .into_response()
}

/// Prometheus metrics.
///
/// Requests by route template and status, latencies, requests in flight, open connections,
/// projection and relay lag, webhook deliveries and emails by outcome. Every family is present
/// from the first scrape, and a scrape costs no database query. With `METRICS_TOKEN` set, the
/// request must carry `Authorization: Bearer <METRICS_TOKEN>`. [`crate::http::layers`]
/// registers this route next to the layer that measures the others, so it is documented here;
/// the API tests check that the route and this operation agree.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 401, description = "UNAUTHORIZED: `METRICS_TOKEN` is set and the request did not carry it",
            body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate"))),
        (status = 503, description = "SERVICE_UNAVAILABLE: the metrics recorder is unavailable",
            body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn metrics() {}
