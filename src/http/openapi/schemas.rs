//! What the handlers' OpenAPI annotations share: the envelopes, the problem document and the
//! error responses, request headers, list parameters, and schemas for the JSON that handlers
//! build with `json!` (events, sessions, API keys, health), which has no Rust type to derive from.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Schema, Type,
};
use utoipa::{IntoParams, PartialSchema, ToResponse, ToSchema};
use uuid::Uuid;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// `{"data": ...}`: the envelope of every success body but 204s and the operations endpoints.
#[derive(Serialize, ToSchema)]
pub struct Data<T> {
    pub data: T,
}

/// `{"data": [...]}`: a list that is not paginated.
#[derive(Serialize, ToSchema)]
pub struct Items<T> {
    pub data: Vec<T>,
}

/// `{"data": [...], "pagination": ...}`: a page of a list.
#[derive(Serialize, ToSchema)]
pub struct Listing<T> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

/// Cursor pagination (the default) or offset pagination (with `page=`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Pagination {
    Cursor(CursorPagination),
    Offset(OffsetPagination),
}

#[derive(Serialize, ToSchema)]
pub struct CursorPagination {
    pub limit: i64,
    /// Pass as `cursor=` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct OffsetPagination {
    pub page: i64,
    pub limit: i64,
    /// The matching rows, counted up to 10,000 (as deep as pages reach); 10,000 means "at
    /// least". Cursor pagination walks any number.
    pub total: i64,
    pub total_pages: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Deactivated,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PostStatus {
    Draft,
    Published,
}

/// A bounded string schema for a newtype: utoipa's derive takes no length limits there.
fn bounded_string(description: &str, pattern: &str, max_length: usize) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .min_length(Some(1))
        .max_length(Some(max_length))
        .into()
}

/// A tag: 1 to 32 characters of `a-z`, `0-9` and `-`.
pub struct Tag;

impl PartialSchema for Tag {
    fn schema() -> RefOr<Schema> {
        bounded_string(
            "A tag: 1 to 32 characters of `a-z`, `0-9` and `-`.",
            "^[a-z0-9-]{1,32}$",
            32,
        )
    }
}

impl ToSchema for Tag {}

/// An event type a webhook subscribes to.
pub struct EventTypePattern;

impl PartialSchema for EventTypePattern {
    fn schema() -> RefOr<Schema> {
        bounded_string(
            "`*`, `<aggregate>.*` (`user`, `post`, `session`) or a public event type such as \
             `post.published`.",
            "^(\\*|(user|post|session)\\.(\\*|[a-z_]+))$",
            64,
        )
    }
}

impl ToSchema for EventTypePattern {}

/// An RFC 9457 problem document: the body of every error.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `https://chronicle.dev/problems/<code in kebab case>`.
    #[serde(rename = "type")]
    #[schema(example = "https://chronicle.dev/problems/validation-error")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request path.
    pub instance: String,
    /// Stable machine-readable code, e.g. `VALIDATION_ERROR`, `EMAIL_TAKEN`.
    pub code: String,
    /// The request's `X-Request-Id`.
    pub trace_id: String,
    /// One entry per invalid field or query parameter (400 and 422 only).
    #[schema(nullable = false)]
    pub errors: Option<Vec<ProblemField>>,
}

#[derive(Serialize, ToSchema)]
pub struct ProblemField {
    /// The JSON path of the field (`tags[2]`) or the query parameter's name.
    pub field: String,
    pub code: String,
    pub message: String,
}

/// An event in its public form, as `/events` and the histories list them.
#[derive(Serialize, ToSchema)]
pub struct PublicEvent {
    /// The event id.
    pub id: Uuid,
    /// The public event type, e.g. `post.published`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `user`, `post` or `session`.
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub aggregate_version: i64,
    /// The opaque position token that `after=` and `Chronicle-Min-Position` take.
    pub position: String,
    pub recorded_at: DateTime<Utc>,
    /// The event's payload, without secrets.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub metadata: EventMetadata,
}

#[derive(Serialize, ToSchema)]
pub struct EventMetadata {
    /// The `X-Request-Id` of the request that appended the event.
    pub correlation_id: Option<String>,
    pub actor_id: Option<Uuid>,
}

