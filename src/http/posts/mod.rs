//! `/posts`: commands in [`write`], queries in [`read`].

mod read;
mod write;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub use read::list_author_posts;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/posts", post(write::create_post).get(read::list_posts))
        .route(
            "/posts/{id}",
            get(read::get_post)
                .patch(write::update_post)
                .put(write::replace_post)
                .delete(write::delete_post),
        )
        .route("/posts/{id}/publish", post(write::publish_post))
        .route("/posts/{id}/unpublish", post(write::unpublish_post))
        .route("/posts/{id}/history", get(read::post_history))
}
