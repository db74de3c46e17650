//! Commands on `/users`: admin-created users, profile changes, email verification, passwords, deactivation.

use aggregates::user::UserCommand;
use aggregates::UserId;
use axum::extract::State;

use crate::app::accounts;
use crate::app::sessions;
use crate::http::consistency::{command_answer, when_applied, PreferAsync};
use crate::http::error::ApiError;
use crate::http::extract::{
    AccountManager, AdminUser, AuthUser, IfMatch, Parsed, PathId, RequestMeta,
};
use crate::http::openapi::schemas::{
    CommandHeaders, Data, Forbidden, IdPath, Problem, WriteHeaders,
};
use crate::http::respond::Answer;
use crate::http::users::requests::{
    ChangePasswordRequest, CreateUserRequest, ReplaceUserRequest, UpdateUserRequest,
    VerifyEmailRequest,
};
use crate::http::views::UserView;
use crate::state::AppState;

/// The read models a user command's answer and the following reads depend on.
const READ_MODELS: &[&str] = &["users", "sessions"];

/// Create a user.
///
/// Admins only; the way to make more admins.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = CreateUserRequest,
    params(CommandHeaders),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 201, description = "Created", body = Data<UserView>,
            headers(("Location"), ("ETag"), ("Chronicle-Position"), ("X-Consistency"))),
        (status = 409, description = "EMAIL_TAKEN: another user has this email (case-insensitively).",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    Parsed(registration): Parsed<CreateUserRequest>,
) -> Result<Answer<UserView>, ApiError> {
    let executed = accounts::register(
        &state,
        &meta.command_meta(Some(admin.user_id)),
        registration,
    )
    .await?;
    let location = format!(
        "/api/v1/users/{}",
        executed
            .state
            .id
            .map(|id| id.to_string())
            .unwrap_or_default()
    );
    Ok(command_answer(
        &state,
        READ_MODELS,
        &executed,
        prefer_async,
        UserView::from_state,
    )
    .await
    .created(location))
}

/// Update a user.
///
/// The user themselves and admins: `name` and `bio`; admins also `role` and `status`
/// (`deactivated` signs the user out everywhere).
#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    tag = "users",
    request_body = UpdateUserRequest,
    params(IdPath, WriteHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The updated user", body = Data<UserView>,
            headers(("ETag"), ("Chronicle-Position"), ("X-Consistency"))),
        (status = 403, response = Forbidden),
        (status = 409, description = "INVALID_STATE_TRANSITION: the user is deactivated.",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn update_user(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<UserId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    Parsed(changes): Parsed<UpdateUserRequest>,
) -> Result<Answer<UserView>, ApiError> {
    // Deactivating or demoting oneself is managing one's account, which no key may do to its
    // creator (DELETE and the password change refuse it the same way).
    let manages_account = changes.role.is_some() || changes.status.is_some();
    if manages_account && caller.is_api_key() && caller.user_id == id {
        return Err(ApiError::Forbidden);
    }
    let command = UserCommand::Update {
        actor: caller.actor(),
        expected_version,
        changes,
        at: crate::commands::now(),
    };
    let executed = state
        .users
        .execute(
            id.to_string(),
            command,
            &meta.command_meta(Some(caller.user_id)),
            expected_version.is_none(),
        )
        .await?;
    sessions::end_if_deactivated(
        &state,
        &meta.command_meta(Some(caller.user_id)),
        id,
        &executed.events,
    )
    .await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &executed,
        prefer_async,
        UserView::from_state,
    )
    .await)
}

/// Replace a user's profile.
///
/// Replaces `name` and `bio` (both required). The user themselves and admins.
#[utoipa::path(
    put,
    path = "/api/v1/users/{id}",
    tag = "users",
    request_body = ReplaceUserRequest,
    params(IdPath, WriteHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The updated user", body = Data<UserView>,
            headers(("ETag"), ("Chronicle-Position"), ("X-Consistency"))),
        (status = 403, response = Forbidden),
        (status = 409, description = "INVALID_STATE_TRANSITION: the user is deactivated.",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn replace_user(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<UserId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    Parsed(changes): Parsed<ReplaceUserRequest>,
) -> Result<Answer<UserView>, ApiError> {
    let command = UserCommand::Update {
        actor: caller.actor(),
        expected_version,
        changes,
        at: crate::commands::now(),
    };
    let executed = state
        .users
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
        UserView::from_state,
    )
    .await)
}

