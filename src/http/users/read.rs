//! Queries on `/users`, served from the `users_view` read model.

use aggregates::UserId;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use projections::listing::{Bind, Condition};
use projections::users::{COLUMNS, SORT_KEYS, TABLE};
use serde_json::{json, Value};

use crate::app::history;
use crate::http::consistency::{log_position, read_position, MinPosition};
use crate::http::error::ApiError;
use crate::http::extract::{AdminUser, AuthUser, PathId};
use crate::http::listing::{list_params, ListAnswer, ListRequest, ListSpec};
use crate::http::openapi::schemas::{
    ConditionalReadHeaders, Data, Forbidden, IdPath, Items, Listing, PublicEvent, ReadHeaders,
};
use crate::http::query::StrictQuery;
use crate::http::respond::{not_modified, not_modified_response, Answer};
use crate::http::views::{AnyUserView, PublicUserView, UserView};
use crate::state::AppState;

const READ_MODELS: &[&str] = &["users"];

const SPEC: ListSpec = ListSpec {
    resource: "users",
    sort_keys: SORT_KEYS,
    filters: &["role", "status", "created_after", "created_before"],
    fields: &[
        "id",
        "email",
        "name",
        "bio",
        "role",
        "status",
        "email_verified",
        "created_at",
        "updated_at",
        "version",
    ],
};

list_params! {
    /// The parameters of the user list.
    UserListParams {
        #[param(inline, value_type = Option<crate::http::openapi::schemas::Role>, nullable = false)]
        role,
        #[param(inline, value_type = Option<crate::http::openapi::schemas::UserStatus>, nullable = false)]
        status,
        #[param(value_type = Option<chrono::DateTime<chrono::Utc>>, nullable = false)]
        created_after,
        #[param(value_type = Option<chrono::DateTime<chrono::Utc>>, nullable = false)]
        created_before,
    }
}

/// List users.
///
/// Admins only. Sort keys: `created_at`, `name`, `email`. `q` searches names and emails.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    params(UserListParams, ReadHeaders),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "A page of users", body = Listing<UserView>,
            headers(("Chronicle-Position"))),
    )
)]
pub(super) async fn list_users(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    min: MinPosition,
    StrictQuery(given): StrictQuery<UserListParams>,
) -> Result<ListAnswer, ApiError> {
    let request = ListRequest::parse(given, &SPEC, &state.cursor_key)?;
    let position = read_position(&state, READ_MODELS, &min).await?;

    let mut conditions = Vec::new();
    if let Some(role) = request.enum_filter("role", &["user", "admin"])? {
        conditions.push(Condition::Eq("role", Bind::Text(role)));
    }
    if let Some(status) = request.enum_filter("status", &["active", "deactivated"])? {
        conditions.push(Condition::Eq("status", Bind::Text(status)));
    }
    if let Some(after) = request.time_filter("created_after")? {
        conditions.push(Condition::After("created_at", after));
    }
    if let Some(before) = request.time_filter("created_before")? {
        conditions.push(Condition::Before("created_at", before));
    }
    if let Some(q) = request.filter("q") {
        conditions.push(Condition::Search {
            column: "search",
            config: "simple",
            query: q.to_owned(),
        });
    }
    request
        .run(
            &state,
            (TABLE, COLUMNS),
            conditions,
            position,
            UserView::from_row,
        )
        .await
}

/// Get a user.
///
/// Signed-in callers see the full user for themselves (and admins for anyone), the public
/// view for others.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    tag = "users",
    params(IdPath, ConditionalReadHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The user: full or public view", body = Data<AnyUserView>,
            headers(("ETag"), ("Chronicle-Position"))),
        (status = 304, description = "Not modified: `If-None-Match` names the current version",
            headers(("ETag"))),
    )
)]
pub(super) async fn get_user(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<UserId>,
    min: MinPosition,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let position = read_position(&state, READ_MODELS, &min).await?;
    let row = projections::users::find(&state.pool, *id.as_uuid())
        .await?
        .ok_or(ApiError::NotFound)?;
    let version = row.version as u64;
    if not_modified(&headers, version) {
        return Ok(not_modified_response(version));
    }
    let answer = if caller.is_admin() || caller.user_id == id {
        Answer::ok(json!(UserView::from_row(row)))
    } else {
        Answer::ok(json!(PublicUserView::from_row(row)))
    };
    Ok(answer
        .etag(version)
        .position(Some(position))
        .into_response())
}

/// A user's history.
///
/// The user's events, oldest first, in their public form (no password hashes). The user
/// themselves and admins only.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/history",
    tag = "users",
    params(IdPath, ReadHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The user's events, oldest first", body = Items<PublicEvent>,
            headers(("Chronicle-Position"))),
        (status = 403, response = Forbidden),
    )
)]
pub(super) async fn user_history(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<UserId>,
    min: MinPosition,
) -> Result<Answer<Vec<Value>>, ApiError> {
    let position = log_position(&state, &min).await?;
    let events = history::of_user(&state, &caller, id).await?;
    Ok(Answer::ok(events).position(Some(position)))
}
