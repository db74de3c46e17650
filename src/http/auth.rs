//! `/auth`: registration and sign-in, each starting a session with an access and refresh token.

use std::net::SocketAddr;

use aggregates::session::SessionCommand;
use aggregates::user::{User, UserCommand};
use aggregates::values::{Email, Password, UserName};
use aggregates::{Role, SessionId, UserId};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use chrono::{Duration, TimeDelta};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use validator::{Validate, ValidationErrors};

use crate::auth::login_throttle::{self, Verdict};
use crate::auth::tokens::{new_refresh_token, sha256_hex};
use crate::commands::{CommandMeta, Executed};
use crate::email::tokens::TokenKind;
use crate::http::consistency::{caught_up, PreferAsync};
use crate::http::error::ApiError;
use crate::http::extract::{RequestMeta, ValidatedJson};
use crate::http::openapi::schemas::{
    BadRequest, CommandHeaders, Data, PayloadTooLarge, Problem, UnsupportedMediaType,
    ValidationFailed,
};
use crate::http::respond::Answer;
use crate::http::validate::Rules;
use crate::http::views::UserView;
use crate::state::AppState;

pub const REFRESH_TOKEN_DAYS: i64 = 30;

/// Sign-ins change users and sessions; a `GET /me` or `/me/sessions` right after must see them.
const READ_MODELS: &[&str] = &["users", "sessions"];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Unique, case-insensitively.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
}

impl Validate for RegisterRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut rules = Rules::new();
        rules
            .check("email", Email::parse(&self.email))
            .check("password", Password::parse(&self.password))
            .check("name", UserName::parse(&self.name));
        rules.finish()
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[validate(length(min = 1, max = 254, message = "must be 1 to 254 characters"))]
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    #[validate(length(min = 1, max = 128, message = "must be 1 to 128 characters"))]
    #[schema(min_length = 1, max_length = 128)]
    pub password: String,
}

/// A signed-in session: the user and a new token pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthAnswer {
    pub user: UserView,
    /// A JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque; exchange it at `/auth/refresh` (each one works once).
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds the access token is valid: 900, less when the session ends sooner.
    pub expires_in: i64,
}

/// Where a sign-in comes from, recorded on its session.
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// The IP is the one the rate limiter counts against (`TRUSTED_PROXIES` honoured), so a
    /// session behind a proxy shows the client, and a client cannot write its own.
    fn from_request(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Self {
        Self {
            ip: Some(state.rate_limits.client_ip(peer.ip(), headers).to_string()),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(512).collect()),
        }
    }
}

/// A configured duration as the aggregate's `TimeDelta` (start bounds them, so none saturates).
pub fn time_delta(duration: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// Registers a user: the email claim and the events are the aggregate's business; this only
/// hashes the password first, off the runtime.
pub async fn register_user(
    state: &AppState,
    meta: &CommandMeta,
    email: Email,
    name: UserName,
    password: Password,
    role: Role,
) -> Result<Executed<User>, ApiError> {
    let password_hash = state
        .passwords
        .hash(password.as_str())
        .await
        .map_err(ApiError::internal)?;
    let user_id = UserId::from_uuid(uuid::Uuid::now_v7());
    let now = crate::commands::now();
    let command = UserCommand::Register {
        user_id,
        email,
        name,
        role,
        password_hash,
        verification: state
            .email_tokens
            .issue(TokenKind::Verification, user_id, now),
        at: now,
    };
    let mut meta = meta.clone();
    meta.actor_id.get_or_insert(user_id);
    Ok(state
        .users
        .create(user_id.to_string(), command, &meta)
        .await?)
}

async fn start_session(
    state: &AppState,
    meta: &RequestMeta,
    user: UserView,
    user_id: UserId,
    role: Role,
    client: ClientInfo,
) -> Result<(AuthAnswer, Option<projections::Position>), ApiError> {
    let session_id = SessionId::from_uuid(uuid::Uuid::now_v7());
    let refresh_token = new_refresh_token(session_id);
    let now = crate::commands::now();
    let command = SessionCommand::Start {
        session_id,
        user_id,
        role,
        refresh_token_hash: sha256_hex(&refresh_token),
        ip: client.ip,
        user_agent: client.user_agent,
        expires_at: now + Duration::days(REFRESH_TOKEN_DAYS),
        max_age: time_delta(state.config.session_max_age),
        at: now,
    };
    let started = state
        .sessions
        .create(
            session_id.to_string(),
            command,
            &meta.command(Some(user_id)),
        )
        .await?;
    let (access_token, expires_in) = state
        .jwt
        .issue_until(user_id, session_id, role, now, started.state.expires_at)
        .map_err(ApiError::internal)?;
    let answer = AuthAnswer {
        user,
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in,
    };
    Ok((answer, started.position))
}

/// Register a user.
///
/// Creates the user and signs them in: the answer carries a new session's tokens.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "auth",
    request_body = RegisterRequest,
    params(CommandHeaders),
    responses(
        (status = 201, description = "Registered and signed in", body = Data<AuthAnswer>,
            headers(("Location"), ("Chronicle-Position"), ("X-Consistency"))),
        (status = 400, response = BadRequest),
        (status = 409, description = "EMAIL_TAKEN: another user has this email (case-insensitively).",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
    )
)]
async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    ValidatedJson(body): ValidatedJson<RegisterRequest>,
) -> Result<Answer<AuthAnswer>, ApiError> {
    let email =
        Email::parse(&body.email).map_err(|e| ApiError::field("email", e.code, &e.message))?;
    let name =
        UserName::parse(&body.name).map_err(|e| ApiError::field("name", e.code, &e.message))?;
    let password = Password::parse(&body.password)
        .map_err(|e| ApiError::field("password", e.code, &e.message))?;

    let done = register_user(
        &state,
        &meta.command(None),
        email,
        name,
        password,
        Role::User,
    )
    .await?;
    let user = done.state;
    let user_id = user
        .id
        .ok_or_else(|| ApiError::internal("registered user without id"))?;
    let (answer, position) = start_session(
        &state,
        &meta,
        UserView::from_state(&user),
        user_id,
        user.role,
        ClientInfo::from_request(&state, peer, &headers),
    )
    .await?;

    // The session's events come after the user's, so waiting for them covers both.
    let fresh = !prefer_async && caught_up(&state, READ_MODELS, position).await;
    Ok(Answer::ok(answer)
        .created(format!("/api/v1/users/{user_id}"))
        .position(position)
        .eventual(!fresh))
}

