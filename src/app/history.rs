//! Histories: an aggregate's own events, oldest first, in their public form, for those who may
//! see them.

use aggregates::post::PostStatus;
use aggregates::{PostId, UserId};
use serde_json::Value;

use crate::app::AppError;
use crate::auth::Principal;
use crate::state::AppState;

/// A user's events; the user themselves and admins only.
#[tracing::instrument(level = "trace", name = "query history.of_user", skip_all)]
pub async fn of_user(
    state: &AppState,
    caller: &Principal,
    user: UserId,
) -> Result<Vec<Value>, AppError> {
    if !caller.actor().may_act_for(user) {
        return Err(AppError::Forbidden);
    }
    let events = public_events(state, "user", &user.to_string()).await?;
    if events.is_empty() {
        return Err(AppError::NotFound);
    }
    Ok(events)
}

/// A post's events, deleted posts included; the author and admins only.
#[tracing::instrument(level = "trace", name = "query history.of_post", skip_all)]
pub async fn of_post(
    state: &AppState,
    caller: &Principal,
    post_id: PostId,
) -> Result<Vec<Value>, AppError> {
    let (post, _) = state.posts.load(&post_id.to_string()).await?;
    let author = post.author_id.ok_or(AppError::NotFound)?;
    if !caller.actor().may_act_for(author) {
        // Someone else's drafts must not be discoverable through their history either.
        return Err(if post.status == PostStatus::Published && !post.deleted {
            AppError::Forbidden
        } else {
            AppError::NotFound
        });
    }
    public_events(state, "post", &post_id.to_string()).await
}

async fn public_events(
    state: &AppState,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<Value>, AppError> {
    let events =
        projections::log::aggregate_events(&state.pool, aggregate_type, aggregate_id).await?;
    Ok(events
        .iter()
        .map(projections::public::public_event)
        .collect())
}
