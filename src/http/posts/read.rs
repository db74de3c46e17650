//! Queries on `/posts` (and `/users/{id}/posts`), served from the `posts_view` read model.

use aggregates::{PostId, UserId};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use projections::listing::{Bind, Condition};
use projections::posts::{COLUMNS, SORT_KEYS, TABLE};
use serde_json::Value;

use crate::app::history;
use crate::http::consistency::{log_position, read_position, MinPosition};
use crate::http::error::ApiError;
use crate::http::extract::{AuthUser, MaybeAuthUser, PathId};
use crate::http::listing::{list_params, ListAnswer, ListRequest, ListSpec};
use crate::http::openapi::schemas::{
    ConditionalReadHeaders, Data, Forbidden, IdPath, Items, Listing, PublicEvent, ReadHeaders,
};
use crate::http::query::StrictQuery;
use crate::http::respond::{not_modified, not_modified_response, Answer};
use crate::http::views::PostView;
use crate::state::AppState;

const READ_MODELS: &[&str] = &["posts"];

const SPEC: ListSpec = ListSpec {
    resource: "posts",
    sort_keys: SORT_KEYS,
    filters: &[
        "status",
        "author_id",
        "tag",
        "created_after",
        "created_before",
    ],
    fields: &[
        "id",
        "author_id",
        "title",
        "body",
        "tags",
        "status",
        "created_at",
        "updated_at",
        "published_at",
        "version",
    ],
};

list_params! {
    /// The parameters of the post lists.
    PostListParams {
        /// `published`, or `draft` for the caller's own drafts.
        #[param(inline, value_type = Option<crate::http::openapi::schemas::PostStatus>, nullable = false)]
        status,
        #[param(value_type = Option<uuid::Uuid>, nullable = false)]
        author_id,
        /// Posts carrying this tag.
        #[param(nullable = false)]
        tag,
        #[param(value_type = Option<chrono::DateTime<chrono::Utc>>, nullable = false)]
        created_after,
        #[param(value_type = Option<chrono::DateTime<chrono::Utc>>, nullable = false)]
        created_before,
    }
}

/// The filters every post list shares.
fn shared_conditions(request: &ListRequest) -> Result<Vec<Condition>, ApiError> {
    let mut conditions = Vec::new();
    if let Some(author) = request.uuid_filter("author_id")? {
        conditions.push(Condition::Eq("author_id", Bind::Uuid(author)));
    }
    if let Some(tag) = request.filter("tag") {
        conditions.push(Condition::ArrayContains("tags", tag.to_owned()));
    }
    if let Some(q) = request.filter("q") {
        conditions.push(Condition::Search {
            column: "search",
            config: "english",
            query: q.to_owned(),
        });
    }
    if let Some(after) = request.time_filter("created_after")? {
        conditions.push(Condition::After("created_at", after));
    }
    if let Some(before) = request.time_filter("created_before")? {
        conditions.push(Condition::Before("created_at", before));
    }
    Ok(conditions)
}

/// List posts.
///
/// Published posts for everyone; `status=draft` shows signed-in authors their own drafts and
/// nobody anyone else's. Sort keys: `created_at`, `published_at`, `title`.
#[utoipa::path(
    get,
    path = "/api/v1/posts",
    tag = "posts",
    params(PostListParams, ReadHeaders),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of posts", body = Listing<PostView>,
            headers(("Chronicle-Position"))),
    )
)]
pub(super) async fn list_posts(
    State(state): State<AppState>,
    MaybeAuthUser(caller): MaybeAuthUser,
    min: MinPosition,
    StrictQuery(given): StrictQuery<PostListParams>,
) -> Result<ListAnswer, ApiError> {
    let request = ListRequest::parse(given, &SPEC, &state.cursor_key)?;
    let position = read_position(&state, READ_MODELS, &min).await?;

    let mut conditions = shared_conditions(&request)?;
    match (
        request
            .enum_filter("status", &["draft", "published"])?
            .as_deref(),
        caller,
    ) {
        (Some("draft"), Some(caller)) => {
            conditions.push(Condition::Fixed("status = 'draft'"));
            conditions.push(Condition::Eq(
                "author_id",
                Bind::Uuid(*caller.user_id.as_uuid()),
            ));
        }
        (Some("draft"), None) => conditions.push(Condition::Nothing),
        _ => conditions.push(Condition::Fixed("status = 'published'")),
    }
    request
        .run(
            &state,
            (TABLE, COLUMNS),
            conditions,
            position,
            PostView::from_row,
        )
        .await
}

