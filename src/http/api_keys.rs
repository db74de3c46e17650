//! `/api-keys`: keys for services, managed by admins. The key is shown once, at creation.

use aggregates::Role;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::api_keys::{self, ApiKeyRow};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{AdminUser, Parsed, PathId};
use crate::http::openapi::schemas::{self, Data, IdPath, Items};
use crate::http::parse::{one_of, Fields, Parse};
use crate::http::respond::Answer;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// The role the key acts with: `admin` (the default) or `user`.
    #[schema(value_type = Option<schemas::Role>)]
    pub role: Option<String>,
}

/// A key to issue, parsed.
pub struct NewKey {
    name: String,
    role: Role,
}

impl Parse for CreateKeyRequest {
    type Output = NewKey;

    fn parse(self) -> Result<NewKey, Vec<FieldError>> {
        let mut fields = Fields::default();
        let name = fields.text("name", self.name, 1, 100);
        let role = one_of(
            &mut fields,
            "role",
            self.role.as_deref(),
            Role::parse,
            "must be user or admin",
        );
        fields.finish((|| {
            Some(NewKey {
                name: name?,
                role: role?.unwrap_or(Role::Admin),
            })
        })())
    }
}

/// An API key as listed: never the key itself.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    id: Uuid,
    name: String,
    #[schema(value_type = schemas::Role)]
    role: String,
    /// The key's first characters, to recognise it.
    prefix: String,
    /// The admin the key acts as.
    created_by: Uuid,
    created_at: DateTime<Utc>,
}

impl ApiKeyView {
    fn from_row(row: &ApiKeyRow) -> Self {
        Self {
            id: row.id,
            name: row.name.clone(),
            role: row.role.clone(),
            prefix: row.prefix.clone(),
            created_by: row.created_by,
            created_at: row.created_at,
        }
    }
}

/// A new API key: the only answer that carries the key.
#[derive(Serialize, ToSchema)]
pub struct NewApiKey {
    #[serde(flatten)]
    listed: ApiKeyView,
    /// `sk_live_...`: send as `X-API-Key` or `Authorization: Bearer`. Shown once.
    key: String,
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
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 201, description = "Created; `key` is shown only here", body = Data<NewApiKey>,
            headers(("Location"))),
    )
)]
async fn create_key(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Parsed(key): Parsed<CreateKeyRequest>,
) -> Result<Answer<NewApiKey>, ApiError> {
    let issued = api_keys::create(&state.pool, key.name.trim(), key.role, admin.user_id).await?;

    let location = format!("/api/v1/api-keys/{}", issued.row.id);
    Ok(Answer::ok(NewApiKey {
        listed: ApiKeyView::from_row(&issued.row),
        key: issued.key,
    })
    .created(location))
}

/// List API keys.
///
/// Admins only. Never the keys themselves.
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The API keys", body = Items<ApiKeyView>),
    )
)]
async fn list_keys(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
) -> Result<Answer<Vec<ApiKeyView>>, ApiError> {
    let keys = api_keys::list(&state.pool).await?;
    Ok(Answer::ok(keys.iter().map(ApiKeyView::from_row).collect()))
}

/// Revoke an API key.
///
/// Admins only. Revoked at once: every request with the key looks it up.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "api-keys",
    params(IdPath),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 204, description = "Revoked"),
    )
)]
async fn revoke_key(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    PathId(id): PathId<Uuid>,
) -> Result<Answer<()>, ApiError> {
    if api_keys::revoke(&state.pool, id).await? {
        Ok(Answer::no_content())
    } else {
        Err(ApiError::NotFound)
    }
}
