//! Commands on `/posts`: writing, editing, publishing and deleting posts.

use aggregates::post::{Post, PostCommand};
use aggregates::values::{PostBody, PostTitle, Tags};
use aggregates::PostId;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use validator::{Validate, ValidationErrors};

use crate::app::caught_up;
use crate::commands::Executed;
use crate::http::consistency::{command_answer, PreferAsync};
use crate::http::error::ApiError;
use crate::http::extract::{AuthUser, IfMatch, PathId, RequestMeta, ValidatedJson};
use crate::http::openapi::schemas::{
    self, BadRequest, CommandHeaders, Data, Forbidden, IdPath, NotFound, PayloadTooLarge,
    PreconditionFailed, Problem, Unauthorized, UnsupportedMediaType, ValidationFailed,
    WriteHeaders,
};
use crate::http::respond::{no_content, Answer};
use crate::http::validate::Rules;
use crate::http::views::PostView;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePostRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[schema(min_length = 1, max_length = 100000)]
    pub body: String,
    #[schema(max_items = 10, value_type = Option<Vec<schemas::Tag>>)]
    pub tags: Option<Vec<String>>,
    /// `draft` (the default) or `published`, which appends `post.created` then `post.published`.
    #[schema(value_type = Option<schemas::PostStatus>)]
    pub status: Option<String>,
}

impl Validate for CreatePostRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        rules
            .check("title", PostTitle::parse(&self.title))
            .check("body", PostBody::parse(&self.body))
            .check_tags("tags", self.tags.as_deref().unwrap_or_default());
        if self
            .status
            .as_deref()
            .is_some_and(|s| s != "draft" && s != "published")
        {
            rules.check::<()>(
                "status",
                Err(aggregates::values::ValueError {
                    code: "ENUM",
                    message: "must be draft or published".into(),
                }),
            );
        }
        rules.finish()
    }
}

/// The fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePostRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    #[schema(min_length = 1, max_length = 100000)]
    pub body: Option<String>,
    #[schema(max_items = 10, value_type = Option<Vec<schemas::Tag>>)]
    pub tags: Option<Vec<String>>,
}

impl Validate for UpdatePostRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        if let Some(title) = &self.title {
            rules.check("title", PostTitle::parse(title));
        }
        if let Some(body) = &self.body {
            rules.check("body", PostBody::parse(body));
        }
        if let Some(tags) = &self.tags {
            rules.check_tags("tags", tags);
        }
        rules.finish()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplacePostRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[schema(min_length = 1, max_length = 100000)]
    pub body: String,
    #[schema(max_items = 10, value_type = Vec<schemas::Tag>)]
    pub tags: Vec<String>,
}

impl Validate for ReplacePostRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        rules
            .check("title", PostTitle::parse(&self.title))
            .check("body", PostBody::parse(&self.body))
            .check_tags("tags", &self.tags);
        rules.finish()
    }
}

fn title(raw: &str) -> Result<PostTitle, ApiError> {
    PostTitle::parse(raw).map_err(|e| ApiError::field("title", e.code, &e.message))
}

fn body(raw: &str) -> Result<PostBody, ApiError> {
    PostBody::parse(raw).map_err(|e| ApiError::field("body", e.code, &e.message))
}

fn tags(raw: &[String]) -> Result<Tags, ApiError> {
    Tags::parse(raw).map_err(|_| ApiError::field("tags", "PATTERN", "invalid tags"))
}

/// The read models a post command's answer and the following reads depend on.
const READ_MODELS: &[&str] = &["posts"];

/// Create a post.
///
/// A draft unless `status` is `published`. The caller is the author.
#[utoipa::path(
    post,
    path = "/api/v1/posts",
    tag = "posts",
    request_body = CreatePostRequest,
    params(CommandHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = Data<PostView>,
            headers(("Location"), ("ETag"), ("Chronicle-Position"), ("X-Consistency"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
    )
)]
pub(super) async fn create_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    ValidatedJson(req): ValidatedJson<CreatePostRequest>,
) -> Result<Answer<PostView>, ApiError> {
    let post_id = PostId::from_uuid(uuid::Uuid::now_v7());
    let command = PostCommand::Create {
        post_id,
        actor: caller.actor(),
        title: title(&req.title)?,
        body: body(&req.body)?,
        tags: tags(req.tags.as_deref().unwrap_or_default())?,
        publish: req.status.as_deref() == Some("published"),
        at: crate::commands::now(),
    };
    let done = state
        .posts
        .create(
            post_id.to_string(),
            command,
            &meta.command(Some(caller.user_id)),
        )
        .await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &done,
        prefer_async,
        PostView::from_state,
    )
    .await
    .created(format!("/api/v1/posts/{post_id}")))
}

