//! The operator page at `/admin`: a static page and its script, which sign in with the API's own
//! tokens and call `/api/v1` like any client. The server renders nothing per user, so the page
//! needs no session of its own and cannot show more than the API would.

use axum::http::header;
use axum::response::{IntoResponse, Response};

// Only this origin's own script and style, no inline code: data from the API that reached the
// DOM as markup could still not run.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            // Revalidated each time, so an upgraded server never runs against an old script.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The operator page.
///
/// Sign in as an admin to see the projectors' status and lag, charts of the last minutes'
/// throughput and lag, recent failures with their request and trace ids, start a rebuild and
/// watch its progress, follow the event log, and see webhook endpoints with their recent
/// deliveries (and retry one). A static page that calls this API; no data is rendered by the server.
#[utoipa::path(
    get,
    path = "/admin",
    tag = "operations",
    responses(
        (status = 200, description = "The operator page", body = String,
            content_type = "text/html; charset=utf-8"),
    )
)]
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", include_str!("page.html"))
}

/// The operator page's script.
#[utoipa::path(
    get,
    path = "/admin/app.js",
    tag = "operations",
    responses(
        (status = 200, description = "JavaScript", body = String,
            content_type = "text/javascript; charset=utf-8"),
    )
)]
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("app.js"))
}

/// The operator page's charts of recent activity and its list of failures.
#[utoipa::path(
    get,
    path = "/admin/charts.js",
    tag = "operations",
    responses(
        (status = 200, description = "JavaScript", body = String,
            content_type = "text/javascript; charset=utf-8"),
    )
)]
pub async fn charts() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("charts.js"))
}

/// The operator page's style sheet.
#[utoipa::path(
    get,
    path = "/admin/app.css",
    tag = "operations",
    responses(
        (status = 200, description = "CSS", body = String, content_type = "text/css; charset=utf-8"),
    )
)]
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("app.css"))
}
