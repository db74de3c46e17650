//! Success answers, one type for all of them: the `{"data": ...}` envelope (with `pagination`
//! for a page of a list), or no body for a 204, and the headers a resource carries.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use projections::Position;
use serde::Serialize;

use crate::http::openapi::schemas::Pagination;

pub static CHRONICLE_POSITION: HeaderName = HeaderName::from_static("chronicle-position");

pub struct Answer<T> {
    status: StatusCode,
    body: T,
    pagination: Option<Pagination>,
    etag: Option<u64>,
    location: Option<String>,
    position: Option<Position>,
    eventual: bool,
}

#[derive(Serialize)]
struct Envelope<T> {
    data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Pagination>,
}

/// What a 202 says: the work is queued.
#[derive(Serialize)]
pub struct Accepted {
    status: &'static str,
}

impl Answer<()> {
    /// A 204: no body, but still the headers saying where the command's events landed.
    pub fn no_content() -> Self {
        Self::with_status(StatusCode::NO_CONTENT, ())
    }
}

impl Answer<Accepted> {
    /// A 202 `{"data": {"status": "accepted"}}`.
    pub fn accepted() -> Self {
        Self::with_status(StatusCode::ACCEPTED, Accepted { status: "accepted" })
    }
}

impl<T: Serialize> Answer<T> {
    pub fn ok(body: T) -> Self {
        Self::with_status(StatusCode::OK, body)
    }

    fn with_status(status: StatusCode, body: T) -> Self {
        Self {
            status,
            body,
            pagination: None,
            etag: None,
            location: None,
            position: None,
            eventual: false,
        }
    }

    /// A page of a list: the envelope also carries its `pagination`.
    pub fn paginated(mut self, pagination: Pagination) -> Self {
        self.pagination = Some(pagination);
        self
    }

    /// Turns the answer into a 201 with `Location`.
    pub fn created(mut self, location: String) -> Self {
        self.status = StatusCode::CREATED;
        self.location = Some(location);
        self
    }

    /// Marks an answer given before the read models caught up (`X-Consistency: eventual`).
    pub fn eventual(mut self, eventual: bool) -> Self {
        self.eventual = eventual;
        self
    }

    pub fn etag(mut self, version: u64) -> Self {
        self.etag = Some(version);
        self
    }

    pub fn position(mut self, position: Option<Position>) -> Self {
        self.position = position;
        self
    }
}

pub fn etag_value(version: u64) -> String {
    format!("\"{version}\"")
}

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        let mut response = if self.status == StatusCode::NO_CONTENT {
            self.status.into_response()
        } else {
            let envelope = Envelope {
                data: self.body,
                pagination: self.pagination,
            };
            (self.status, Json(envelope)).into_response()
        };
        let headers = response.headers_mut();
        if let Some(etag) = self
            .etag
            .and_then(|v| HeaderValue::from_str(&etag_value(v)).ok())
        {
            headers.insert(header::ETAG, etag);
        }
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        command_headers(headers, self.position, self.eventual);
        response
    }
}

pub static X_CONSISTENCY: HeaderName = HeaderName::from_static("x-consistency");

/// `Chronicle-Position` and, when the read models had not caught up, `X-Consistency: eventual`.
fn command_headers(
    headers: &mut axum::http::HeaderMap,
    position: Option<Position>,
    eventual: bool,
) {
    if let Some(position) = position.and_then(|p| HeaderValue::from_str(&p.to_string()).ok()) {
        headers.insert(CHRONICLE_POSITION.clone(), position);
    }
    if eventual {
        headers.insert(X_CONSISTENCY.clone(), HeaderValue::from_static("eventual"));
    }
}

/// True when `If-None-Match` names the current version, so the answer can be a 304.
pub fn not_modified(headers: &axum::http::HeaderMap, version: u64) -> bool {
    let current = etag_value(version);
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == current || t == "*")
        })
}

pub fn not_modified_response(version: u64) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(etag) = HeaderValue::from_str(&etag_value(version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}