/// Update a post.
///
/// Changes the given fields. The author and admins; someone else's draft is a 404, like an
/// id that does not exist.
#[utoipa::path(
    patch,
    path = "/api/v1/posts/{id}",
    tag = "posts",
    request_body = UpdatePostRequest,
    params(IdPath, WriteHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The updated post", body = Data<PostView>,
            headers(("ETag"), ("Chronicle-Position"), ("X-Consistency"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
    )
)]
pub(super) async fn update_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    ValidatedJson(req): ValidatedJson<UpdatePostRequest>,
) -> Result<Answer<PostView>, ApiError> {
    let command = PostCommand::Update {
        actor: caller.actor(),
        expected_version,
        title: req.title.as_deref().map(title).transpose()?,
        body: req.body.as_deref().map(body).transpose()?,
        tags: req.tags.as_deref().map(tags).transpose()?,
        at: crate::commands::now(),
    };
    let done = state
        .posts
        .execute(
            id.to_string(),
            command,
            &meta.command(Some(caller.user_id)),
            expected_version.is_none(),
        )
        .await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &done,
        prefer_async,
        PostView::from_state,
    )
    .await)
}

/// Replace a post.
///
/// Replaces title, body and tags. The author and admins; someone else's draft is a 404, like
/// an id that does not exist.
#[utoipa::path(
    put,
    path = "/api/v1/posts/{id}",
    tag = "posts",
    request_body = ReplacePostRequest,
    params(IdPath, WriteHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The replaced post", body = Data<PostView>,
            headers(("ETag"), ("Chronicle-Position"), ("X-Consistency"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
    )
)]
pub(super) async fn replace_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    ValidatedJson(req): ValidatedJson<ReplacePostRequest>,
) -> Result<Answer<PostView>, ApiError> {
    let command = PostCommand::Replace {
        actor: caller.actor(),
        expected_version,
        title: title(&req.title)?,
        body: body(&req.body)?,
        tags: tags(&req.tags)?,
        at: crate::commands::now(),
    };
    let done = state
        .posts
        .execute(
            id.to_string(),
            command,
            &meta.command(Some(caller.user_id)),
            expected_version.is_none(),
        )
        .await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &done,
        prefer_async,
        PostView::from_state,
    )
    .await)
}

/// Publish, unpublish and delete share their shape: a transition with an optional `If-Match`.
async fn transition(
    state: &AppState,
    caller: &crate::auth::Principal,
    id: PostId,
    meta: &RequestMeta,
    expected_version: Option<u64>,
    command: PostCommand,
) -> Result<Executed<Post>, ApiError> {
    Ok(state
        .posts
        .execute(
            id.to_string(),
            command,
            &meta.command(Some(caller.user_id)),
            expected_version.is_none(),
        )
        .await?)
}

/// Publish a post.
///
/// The author and admins; someone else's draft is a 404, like an id that does not exist.
#[utoipa::path(
    post,
    path = "/api/v1/posts/{id}/publish",
    tag = "posts",
    params(IdPath, WriteHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The published post", body = Data<PostView>,
            headers(("ETag"), ("Chronicle-Position"), ("X-Consistency"))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "INVALID_STATE_TRANSITION: the post is already published.",
            body = Problem, content_type = "application/problem+json"),
        (status = 412, response = PreconditionFailed),
    )
)]
pub(super) async fn publish_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Answer<PostView>, ApiError> {
    let command = PostCommand::Publish {
        actor: caller.actor(),
        expected_version,
        at: crate::commands::now(),
    };
    let done = transition(&state, &caller, id, &meta, expected_version, command).await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &done,
        prefer_async,
        PostView::from_state,
    )
    .await)
}

/// Unpublish a post.
///
/// Turns a published post back into a draft. The author and admins; someone else's draft is a
/// 404, like an id that does not exist.
#[utoipa::path(
    post,
    path = "/api/v1/posts/{id}/unpublish",
    tag = "posts",
    params(IdPath, WriteHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The post, a draft again", body = Data<PostView>,
            headers(("ETag"), ("Chronicle-Position"), ("X-Consistency"))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "INVALID_STATE_TRANSITION: the post is not published.",
            body = Problem, content_type = "application/problem+json"),
        (status = 412, response = PreconditionFailed),
    )
)]
pub(super) async fn unpublish_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Answer<PostView>, ApiError> {
    let command = PostCommand::Unpublish {
        actor: caller.actor(),
        expected_version,
        at: crate::commands::now(),
    };
    let done = transition(&state, &caller, id, &meta, expected_version, command).await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &done,
        prefer_async,
        PostView::from_state,
    )
    .await)
}

/// Delete a post.
///
/// The author and admins. The post is then a 404; its history stays. Someone else's draft is a
/// 404 too, like an id that does not exist.
#[utoipa::path(
    delete,
    path = "/api/v1/posts/{id}",
    tag = "posts",
    params(IdPath, WriteHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Deleted",
            headers(("Chronicle-Position"), ("X-Consistency"))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
    )
)]
pub(super) async fn delete_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Response, ApiError> {
    let command = PostCommand::Delete {
        actor: caller.actor(),
        expected_version,
        at: crate::commands::now(),
    };
    let done = transition(&state, &caller, id, &meta, expected_version, command).await?;
    let fresh = !prefer_async && caught_up(&state, READ_MODELS, done.position).await;
    Ok(no_content(done.position, !fresh))
}
