//! `/webhooks` (admins): endpoints, their secrets, test pings, deliveries, retries and replays.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::fanout::webhooks::signing::new_secret;
use crate::fanout::webhooks::store::{self, Changes, Delivery, Endpoint};
use crate::fanout::webhooks::targets::{self, TargetError};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{AdminUser, Parsed, PathId};
use crate::http::openapi::schemas::{Data, IdPath, Items};
use crate::http::parse::{Fields, Parse};
use crate::http::query::{StatusList, StrictQuery};
use crate::http::respond::{Accepted, Answer};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
        .routes(routes!(list_deliveries))
        .routes(routes!(retry_delivery))
        .routes(routes!(replay))
}

/// A webhook endpoint (the secret only in the answers that create or rotate it).
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    id: Uuid,
    url: String,
    event_types: Vec<String>,
    description: Option<String>,
    enabled: bool,
    /// Why the endpoint was turned off, when it was turned off for failing.
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl WebhookView {
    fn from_endpoint(endpoint: &Endpoint) -> Self {
        Self {
            id: endpoint.id,
            url: endpoint.url.clone(),
            event_types: endpoint.event_types.clone(),
            description: endpoint.description.clone(),
            enabled: endpoint.enabled,
            disabled_reason: endpoint.disabled_reason.clone(),
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
        }
    }
}

/// A webhook endpoint with its signing secret (`whsec_` + base64 of 32 bytes), shown once.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    endpoint: WebhookView,
    /// The plaintext just made; the row holds it sealed.
    secret: String,
}

impl WebhookWithSecret {
    fn new(endpoint: &Endpoint, secret: String) -> Self {
        Self {
            endpoint: WebhookView::from_endpoint(endpoint),
            secret,
        }
    }
}