/// One of the caller's active sessions.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    /// When the session ends unless refreshed before: its refresh token's expiry, never later
    /// than `SESSION_MAX_AGE` (default 90 days) after `created_at`.
    pub expires_at: DateTime<Utc>,
    /// The client's IP at sign-in (behind `TRUSTED_PROXIES`, from `X-Forwarded-For`).
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// True for the session of the access token that made this request.
    pub current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    pub status: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyState {
    Ready,
    Unavailable,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpDown {
    Up,
    Down,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MigrationState {
    Applied,
    Pending,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub status: ReadyState,
    pub checks: ReadinessChecks,
}

#[derive(Serialize, ToSchema)]
pub struct ReadinessChecks {
    pub postgres: UpDown,
    pub migrations: MigrationState,
    /// Reported, but NATS being down does not make the instance unready.
    pub nats: UpDown,
}

/// The path parameter `id`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The resource's id (a UUID; anything else is a 404).
    pub id: Uuid,
}

/// `Chronicle-Min-Position` on queries.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ReadHeaders {
    /// A `Chronicle-Position` token: answer once the read models have reached it (at most 2 s,
    /// then 503 `PROJECTION_LAGGING`).
    #[param(rename = "Chronicle-Min-Position", nullable = false)]
    pub min_position: Option<String>,
}

/// Conditional `GET` of a single resource.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ConditionalReadHeaders {
    /// An `ETag` from an earlier answer: 304 when it is still current.
    #[param(rename = "If-None-Match", nullable = false)]
    pub if_none_match: Option<String>,
    /// A `Chronicle-Position` token: answer once the read models have reached it (at most 2 s,
    /// then 503 `PROJECTION_LAGGING`).
    #[param(rename = "Chronicle-Min-Position", nullable = false)]
    pub min_position: Option<String>,
}

/// Commands: `Prefer: respond-async`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CommandHeaders {
    /// `respond-async`: answer as soon as the events are stored, without waiting for the read
    /// models (the answer then carries `X-Consistency: eventual`).
    #[param(rename = "Prefer", nullable = false)]
    pub prefer: Option<String>,
}

/// Commands on an existing aggregate: `If-Match` and `Prefer`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct WriteHeaders {
    /// The `ETag` (`"<version>"`) the write expects; 412 and nothing appended when it is stale.
    /// Without it, a racing write is retried on the fresh state.
    #[param(rename = "If-Match", nullable = false)]
    pub if_match: Option<String>,
    /// `respond-async`: answer as soon as the events are stored, without waiting for the read
    /// models (the answer then carries `X-Consistency: eventual`).
    #[param(rename = "Prefer", nullable = false)]
    pub prefer: Option<String>,
}

fn problem_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

fn header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(String::schema())
        .description(Some(description))
        .build()
}

/// Reusable error responses, referenced from the operations as `#/components/responses/<name>`.
macro_rules! problem_responses {
    ($($name:ident => $description:literal $(, $header:literal: $header_doc:literal)*;)*) => {
        $(
            #[doc = $description]
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    let response = problem_response($description)
                        $(.header($header, header($header_doc)))*
                        .build();
                    (stringify!($name), response.into())
                }
            }
        )*
    };
}

problem_responses! {
    BadRequest => "MALFORMED_REQUEST: the body is not JSON, or a query parameter or header has a bad value (see `errors`).";
    Unauthorized => "UNAUTHORIZED, TOKEN_EXPIRED: missing or invalid credentials.",
        "WWW-Authenticate": "`Bearer`";
    Forbidden => "FORBIDDEN: signed in, but not allowed to do this.";
    NotFound => "NOT_FOUND: no such resource (a malformed id included), or not visible to the caller.";
    PreconditionFailed => "PRECONDITION_FAILED: `If-Match` does not name the current version; nothing was appended.";
    PayloadTooLarge => "PAYLOAD_TOO_LARGE: the body is over the limit (1 MiB by default).";
    UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE: the body is not sent as `application/json`.";
    ValidationFailed => "VALIDATION_ERROR: a missing field, a wrong type, an unknown field or a bad value, one `errors` entry per field.";
    RequestTimeout => "TIMEOUT: no answer within `REQUEST_TIMEOUT_SECS` (30 s by default); a command may still have taken effect.";
    RateLimited => "RATE_LIMITED: the request budget is spent.",
        "Retry-After": "Seconds until a request would be allowed.",
        "RateLimit-Limit": "Requests allowed per minute (also sent as `X-RateLimit-Limit`).",
        "RateLimit-Remaining": "0 (also sent as `X-RateLimit-Remaining`).",
        "RateLimit-Reset": "Seconds until a request would be allowed (also `X-RateLimit-Reset`).";
    Unavailable => "SERVICE_UNAVAILABLE (the database is unreachable) or PROJECTION_LAGGING (the read models did not reach `Chronicle-Min-Position` in time).",
        "Retry-After": "Seconds to wait before retrying.";
    InternalError => "INTERNAL_ERROR: an unexpected error; the problem carries no internals.";
}
