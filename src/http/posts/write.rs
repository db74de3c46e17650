//! Commands on `/posts`: writing, editing, publishing and deleting posts.

use aggregates::post::{Post, PostCommand};
use aggregates::values::{PostBody, PostTitle, Tags};
use aggregates::PostId;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::commands::Executed;
use crate::http::consistency::{command_answer, when_applied, PreferAsync};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{AuthUser, IfMatch, Parsed, PathId, RequestMeta};
use crate::http::openapi::schemas::{
    self, CommandHeaders, Data, Forbidden, IdPath, Problem, WriteHeaders,
};
use crate::http::parse::{one_of, Fields, Parse};
use crate::http::respond::Answer;
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

/// A new post, parsed.
pub struct NewPost {
    title: PostTitle,
    body: PostBody,
    tags: Tags,
    publish: bool,
}

impl Parse for CreatePostRequest {
    type Output = NewPost;

    fn parse(self) -> Result<NewPost, Vec<FieldError>> {
        let mut fields = Fields::default();
        let title = fields.take("title", PostTitle::parse(&self.title));
        let body = fields.take("body", PostBody::parse(&self.body));
        let tags = fields.tags("tags", self.tags.as_deref().unwrap_or_default());
        let publish = one_of(
            &mut fields,
            "status",
            self.status.as_deref(),
            |status| match status {
                "draft" => Some(false),
                "published" => Some(true),
                _ => None,
            },
            "must be draft or published",
        );
        fields.finish((|| {
            Some(NewPost {
                title: title?,
                body: body?,
                tags: tags?,
                publish: publish?.unwrap_or(false),
            })
        })())
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

/// The fields a `PATCH` changes, parsed.
pub struct PostEdit {
    title: Option<PostTitle>,
    body: Option<PostBody>,
    tags: Option<Tags>,
}

impl Parse for UpdatePostRequest {
    type Output = PostEdit;

    fn parse(self) -> Result<PostEdit, Vec<FieldError>> {
        let mut fields = Fields::default();
        let title = fields.optional("title", self.title.as_deref(), PostTitle::parse);
        let body = fields.optional("body", self.body.as_deref(), PostBody::parse);
        let tags = match &self.tags {
            None => Some(None),
            Some(raw) => fields.tags("tags", raw).map(Some),
        };
        fields.finish((|| {
            Some(PostEdit {
                title: title?,
                body: body?,
                tags: tags?,
            })
        })())
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

/// A post's whole content, parsed.
pub struct PostContent {
    title: PostTitle,
    body: PostBody,
    tags: Tags,
}

impl Parse for ReplacePostRequest {
    type Output = PostContent;

    fn parse(self) -> Result<PostContent, Vec<FieldError>> {
        let mut fields = Fields::default();
        let title = fields.take("title", PostTitle::parse(&self.title));
        let body = fields.take("body", PostBody::parse(&self.body));
        let tags = fields.tags("tags", &self.tags);
        fields.finish((|| {
            Some(PostContent {
                title: title?,
                body: body?,
                tags: tags?,
            })
        })())
    }
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
    )
)]
pub(super) async fn create_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    Parsed(post): Parsed<CreatePostRequest>,
) -> Result<Answer<PostView>, ApiError> {
    let post_id = PostId::from_uuid(uuid::Uuid::now_v7());
    let command = PostCommand::Create {
        post_id,
        actor: caller.actor(),
        title: post.title,
        body: post.body,
        tags: post.tags,
        publish: post.publish,
        at: crate::commands::now(),
    };
    let executed = state
        .posts
        .create(
            post_id.to_string(),
            command,
            &meta.command_meta(Some(caller.user_id)),
        )
        .await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &executed,
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
        (status = 403, response = Forbidden),
    )
)]
pub(super) async fn update_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    Parsed(edit): Parsed<UpdatePostRequest>,
) -> Result<Answer<PostView>, ApiError> {
    let command = PostCommand::Update {
        actor: caller.actor(),
        expected_version,
        title: edit.title,
        body: edit.body,
        tags: edit.tags,
        at: crate::commands::now(),
    };
    let executed = state
        .posts
        .execute(
            id.to_string(),
            command,
            &meta.command_meta(Some(caller.user_id)),
            expected_version.is_none(),
        )
        .await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &executed,
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
        (status = 403, response = Forbidden),
    )
)]
pub(super) async fn replace_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    Parsed(content): Parsed<ReplacePostRequest>,
) -> Result<Answer<PostView>, ApiError> {
    let command = PostCommand::Replace {
        actor: caller.actor(),
        expected_version,
        title: content.title,
        body: content.body,
        tags: content.tags,
        at: crate::commands::now(),
    };
    let executed = state
        .posts
        .execute(
            id.to_string(),
            command,
            &meta.command_meta(Some(caller.user_id)),
            expected_version.is_none(),
        )
        .await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &executed,
        prefer_async,
        PostView::from_state,
    )
    .await)
}

/// Publish, unpublish and delete share their shape: a transition with an optional `If-Match`.
async fn execute_post_command(
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
            &meta.command_meta(Some(caller.user_id)),
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
        (status = 403, response = Forbidden),
        (status = 409, description = "INVALID_STATE_TRANSITION: the post is already published.",
            body = Problem, content_type = "application/problem+json"),
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
    let executed =
        execute_post_command(&state, &caller, id, &meta, expected_version, command).await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &executed,
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
        (status = 403, response = Forbidden),
        (status = 409, description = "INVALID_STATE_TRANSITION: the post is not published.",
            body = Problem, content_type = "application/problem+json"),
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
    let executed =
        execute_post_command(&state, &caller, id, &meta, expected_version, command).await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &executed,
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
        (status = 403, response = Forbidden),
    )
)]
pub(super) async fn delete_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Answer<()>, ApiError> {
    let command = PostCommand::Delete {
        actor: caller.actor(),
        expected_version,
        at: crate::commands::now(),
    };
    let executed =
        execute_post_command(&state, &caller, id, &meta, expected_version, command).await?;
    Ok(when_applied(
        &state,
        READ_MODELS,
        executed.position,
        prefer_async,
        Answer::no_content(),
    )
    .await)
}
