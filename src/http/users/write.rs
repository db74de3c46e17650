//! Commands on `/users`: admin-created users, profile changes, email verification, passwords, deactivation.

use aggregates::user::{User, UserChanges, UserCommand, UserEvent, UserStatus};
use aggregates::values::{Bio, Email, Password, UserName};
use aggregates::{Actor, Role, UserId};
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use validator::{Validate, ValidationError, ValidationErrors};

use crate::commands::Executed;
use crate::http::auth::register_user;
use crate::http::consistency::{caught_up, PreferAsync};
use crate::http::error::ApiError;
use crate::http::extract::{AdminUser, AuthUser, IfMatch, PathId, RequestMeta, ValidatedJson};
use crate::http::respond::{no_content, Answer};
use crate::http::sessions::revoke_sessions_of;
use crate::http::validate::Rules;
use crate::http::views::UserView;
use crate::state::AppState;

fn parse_role(raw: &str) -> Result<Role, ValidationError> {
    Role::parse(raw).ok_or_else(|| {
        let mut e = ValidationError::new("ENUM");
        e.message = Some("must be user or admin".into());
        e
    })
}

fn parse_status(raw: &str) -> Option<UserStatus> {
    match raw {
        "active" => Some(UserStatus::Active),
        "deactivated" => Some(UserStatus::Deactivated),
        _ => None,
    }
}

fn enum_error(rules: &mut Rules, field: &str, message: &str) {
    rules.check::<()>(
        field,
        Err(aggregates::values::ValueError {
            code: "ENUM",
            message: message.to_owned(),
        }),
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: String,
    pub name: String,
    pub password: String,
    pub role: Option<String>,
}

impl Validate for CreateUserRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        rules
            .check("email", Email::parse(&self.email))
            .check("name", UserName::parse(&self.name))
            .check("password", Password::parse(&self.password));
        if self.role.as_deref().is_some_and(|r| parse_role(r).is_err()) {
            enum_error(&mut rules, "role", "must be user or admin");
        }
        rules.finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub name: Option<String>,
    pub bio: Option<String>,
    pub role: Option<String>,
    pub status: Option<String>,
}

impl Validate for UpdateUserRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        if let Some(name) = &self.name {
            rules.check("name", UserName::parse(name));
        }
        if let Some(bio) = &self.bio {
            rules.check("bio", Bio::parse(bio));
        }
        if self.role.as_deref().is_some_and(|r| parse_role(r).is_err()) {
            enum_error(&mut rules, "role", "must be user or admin");
        }
        if self
            .status
            .as_deref()
            .is_some_and(|s| parse_status(s).is_none())
        {
            enum_error(&mut rules, "status", "must be active or deactivated");
        }
        rules.finish()
    }
}

impl UpdateUserRequest {
    fn changes(self) -> Result<UserChanges, ApiError> {
        Ok(UserChanges {
            name: self
                .name
                .as_deref()
                .map(UserName::parse)
                .transpose()
                .map_err(invalid("name"))?,
            bio: self
                .bio
                .as_deref()
                .map(Bio::parse)
                .transpose()
                .map_err(invalid("bio"))?,
            role: self.role.as_deref().and_then(Role::parse),
            status: self.status.as_deref().and_then(parse_status),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceUserRequest {
    pub name: String,
    pub bio: String,
}

impl Validate for ReplaceUserRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        rules
            .check("name", UserName::parse(&self.name))
            .check("bio", Bio::parse(&self.bio));
        rules.finish()
    }
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    #[validate(length(min = 1, max = 256, message = "must be 1 to 256 characters"))]
    pub token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

impl Validate for ChangePasswordRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        rules.check("new_password", Password::parse(&self.new_password));
        if self.current_password.is_empty() || self.current_password.chars().count() > 128 {
            rules.check::<()>(
                "current_password",
                Err(aggregates::values::ValueError {
                    code: "LENGTH",
                    message: "must be 1 to 128 characters".into(),
                }),
            );
        }
        rules.finish()
    }
}

fn invalid(field: &'static str) -> impl Fn(aggregates::values::ValueError) -> ApiError {
    move |e| ApiError::field(field, e.code, &e.message)
}

/// Answers from the read model once it has applied the command's events (bounded wait);
/// from the aggregate's state, marked eventual, when the wait ran out or was declined.
async fn user_answer(
    state: &AppState,
    done: Executed<User>,
    prefer_async: bool,
) -> Result<Answer<UserView>, ApiError> {
    let fresh = !prefer_async && caught_up(state, READ_MODELS, done.position).await;
    let row = match (fresh, done.state.id) {
        (true, Some(id)) => projections::users::find(&state.pool, *id.as_uuid())
            .await
            .map_err(ApiError::internal)?,
        _ => None,
    };
    let view = row.map_or_else(|| UserView::from_state(&done.state), UserView::from_row);
    Ok(Answer::ok(view)
        .etag(done.version)
        .position(done.position)
        .eventual(!fresh))
}

/// The read models a user command's answer and the following reads depend on.
const READ_MODELS: &[&str] = &["users", "sessions"];

pub(super) async fn create_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    ValidatedJson(body): ValidatedJson<CreateUserRequest>,
) -> Result<Answer<UserView>, ApiError> {
    let email = Email::parse(&body.email).map_err(invalid("email"))?;
    let name = UserName::parse(&body.name).map_err(invalid("name"))?;
    let password = Password::parse(&body.password).map_err(invalid("password"))?;
    let role = body
        .role
        .as_deref()
        .and_then(Role::parse)
        .unwrap_or_default();

    let done = register_user(
        &state,
        &meta.command(Some(admin.user_id)),
        email,
        name,
        password,
        role,
    )
    .await?;
    let location = format!(
        "/api/v1/users/{}",
        done.state.id.map(|id| id.to_string()).unwrap_or_default()
    );
    Ok(user_answer(&state, done, prefer_async)
        .await?
        .created(location))
}