/// Deactivate a user.
///
/// The user themselves and admins. Revokes every session; signing in then fails.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    tag = "users",
    params(IdPath, WriteHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Deactivated",
            headers(("Chronicle-Position"), ("X-Consistency"))),
        (status = 403, response = Forbidden),
        (status = 409, description = "INVALID_STATE_TRANSITION: the user is already deactivated.",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn deactivate_user(
    State(state): State<AppState>,
    AccountManager(caller): AccountManager,
    PathId(id): PathId<UserId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Answer<()>, ApiError> {
    let command = UserCommand::Deactivate {
        actor: caller.actor(),
        expected_version,
        at: crate::commands::now(),
    };
    let executed = state
        .users
        .execute(
            id.to_string(),
            command,
            &meta.command_meta(Some(caller.user_id)),
            expected_version.is_none(),
        )
        .await?;
    let revoked = sessions::end_if_deactivated(
        &state,
        &meta.command_meta(Some(caller.user_id)),
        id,
        &executed.events,
    )
    .await?;
    let position = revoked.or(executed.position);
    Ok(when_applied(
        &state,
        READ_MODELS,
        position,
        prefer_async,
        Answer::no_content(),
    )
    .await)
}

/// Verify a user's email.
///
/// The user themselves, with the token from the link in their newest welcome or verification
/// email. A wrong, used or expired (24 h) token is a 422 on the field `token`.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/verify-email",
    tag = "users",
    request_body = VerifyEmailRequest,
    params(IdPath, CommandHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The user, with `email_verified: true`", body = Data<UserView>,
            headers(("ETag"), ("Chronicle-Position"), ("X-Consistency"))),
        (status = 403, response = Forbidden),
        (status = 409, description = "INVALID_STATE_TRANSITION: already verified, or the user is deactivated.",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn verify_email(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<UserId>,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    Parsed(token): Parsed<VerifyEmailRequest>,
) -> Result<Answer<UserView>, ApiError> {
    let command = UserCommand::VerifyEmail {
        actor: caller.actor(),
        token_hash: crate::email::tokens::hash(&token),
        at: crate::commands::now(),
    };
    let executed = state
        .users
        .execute(
            id.to_string(),
            command,
            &meta.command_meta(Some(caller.user_id)),
            true,
        )
        .await?;
    Ok(command_answer(
        &state,
        READ_MODELS,
        &executed,
        prefer_async,
        UserView::from_state,
    )
    .await)
}

/// Change a user's password.
///
/// The user themselves. Every other session of the user is revoked.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/password",
    tag = "users",
    request_body = ChangePasswordRequest,
    params(IdPath, CommandHeaders),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Changed", headers(("Chronicle-Position"), ("X-Consistency"))),
        (status = 401, description = "UNAUTHORIZED (credentials) or INVALID_CREDENTIALS (wrong current password).",
            body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate"))),
        (status = 403, response = Forbidden),
        (status = 409, description = "INVALID_STATE_TRANSITION: the user is deactivated.",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn change_password(
    State(state): State<AppState>,
    AccountManager(caller): AccountManager,
    PathId(id): PathId<UserId>,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    Parsed(change): Parsed<ChangePasswordRequest>,
) -> Result<Answer<()>, ApiError> {
    let position = accounts::change_password(
        &state,
        &meta.command_meta(Some(caller.user_id)),
        &caller,
        id,
        change.current_password,
        &change.new_password,
    )
    .await?;
    Ok(when_applied(
        &state,
        READ_MODELS,
        position,
        prefer_async,
        Answer::no_content(),
    )
    .await)
}