/// One delivery of one event to one endpoint.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    id: Uuid,
    endpoint_id: Uuid,
    event_id: Uuid,
    event_type: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    next_attempt_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at,
            delivered_at: d.delivered_at,
            created_at: d.created_at,
        }
    }
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct DeliveryPath {
    /// The endpoint's id.
    id: Uuid,
    /// The delivery's id.
    delivery_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// `pending`, `succeeded` or `failed`.
    status: Option<String>,
    /// 1 to 100, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

impl Parse for DeliveryParams {
    type Output = StatusList;

    fn parse(self) -> Result<StatusList, Vec<FieldError>> {
        StatusList::from_query(
            self.status,
            self.limit.as_deref(),
            &["pending", "succeeded", "failed"],
        )
    }
}

const AGGREGATES: [&str; 3] = ["user", "post", "session"];
/// Longer than any event type there is; the document states it as the items' maxLength.
const EVENT_TYPE_PATTERN_MAX: usize = 64;

/// `*`, `<aggregate>.*`, or a public event type.
fn valid_pattern(pattern: &str) -> bool {
    if pattern.len() > EVENT_TYPE_PATTERN_MAX {
        return false;
    }
    if pattern == "*" {
        return true;
    }
    match pattern.split_once('.') {
        Some((aggregate, rest)) => {
            AGGREGATES.contains(&aggregate)
                && !rest.is_empty()
                && (rest == "*" || rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        }
        None => false,
    }
}

fn check_event_types(fields: &mut Fields, types: &[String]) {
    if types.is_empty() || types.len() > 50 {
        fields.refuse("event_types", "COUNT", "must list 1 to 50 event types");
    }
    for (i, t) in types.iter().enumerate() {
        if !valid_pattern(t) {
            fields.refuse(
                format!("event_types[{i}]"),
                "PATTERN",
                "must be *, <aggregate>.* or an event type such as post.published",
            );
        }
    }
}

/// Only the form: whether the target is allowed (public, resolvable) is asked later, once.
fn check_url(fields: &mut Fields, url: &str) {
    if targets::parse(url).is_err() || url.len() > 2048 {
        fields.refuse("url", "URL", "must be an http or https URL");
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointRequest {
    #[schema(max_length = 2048)]
    pub url: String,
    #[schema(min_items = 1, max_items = 50, value_type = Vec<crate::http::openapi::schemas::EventTypePattern>)]
    pub event_types: Vec<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

impl Parse for CreateEndpointRequest {
    type Output = Self;

    fn parse(self) -> Result<Self, Vec<FieldError>> {
        let mut fields = Fields::default();
        check_url(&mut fields, &self.url);
        check_event_types(&mut fields, &self.event_types);
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 500)
        {
            fields.refuse("description", "LENGTH", "must be at most 500 characters");
        }
        fields.finish(Some(self))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpointRequest {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(min_items = 1, max_items = 50, value_type = Option<Vec<crate::http::openapi::schemas::EventTypePattern>>)]
    pub event_types: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

impl Parse for UpdateEndpointRequest {
    type Output = Self;

    fn parse(self) -> Result<Self, Vec<FieldError>> {
        let mut fields = Fields::default();
        if let Some(url) = &self.url {
            check_url(&mut fields, url);
        }
        if let Some(types) = &self.event_types {
            check_event_types(&mut fields, types);
        }
        fields.finish(Some(self))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub since: DateTime<Utc>,
}

impl Parse for ReplayRequest {
    type Output = DateTime<Utc>;

    fn parse(self) -> Result<DateTime<Utc>, Vec<FieldError>> {
        Ok(self.since)
    }
}

fn target_message(error: &TargetError) -> String {
    match error {
        TargetError::NotHttp => format!("the URL {error}"),
        TargetError::Unresolvable | TargetError::NotPublic { .. } => error.to_string(),
    }
}

/// A private target is a validation error on `url`, so the client knows which field to fix.
async fn allowed_target(state: &AppState, url: &str) -> Result<(), ApiError> {
    targets::check(url, state.config.webhook_allow_private_targets)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::field("url", "TARGET", &target_message(&e)))
}

async fn endpoint_or_404(state: &AppState, id: Uuid) -> Result<Endpoint, ApiError> {
    store::find(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Create a webhook endpoint; its secret is shown only here.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    request_body = CreateEndpointRequest,
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 201, description = "Created", body = Data<WebhookWithSecret>, headers(("Location"))),
    )
)]
async fn create_endpoint(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Parsed(body): Parsed<CreateEndpointRequest>,
) -> Result<Answer<WebhookWithSecret>, ApiError> {
    allowed_target(&state, &body.url).await?;
    let secret = new_secret();
    let endpoint = store::create(
        &state.pool,
        &state.secrets,
        &body.url,
        &body.event_types,
        body.description.as_deref(),
        &secret,
        *admin.user_id.as_uuid(),
    )
    .await?;
    Ok(Answer::ok(WebhookWithSecret::new(&endpoint, secret))
        .created(format!("/api/v1/webhooks/{}", endpoint.id)))
}

/// List webhook endpoints.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The endpoints", body = Items<WebhookView>),
    )
)]
async fn list_endpoints(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
) -> Result<Answer<Vec<WebhookView>>, ApiError> {
    let endpoints = store::list(&state.pool).await?;
    Ok(Answer::ok(
        endpoints.iter().map(WebhookView::from_endpoint).collect(),
    ))
}

/// Get a webhook endpoint.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    params(IdPath),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The endpoint", body = Data<WebhookView>),
    )
)]
async fn get_endpoint(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    PathId(id): PathId<Uuid>,
) -> Result<Answer<WebhookView>, ApiError> {
    Ok(Answer::ok(WebhookView::from_endpoint(
        &endpoint_or_404(&state, id).await?,
    )))
}

/// Change a webhook endpoint's URL, event types, description or enabled flag.
#[utoipa::path(
    patch,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    params(IdPath),
    request_body = UpdateEndpointRequest,
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The endpoint", body = Data<WebhookView>),
    )
)]
async fn update_endpoint(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    PathId(id): PathId<Uuid>,
    Parsed(body): Parsed<UpdateEndpointRequest>,
) -> Result<Answer<WebhookView>, ApiError> {
    if let Some(url) = &body.url {
        allowed_target(&state, url).await?;
    }
    let changes = Changes {
        url: body.url.as_deref(),
        event_types: body.event_types.as_deref(),
        description: body.description.as_deref(),
        enabled: body.enabled,
    };
    let endpoint = store::update(&state.pool, id, changes)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Answer::ok(WebhookView::from_endpoint(&endpoint)))
}

