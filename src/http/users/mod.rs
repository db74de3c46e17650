//! `/users`: commands in [`write`] (their bodies in [`requests`]), queries in [`read`]. An author's posts, `/users/{id}/posts`,
//! are served by [`crate::http::posts`].

mod read;
mod requests;
mod verification;
mod write;

pub use verification::{sent, Sent};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(write::create_user, read::list_users))
        .routes(routes!(
            read::get_user,
            write::update_user,
            write::replace_user,
            write::deactivate_user
        ))
        .routes(routes!(write::verify_email))
        .routes(routes!(verification::send_verification))
        .routes(routes!(write::change_password))
        .routes(routes!(read::user_history))
}
