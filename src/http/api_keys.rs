//! `/api-keys`: keys for services, managed by admins. The key is shown once, at creation.

use aggregates::Role;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use validator::Validate;

use crate::auth::api_keys::{self, ApiKeyRow};
use crate::http::error::ApiError;
use crate::http::extract::{AdminUser, PathId, ValidatedJson};
use crate::http::openapi::schemas::{
    self, ApiKeyView, BadRequest, Data, Forbidden, IdPath, Items, NewApiKey, NotFound,
    PayloadTooLarge, Unauthorized, UnsupportedMediaType, ValidationFailed,
};
use crate::http::respond::Answer;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// The role the key acts with: `admin` (the default) or `user`.
    #[validate(custom(function = "valid_role"))]
    #[schema(value_type = Option<schemas::Role>)]
    pub role: Option<String>,
}

fn valid_role(role: &str) -> Result<(), validator::ValidationError> {
    match Role::parse(role) {
        Some(_) => Ok(()),
        None => {
            let mut error = validator::ValidationError::new("ENUM");
            error.message = Some("must be user or admin".into());
            Err(error)
        }
    }
}

fn key_view(row: &ApiKeyRow) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "prefix": row.prefix,
        "created_by": row.created_by,
        "created_at": row.created_at,
    })
}

/// Create an API key.
///
/// Admins only. The key acts as the admin who created it, with the given role. The answer is
/// the only time the key is shown.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    request_body = CreateKeyRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created; `key` is shown only here", body = Data<NewApiKey>,
            headers(("Location"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
    )
)]
async fn create_key(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ValidatedJson(body): ValidatedJson<CreateKeyRequest>,
) -> Result<Answer<Value>, ApiError> {
    let role = body
        .role
        .as_deref()
        .and_then(Role::parse)
        .unwrap_or(Role::Admin);

    let issued = api_keys::create(&state.pool, body.name.trim(), role, admin.user_id)
        .await
        .map_err(ApiError::internal)?;

    let mut view = key_view(&issued.row);
    view["key"] = json!(issued.key);
    Ok(Answer::ok(view).created(format!("/api/v1/api-keys/{}", issued.row.id)))
}

/// List API keys.
///
/// Admins only. Never the keys themselves.
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The API keys", body = Items<ApiKeyView>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
async fn list_keys(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
) -> Result<Response, ApiError> {
    let keys = api_keys::list(&state.pool)
        .await
        .map_err(ApiError::internal)?;
    let data: Vec<Value> = keys.iter().map(key_view).collect();
    Ok(Json(json!({ "data": data })).into_response())
}

/// Revoke an API key.
///
/// Admins only. Revoked at once: every request with the key looks it up.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "api-keys",
    params(IdPath),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
async fn revoke_key(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    PathId(id): PathId<uuid::Uuid>,
) -> Result<Response, ApiError> {
    if api_keys::revoke(&state.pool, id)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(axum::http::StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound)
    }
}