/// List an author's posts.
///
/// Every status for the author and admins (`status=` narrows), published ones for everyone
/// else. Sort keys: `created_at`, `published_at`, `title`.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/posts",
    tag = "users",
    params(IdPath, PostListParams, ReadHeaders),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of the author's posts", body = Listing<PostView>,
            headers(("Chronicle-Position"))),
    )
)]
pub(super) async fn list_author_posts(
    State(state): State<AppState>,
    MaybeAuthUser(caller): MaybeAuthUser,
    PathId(author): PathId<UserId>,
    min: MinPosition,
    StrictQuery(given): StrictQuery<PostListParams>,
) -> Result<ListAnswer, ApiError> {
    let request = ListRequest::parse(given, &SPEC, &state.cursor_key)?;
    let position = read_position(&state, READ_MODELS, &min).await?;

    let mut conditions = shared_conditions(&request)?;
    conditions.push(Condition::Eq("author_id", Bind::Uuid(*author.as_uuid())));
    let privileged = caller.is_some_and(|c| c.is_admin() || c.user_id == author);
    match (
        request.enum_filter("status", &["draft", "published"])?,
        privileged,
    ) {
        (Some(status), true) => conditions.push(Condition::Eq("status", Bind::Text(status))),
        (None, true) => {}
        (Some(status), false) if status == "draft" => conditions.push(Condition::Nothing),
        (_, false) => conditions.push(Condition::Fixed("status = 'published'")),
    }
    request
        .run(
            &state,
            (TABLE, COLUMNS),
            conditions,
            position,
            PostView::from_row,
        )
        .await
}

/// Get a post.
///
/// Drafts exist only for their author and admins; everyone else gets the same 404 as for a
/// post that never existed.
#[utoipa::path(
    get,
    path = "/api/v1/posts/{id}",
    tag = "posts",
    params(IdPath, ConditionalReadHeaders),
    security((), ("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The post", body = Data<PostView>,
            headers(("ETag"), ("Chronicle-Position"))),
        (status = 304, description = "Not modified: `If-None-Match` names the current version",
            headers(("ETag"))),
    )
)]
pub(super) async fn get_post(
    State(state): State<AppState>,
    MaybeAuthUser(caller): MaybeAuthUser,
    PathId(id): PathId<PostId>,
    min: MinPosition,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let position = read_position(&state, READ_MODELS, &min).await?;
    let row = projections::posts::find(&state.pool, *id.as_uuid())
        .await?
        .ok_or(ApiError::NotFound)?;
    let visible = row.status == "published"
        || caller.is_some_and(|c| c.is_admin() || *c.user_id.as_uuid() == row.author_id);
    if !visible {
        return Err(ApiError::NotFound);
    }
    let version = row.version as u64;
    if not_modified(&headers, version) {
        return Ok(not_modified_response(version));
    }
    Ok(Answer::ok(PostView::from_row(row))
        .etag(version)
        .position(Some(position))
        .into_response())
}

/// A post's history.
///
/// The post's events, oldest first, in their public form. Deleted posts keep their history.
/// The author and admins only.
#[utoipa::path(
    get,
    path = "/api/v1/posts/{id}/history",
    tag = "posts",
    params(IdPath, ReadHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The post's events, oldest first", body = Items<PublicEvent>,
            headers(("Chronicle-Position"))),
        (status = 403, response = Forbidden),
    )
)]
pub(super) async fn post_history(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    min: MinPosition,
) -> Result<Answer<Vec<Value>>, ApiError> {
    let position = log_position(&state, &min).await?;
    let events = history::of_post(&state, &caller, id).await?;
    Ok(Answer::ok(events).position(Some(position)))
}
