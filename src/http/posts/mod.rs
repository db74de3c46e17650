//! `/posts`: commands in [`write`], queries in [`read`], and an author's posts
//! (`/users/{id}/posts`), which read the same read model.

mod read;
mod write;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(write::create_post, read::list_posts))
        .routes(routes!(
            read::get_post,
            write::update_post,
            write::replace_post,
            write::delete_post
        ))
        .routes(routes!(write::publish_post))
        .routes(routes!(write::unpublish_post))
        .routes(routes!(read::post_history))
        .routes(routes!(read::list_author_posts))
}