pub(super) async fn update_user(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<UserId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    ValidatedJson(body): ValidatedJson<UpdateUserRequest>,
) -> Result<Answer<UserView>, ApiError> {
    let command = UserCommand::Update {
        actor: caller.actor(),
        expected_version,
        changes: body.changes()?,
        at: Utc::now(),
    };
    let done = state
        .users
        .execute(
            id.to_string(),
            command,
            &meta.command(Some(caller.user_id)),
            expected_version.is_none(),
        )
        .await?;
    end_sessions_if_deactivated(&state, &meta, &caller, id, &done).await?;
    user_answer(&state, done, prefer_async).await
}

pub(super) async fn replace_user(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<UserId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    ValidatedJson(body): ValidatedJson<ReplaceUserRequest>,
) -> Result<Answer<UserView>, ApiError> {
    let changes = UserChanges {
        name: Some(UserName::parse(&body.name).map_err(invalid("name"))?),
        bio: Some(Bio::parse(&body.bio).map_err(invalid("bio"))?),
        role: None,
        status: None,
    };
    let command = UserCommand::Update {
        actor: caller.actor(),
        expected_version,
        changes,
        at: Utc::now(),
    };
    let done = state
        .users
        .execute(
            id.to_string(),
            command,
            &meta.command(Some(caller.user_id)),
            expected_version.is_none(),
        )
        .await?;
    user_answer(&state, done, prefer_async).await
}

pub(super) async fn deactivate_user(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<UserId>,
    IfMatch(expected_version): IfMatch,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
) -> Result<Response, ApiError> {
    let command = UserCommand::Deactivate {
        actor: caller.actor(),
        expected_version,
        at: Utc::now(),
    };
    let done = state
        .users
        .execute(
            id.to_string(),
            command,
            &meta.command(Some(caller.user_id)),
            expected_version.is_none(),
        )
        .await?;
    let revoked = end_sessions_if_deactivated(&state, &meta, &caller, id, &done).await?;
    let position = revoked.or(done.position);
    let fresh = !prefer_async && caught_up(&state, READ_MODELS, position).await;
    Ok(no_content(position, !fresh))
}

/// A deactivated user is signed out everywhere (their refresh tokens stop working too).
async fn end_sessions_if_deactivated(
    state: &AppState,
    meta: &RequestMeta,
    caller: &crate::auth::Principal,
    user: UserId,
    done: &Executed<User>,
) -> Result<Option<projections::Position>, ApiError> {
    if !done
        .events
        .iter()
        .any(|e| matches!(e, UserEvent::Deactivated { .. }))
    {
        return Ok(None);
    }
    revoke_sessions_of(
        state,
        &meta.command(Some(caller.user_id)),
        Actor::System,
        user,
        None,
        "user deactivated",
    )
    .await
}

pub(super) async fn verify_email(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<UserId>,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    ValidatedJson(body): ValidatedJson<VerifyEmailRequest>,
) -> Result<Answer<UserView>, ApiError> {
    let command = UserCommand::VerifyEmail {
        actor: caller.actor(),
        token: body.token,
        at: Utc::now(),
    };
    let done = state
        .users
        .execute(
            id.to_string(),
            command,
            &meta.command(Some(caller.user_id)),
            true,
        )
        .await?;
    user_answer(&state, done, prefer_async).await
}

pub(super) async fn change_password(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    PathId(id): PathId<UserId>,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    ValidatedJson(body): ValidatedJson<ChangePasswordRequest>,
) -> Result<Response, ApiError> {
    if caller.user_id != id {
        return Err(ApiError::Forbidden);
    }
    let new_password_hash = state
        .passwords
        .hash(&body.new_password)
        .await
        .map_err(ApiError::internal)?;
    let command = UserCommand::ChangePassword {
        actor: caller.actor(),
        current_password: body.current_password,
        new_password_hash,
        at: Utc::now(),
    };
    let done = state
        .users
        .execute(
            id.to_string(),
            command,
            &meta.command(Some(caller.user_id)),
            true,
        )
        .await?;
    // A new password signs out every other session; the one that changed it stays.
    let revoked = revoke_sessions_of(
        &state,
        &meta.command(Some(caller.user_id)),
        caller.actor(),
        id,
        caller.session_id(),
        "password changed",
    )
    .await?;
    let position = revoked.or(done.position);
    let fresh = !prefer_async && caught_up(&state, READ_MODELS, position).await;
    Ok(no_content(position, !fresh))
}
