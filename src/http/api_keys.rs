//! `/api-keys`: keys for services, managed by admins. The key is shown once, at creation.

use aggregates::Role;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use validator::Validate;

use crate::auth::api_keys::{self, ApiKeyRow};
use crate::http::error::ApiError;
use crate::http::extract::{AdminUser, PathId, ValidatedJson};
use crate::http::respond::Answer;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api-keys", post(create_key).get(list_keys))
        .route("/api-keys/{id}", delete(revoke_key))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[validate(length(min = 1, max = 100, message = "must be 1 to 100 characters"))]
    pub name: String,
    #[validate(custom(function = "valid_role"))]
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

/// Revoked at once: every request with the key looks it up.
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
