//! Commands on `/posts`: writing, editing, publishing and deleting posts.

use aggregates::post::{Post, PostCommand};
use aggregates::values::{PostBody, PostTitle, Tags};
use aggregates::PostId;
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use validator::{Validate, ValidationErrors};

use crate::commands::Executed;
use crate::http::consistency::{caught_up, PreferAsync};
use crate::http::error::ApiError;
use crate::http::extract::{AuthUser, IfMatch, PathId, RequestMeta, ValidatedJson};
use crate::http::respond::{no_content, Answer};
use crate::http::validate::Rules;
use crate::http::views::PostView;
use crate::state::AppState;

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

/// Answers from the read model once it has applied the command's events (bounded wait);
/// from the aggregate's state, marked eventual, when the wait ran out or was declined.
async fn post_answer(
    state: &AppState,
    done: Executed<Post>,
    prefer_async: bool,
) -> Result<Answer<PostView>, ApiError> {
    let fresh = !prefer_async && caught_up(state, READ_MODELS, done.position).await;
    let row = match (fresh, done.state.id) {
        (true, Some(id)) => projections::posts::find(&state.pool, *id.as_uuid())
            .await
            .map_err(ApiError::internal)?,
        _ => None,
    };
    let view = row.map_or_else(|| PostView::from_state(&done.state), PostView::from_row);
    Ok(Answer::ok(view)
        .etag(done.version)
        .position(done.position)
        .eventual(!fresh))
}

/// The read models a post command's answer and the following reads depend on.
const READ_MODELS: &[&str] = &["posts"];

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
    Ok(post_answer(&state, done, prefer_async)
        .await?
        .created(format!("/api/v1/posts/{post_id}")))
}

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
    post_answer(&state, done, prefer_async).await
}

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
    post_answer(&state, done, prefer_async).await
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
        at: Utc::now(),
    };
    let done = transition(&state, &caller, id, &meta, expected_version, command).await?;
    post_answer(&state, done, prefer_async).await
}

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
        at: Utc::now(),
    };
    let done = transition(&state, &caller, id, &meta, expected_version, command).await?;
    post_answer(&state, done, prefer_async).await
}

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
        at: Utc::now(),
    };
    let done = transition(&state, &caller, id, &meta, expected_version, command).await?;
    let fresh = !prefer_async && caught_up(&state, READ_MODELS, done.position).await;
    Ok(no_content(done.position, !fresh))
}
