//! `/auth`: registration and sign-in, each starting a session with an access and refresh token.

use std::net::SocketAddr;

use aggregates::values::{Email, Password, UserName};
use aggregates::Role;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::accounts::{self, Registration};
use crate::app::sessions::{ClientInfo, SignedIn};
use crate::http::consistency::{when_applied, PreferAsync};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{Parsed, RequestMeta};
use crate::http::openapi::schemas::{CommandHeaders, Data, Problem};
use crate::http::parse::{Fields, Parse};
use crate::http::respond::Answer;
use crate::http::views::UserView;
use crate::state::AppState;

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

impl Parse for RegisterRequest {
    type Output = Registration;

    fn parse(self) -> Result<Registration, Vec<FieldError>> {
        let mut fields = Fields::default();
        let email = fields.take("email", Email::parse(&self.email));
        let password = fields.take("password", Password::parse(&self.password));
        let name = fields.take("name", UserName::parse(&self.name));
        fields.finish((|| {
            Some(Registration {
                email: email?,
                name: name?,
                password: password?,
                role: Role::User,
            })
        })())
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 128)]
    pub password: String,
}

/// Lengths only: any other wrong email or password is the one `INVALID_CREDENTIALS`.
impl Parse for LoginRequest {
    type Output = Self;

    fn parse(self) -> Result<Self, Vec<FieldError>> {
        let mut fields = Fields::default();
        let email = fields.text("email", self.email, 1, 254);
        let password = fields.text("password", self.password, 1, 128);
        fields.finish((|| {
            Some(Self {
                email: email?,
                password: password?,
            })
        })())
    }
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

/// The answer to every sign-in (registration, login, refresh), given once `read_models` show
/// the new session.
pub async fn signed_in_answer(
    state: &AppState,
    read_models: &[&str],
    signed_in: SignedIn,
    prefer_async: bool,
) -> Answer<AuthAnswer> {
    let answer = AuthAnswer {
        user: UserView::from_state(&signed_in.user),
        access_token: signed_in.access_token,
        refresh_token: signed_in.refresh_token,
        token_type: "Bearer",
        expires_in: signed_in.expires_in,
    };
    let position = signed_in.position;
    when_applied(
        state,
        read_models,
        position,
        prefer_async,
        Answer::ok(answer),
    )
    .await
}

/// The IP is the one the rate limiter counts against (`TRUSTED_PROXIES` honoured), so a
/// session behind a proxy shows the client, and a client cannot write its own.
fn client_info(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: Some(state.rate_limits.client_ip(peer.ip(), headers).to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect()),
    }
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
        (status = 409, description = "EMAIL_TAKEN: another user has this email (case-insensitively).",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    Parsed(registration): Parsed<RegisterRequest>,
) -> Result<Answer<AuthAnswer>, ApiError> {
    let client = client_info(&state, peer, &headers);
    let signed_in =
        accounts::sign_up(&state, &meta.command_meta(None), registration, client).await?;
    let location = format!("/api/v1/users/{}", signed_in.user_id);
    Ok(
        signed_in_answer(&state, READ_MODELS, signed_in, prefer_async)
            .await
            .created(location),
    )
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
        (status = 401, description = "INVALID_CREDENTIALS: unknown email, wrong password or deactivated user.",
            body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate"))),
    )
)]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    meta: RequestMeta,
    PreferAsync(prefer_async): PreferAsync,
    Parsed(body): Parsed<LoginRequest>,
) -> Result<Answer<AuthAnswer>, ApiError> {
    let client = client_info(&state, peer, &headers);
    let signed_in = accounts::sign_in(
        &state,
        &meta.command_meta(None),
        &body.email,
        &body.password,
        client,
    )
    .await?;
    Ok(signed_in_answer(&state, READ_MODELS, signed_in, prefer_async).await)
}
