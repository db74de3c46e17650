//! Read-your-writes: commands wait (bounded) for the read models that serve their answer, and
//! queries honour `Chronicle-Min-Position` and report the position their read models are at.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderName;
use projections::Position;

use crate::app::{caught_up, CONSISTENCY_WAIT};
use crate::http::error::{ApiError, FieldError};
use crate::http::respond::Answer;
use crate::state::AppState;

pub static CHRONICLE_MIN_POSITION: HeaderName = HeaderName::from_static("chronicle-min-position");

/// `Prefer: respond-async`: answer once the events are stored, without waiting for read models.
pub struct PreferAsync(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for PreferAsync {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let wants_async = parts
            .headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("respond-async"));
        Ok(PreferAsync(wants_async))
    }
}

/// `Chronicle-Min-Position`: the log position a query's read models must have reached.
pub struct MinPosition(pub Option<Position>);

impl<S: Send + Sync> FromRequestParts<S> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(raw) = parts.headers.get(&CHRONICLE_MIN_POSITION) else {
            return Ok(MinPosition(None));
        };
        raw.to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .map(|p| MinPosition(Some(p)))
            .ok_or_else(|| ApiError::Malformed {
                detail: "Chronicle-Min-Position is not a position token".into(),
                errors: vec![FieldError::new(
                    "Chronicle-Min-Position",
                    "FORMAT",
                    "must be a token from a Chronicle-Position header",
                )],
            })
    }
}

/// Gives `answer` once `read_models` have applied `position` (a bounded wait, declined with
/// `Prefer: respond-async`), carrying the position, and marked eventual when the wait ran out or
/// was declined.
pub async fn when_applied<T: serde::Serialize>(
    state: &AppState,
    read_models: &[&str],
    position: Option<Position>,
    prefer_async: bool,
    answer: Answer<T>,
) -> Answer<T> {
    let applied = !prefer_async && caught_up(state, read_models, position).await;
    answer.position(position).eventual(!applied)
}

/// A command's answer: the view of the aggregate's state after it, given once the read models
/// that serve the following reads have applied its events (bounded wait), marked eventual when
/// the wait ran out or was declined. The state is the command's own result, the version its
/// ETag names, even when a concurrent writer has already moved the read model further; the
/// views it builds equal the read models' byte for byte (`commands::now` keeps timestamps at
/// Postgres's precision), so nothing is read back.
pub async fn command_answer<A: cqrs_es::Aggregate, V: serde::Serialize>(
    state: &AppState,
    read_models: &[&str],
    done: &crate::commands::Executed<A>,
    prefer_async: bool,
    view: impl FnOnce(&A) -> V,
) -> Answer<V> {
    let answer = Answer::ok(view(&done.state)).etag(done.version);
    when_applied(state, read_models, done.position, prefer_async, answer).await
}

/// For queries: waits for the requested position (503 `PROJECTION_LAGGING` after the bound) and
/// returns the position the read models are at, for the answer's `Chronicle-Position`.
pub async fn read_position(
    state: &AppState,
    read_models: &[&str],
    min: &MinPosition,
) -> Result<Position, ApiError> {
    if !caught_up(state, read_models, min.0).await {
        return Err(ApiError::ProjectionLagging);
    }
    Ok(state.progress.least(read_models))
}

/// For reads of the log itself (`/events`, histories): the log's readable head, after waiting
/// (bounded, woken by new events) for a requested position.
pub async fn log_position(state: &AppState, min: &MinPosition) -> Result<Position, ApiError> {
    let mut wake = state.log_wake.subscribe();
    let deadline = tokio::time::Instant::now() + CONSISTENCY_WAIT;
    loop {
        wake.borrow_and_update();
        let head = projections::log::head(&state.pool).await?;
        match min.0 {
            Some(wanted) if head < wanted => {}
            _ => return Ok(head),
        }
        if tokio::time::timeout_at(deadline, wake.changed())
            .await
            .is_err()
        {
            return Err(ApiError::ProjectionLagging);
        }
    }
}
