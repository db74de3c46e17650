//! `/posts`: writing, editing, publishing and deleting posts, and reading one.

use aggregates::post::{Post, PostCommand, PostStatus};
use aggregates::values::{PostBody, PostTitle, Tags};
use aggregates::PostId;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use serde::Deserialize;
use validator::{Validate, ValidationErrors};

use crate::commands::Executed;
use crate::http::error::ApiError;
use crate::http::extract::{AuthUser, IfMatch, MaybeAuthUser, PathId, RequestMeta, ValidatedJson};
use crate::http::respond::{no_content, not_modified, not_modified_response, Answer};
use crate::http::validate::Rules;
use crate::http::views::PostView;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/posts", post(create_post))
        .route(
            "/posts/{id}",
            get(get_post)
                .patch(update_post)
                .put(replace_post)
                .delete(delete_post),
        )
        .route("/posts/{id}/publish", post(publish_post))
        .route("/posts/{id}/unpublish", post(unpublish_post))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePostRequest {
    pub title: String,
    pub body: String,
    pub tags: Option<Vec<String>>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePostRequest {
    pub title: Option<String>,
    pub body: Option<String>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplacePostRequest {
    pub title: String,
    pub body: String,
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

fn post_answer(done: Executed<Post>) -> Answer<PostView> {
    Answer::ok(PostView::from_state(&done.state))
        .etag(done.version)
        .position(done.position)
}

async fn create_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    meta: RequestMeta,
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
        at: Utc::now(),
    };
    let done = state
        .posts
        .execute(
            post_id.to_string(),
            command,
            &meta.command(Some(caller.user_id)),
            false,
        )
        .await?;
    Ok(Answer::created(
        PostView::from_state(&done.state),
        format!("/api/v1/posts/{post_id}"),
    )
    .etag(done.version)
    .position(done.position))
}

/// Drafts exist only for their author and admins; everyone else gets the same 404 as for a
/// post that never existed.
async fn get_post(
    State(state): State<AppState>,
    MaybeAuthUser(caller): MaybeAuthUser,
    PathId(id): PathId<PostId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (post, version) = state.posts.load(&id.to_string()).await?;
    let visible = match (post.author_id, post.deleted, post.status) {
        (None, _, _) | (_, true, _) => false,
        (Some(_), false, PostStatus::Published) => true,
        (Some(author), false, PostStatus::Draft) => {
            caller.is_some_and(|c| c.is_admin() || c.user_id == author)
        }
    };
    if !visible {
        return Err(ApiError::NotFound);
    }
    if not_modified(&headers, version) {
        return Ok(not_modified_response(version));
    }
    Ok(Answer::ok(PostView::from_state(&post))
        .etag(version)
        .into_response())
}

async fn update_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    ValidatedJson(req): ValidatedJson<UpdatePostRequest>,
) -> Result<Answer<PostView>, ApiError> {
    let command = PostCommand::Update {
        actor: caller.actor(),
        expected_version,
        title: req.title.as_deref().map(title).transpose()?,
        body: req.body.as_deref().map(body).transpose()?,
        tags: req.tags.as_deref().map(tags).transpose()?,
        at: Utc::now(),
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
    Ok(post_answer(done))
}

async fn replace_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    ValidatedJson(req): ValidatedJson<ReplacePostRequest>,
) -> Result<Answer<PostView>, ApiError> {
    let command = PostCommand::Replace {
        actor: caller.actor(),
        expected_version,
        title: title(&req.title)?,
        body: body(&req.body)?,
        tags: tags(&req.tags)?,
        at: Utc::now(),
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
    Ok(post_answer(done))
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

async fn publish_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
) -> Result<Answer<PostView>, ApiError> {
    let command = PostCommand::Publish {
        actor: caller.actor(),
        expected_version,
        at: Utc::now(),
    };
    Ok(post_answer(
        transition(&state, &caller, id, &meta, expected_version, command).await?,
    ))
}

async fn unpublish_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
) -> Result<Answer<PostView>, ApiError> {
    let command = PostCommand::Unpublish {
        actor: caller.actor(),
        expected_version,
        at: Utc::now(),
    };
    Ok(post_answer(
        transition(&state, &caller, id, &meta, expected_version, command).await?,
    ))
}

async fn delete_post(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<PostId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let command = PostCommand::Delete {
        actor: caller.actor(),
        expected_version,
        at: Utc::now(),
    };
    let done = transition(&state, &caller, id, &meta, expected_version, command).await?;
    Ok(no_content(done.position))
}
