//! Success answers: the `{"data": ...}` envelope with the headers a resource carries.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use projections::Position;
use serde::Serialize;

pub static CHRONICLE_POSITION: HeaderName = HeaderName::from_static("chronicle-position");

pub struct Answer<T> {
    status: StatusCode,
    body: T,
    etag: Option<u64>,
    location: Option<String>,
    position: Option<Position>,
    eventual: bool,
}

#[derive(Serialize)]
struct Envelope<T> {
    data: T,
}

impl<T: Serialize> Answer<T> {
    pub fn ok(body: T) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            etag: None,
            location: None,
            position: None,
            eventual: false,
        }
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
        let mut response = (self.status, Json(Envelope { data: self.body })).into_response();
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

/// A 204 that still reports where the command's events landed.
pub fn no_content(position: Option<Position>, eventual: bool) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    command_headers(response.headers_mut(), position, eventual);
    response
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