/// Delete a webhook endpoint and its deliveries.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    params(IdPath),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 204, description = "Deleted"),
    )
)]
async fn delete_endpoint(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    PathId(id): PathId<Uuid>,
) -> Result<Answer<()>, ApiError> {
    if store::delete(&state.pool, id).await? {
        Ok(Answer::no_content())
    } else {
        Err(ApiError::NotFound)
    }
}

/// Rotate the signing secret; the old one keeps signing beside it for 24 h.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    params(IdPath),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The endpoint with its new secret", body = Data<WebhookWithSecret>),
    )
)]
async fn rotate_secret(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    PathId(id): PathId<Uuid>,
) -> Result<Answer<WebhookWithSecret>, ApiError> {
    let secret = new_secret();
    let endpoint = store::rotate_secret(&state.pool, &state.secrets, id, &secret)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Answer::ok(WebhookWithSecret::new(&endpoint, secret)))
}

/// Send a `webhook.test` message to the endpoint.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/test",
    tag = "webhooks",
    params(IdPath),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 202, description = "Queued"),
    )
)]
async fn send_test(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    PathId(id): PathId<Uuid>,
) -> Result<Answer<Accepted>, ApiError> {
    let endpoint = endpoint_or_404(&state, id).await?;
    let event_id = Uuid::now_v7();
    let body = json!({
        "type": "webhook.test",
        "timestamp": Utc::now(),
        "data": { "endpoint_id": endpoint.id },
        "metadata": { "event_id": event_id, "position": null, "aggregate_id": null,
                      "aggregate_version": null, "correlation_id": null },
    });
    store::enqueue(
        &state.pool,
        endpoint.id,
        event_id,
        "webhook.test",
        &body,
        false,
    )
    .await?;
    state.webhook_wake.notify_one();
    Ok(Answer::accepted())
}

/// List the endpoint's recent deliveries, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(IdPath, DeliveryParams),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The deliveries", body = Items<DeliveryView>),
    )
)]
async fn list_deliveries(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    PathId(id): PathId<Uuid>,
    StrictQuery(list): StrictQuery<DeliveryParams>,
) -> Result<Answer<Vec<DeliveryView>>, ApiError> {
    endpoint_or_404(&state, id).await?;
    let deliveries = store::deliveries(&state.pool, id, list.status.as_deref(), list.limit).await?;
    Ok(Answer::ok(
        deliveries.into_iter().map(DeliveryView::from).collect(),
    ))
}

/// Retry one delivery now.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
    tag = "webhooks",
    params(DeliveryPath),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 202, description = "Queued"),
    )
)]
async fn retry_delivery(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Answer<Accepted>, ApiError> {
    let (Ok(id), Ok(delivery)) = (Uuid::parse_str(&id), Uuid::parse_str(&delivery)) else {
        return Err(ApiError::NotFound);
    };
    if !store::retry(&state.pool, id, delivery).await? {
        return Err(ApiError::NotFound);
    }
    state.webhook_wake.notify_one();
    Ok(Answer::accepted())
}

/// Re-deliver every matching event recorded since a time, also from before the endpoint existed.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/replay",
    tag = "webhooks",
    params(IdPath),
    request_body = ReplayRequest,
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 202, description = "Queued"),
    )
)]
async fn replay(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    PathId(id): PathId<Uuid>,
    Parsed(since): Parsed<ReplayRequest>,
) -> Result<Answer<Accepted>, ApiError> {
    let endpoint = endpoint_or_404(&state, id).await?;
    crate::fanout::webhooks::replay::replay(&state.pool, &endpoint, since).await?;
    state.webhook_wake.notify_one();
    Ok(Answer::accepted())
}