/// Sign in with email and password.
///
/// One answer for an unknown email, a wrong password and a deactivated user, with the same
/// argon2 work in each case, so neither the body nor the timing tells them apart. Besides the
/// per-IP limit, an account takes at most `LOGIN_FAILURES_PER_ACCOUNT` (default 10) failed
/// sign-ins per 15 minutes from any IP; past that, sign-ins to it are 429 with `Retry-After`
/// until the window ends, whether or not the email belongs to anyone.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    params(CommandHeaders),
    responses(
        (status = 200, description = "Signed in: a new session", body = Data<AuthAnswer>,
            headers(("Chronicle-Position"), ("X-Consistency"))),
        (status = 400, response = BadRequest),
        (status = 401, description = "INVALID_CREDENTIALS: unknown email, wrong password or deactivated user.",
            body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate"))),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
    )
)]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    ValidatedJson(body): ValidatedJson<LoginRequest>,
) -> Result<Answer<AuthAnswer>, ApiError> {
    // Counted before any password work: a throttled account costs no argon2 either.
    let account = login_throttle::account_key(&state.config.jwt_secret, &body.email)
        .map_err(ApiError::internal)?;
    let attempt = match login_throttle::begin(
        &state.pool,
        state.config.login_failures_per_account,
        account,
    )
    .await
    .map_err(ApiError::internal)?
    {
        Verdict::Allowed(attempt) => attempt,
        Verdict::Throttled { retry_after_secs } => {
            tracing::warn!("sign-in refused: too many failed sign-ins to one account");
            return Err(ApiError::RateLimited { retry_after_secs });
        }
    };
    let owner = match Email::parse(&body.email) {
        Ok(email) => state
            .emails
            .owner_of(&email)
            .await
            .map_err(ApiError::internal)?,
        Err(_) => None,
    };
    let user = match owner {
        Some(user_id) => {
            let (user, _) = state.users.load(&user_id.to_string()).await?;
            user.id.map(|_| user)
        }
        None => None,
    };
    let Some(user) = user else {
        state
            .passwords
            .verify_dummy(&body.password)
            .await
            .map_err(ApiError::internal)?;
        return Err(ApiError::invalid_credentials());
    };
    let password_ok = state
        .passwords
        .verify(&body.password, &user.password_hash)
        .await
        .map_err(ApiError::internal)?;
    let active = user.status == aggregates::user::UserStatus::Active;
    let (Some(user_id), true, true) = (user.id, password_ok, active) else {
        return Err(ApiError::invalid_credentials());
    };
    login_throttle::succeeded(&state.pool, attempt)
        .await
        .map_err(ApiError::internal)?;

    let (answer, position) = start_session(
        &state,
        &meta,
        UserView::from_state(&user),
        user_id,
        user.role,
        ClientInfo::from_request(&state, peer, &headers),
    )
    .await?;
    let fresh = !prefer_async && caught_up(&state, READ_MODELS, position).await;
    Ok(Answer::ok(answer).position(position).eventual(!fresh))
}
