//! `/me`: the signed-in caller's own user and sessions.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::consistency::{read_position, MinPosition};
use crate::http::error::ApiError;
use crate::http::extract::{AuthUser, SessionUser};
use crate::http::openapi::schemas::{Data, Forbidden, Items, NotFound, ReadHeaders, SessionView};
use crate::http::respond::Answer;
use crate::http::views::UserView;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me))
        .routes(routes!(list_my_sessions))
}

/// The signed-in caller's user.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "me",
    params(ReadHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The caller's full user", body = Data<UserView>,
            headers(("ETag"), ("Chronicle-Position"))),
        (status = 404, response = NotFound),
    )
)]
async fn get_me(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    min: MinPosition,
) -> Result<Response, ApiError> {
    let position = read_position(&state, &["users"], &min).await?;
    let row = projections::users::find(&state.pool, *caller.user_id.as_uuid())
        .await?
        .ok_or(ApiError::NotFound)?;
    let version = row.version as u64;
    Ok(Answer::ok(UserView::from_row(row))
        .etag(version)
        .position(Some(position))
        .into_response())
}

/// My active sessions.
#[utoipa::path(
    get,
    path = "/api/v1/me/sessions",
    tag = "me",
    params(ReadHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The caller's active sessions", body = Items<SessionView>,
            headers(("Chronicle-Position"))),
        (status = 403, response = Forbidden),
    )
)]
async fn list_my_sessions(
    State(state): State<AppState>,
    SessionUser(caller): SessionUser,
    min: MinPosition,
) -> Result<Answer<Vec<SessionView>>, ApiError> {
    let position = read_position(&state, &["sessions"], &min).await?;
    let sessions =
        projections::sessions::active_for_user(&state.pool, *caller.user_id.as_uuid()).await?;
    let data = sessions
        .into_iter()
        .map(|s| SessionView {
            current: caller
                .session_id()
                .is_some_and(|sid| *sid.as_uuid() == s.id),
            id: s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            ip: s.ip,
            user_agent: s.user_agent,
        })
        .collect();
    Ok(Answer::ok(data).position(Some(position)))
}
