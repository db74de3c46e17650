//! `/users`: commands in [`write`], queries in [`read`].

mod read;
mod write;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", post(write::create_user).get(read::list_users))
        .route(
            "/users/{id}",
            get(read::get_user)
                .patch(write::update_user)
                .put(write::replace_user)
                .delete(write::deactivate_user),
        )
        .route("/users/{id}/verify-email", post(write::verify_email))
        .route("/users/{id}/password", post(write::change_password))
        .route(
            "/users/{id}/posts",
            get(crate::http::posts::list_author_posts),
        )
        .route("/users/{id}/history", get(read::user_history))
}
