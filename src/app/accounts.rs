//! Accounts: registration, sign-in, password changes and resets.

use std::time::Duration;

use aggregates::user::{User, UserCommand, UserStatus};
use aggregates::values::{Email, Password, UserName};
use aggregates::{Actor, Role, UserId};
use projections::Position;
use tokio::time::Instant;

use crate::app::sessions::{self, ClientInfo, SignedIn};
use crate::app::AppError;
use crate::auth::login_throttle::{self, Verdict};
use crate::auth::Principal;
use crate::commands::{CommandError, CommandMeta, Executed};
use crate::email::store::reset_token_owner;
use crate::email::tokens::{self, TokenKind};
use crate::state::AppState;

/// Every reset request answers no sooner than this, so an unknown, a deactivated and an
/// active account (which appends an event) take about the same time.
const RESET_ANSWER_FLOOR: Duration = Duration::from_millis(250);

/// A new user, as parsed from a request or the command line.
pub struct Registration {
    pub email: Email,
    pub name: UserName,
    pub password: Password,
    pub role: Role,
}

/// Registers a user: the email claim and the events are the aggregate's business; this only
/// hashes the password first, off the runtime, and mints the verification token.
pub async fn register(
    state: &AppState,
    meta: &CommandMeta,
    registration: Registration,
) -> Result<Executed<User>, AppError> {
    let password_hash = state
        .passwords
        .hash(registration.password.as_str())
        .await
        .map_err(AppError::internal)?;
    let user_id = UserId::from_uuid(uuid::Uuid::now_v7());
    let now = crate::commands::now();
    let command = UserCommand::Register {
        user_id,
        email: registration.email,
        name: registration.name,
        role: registration.role,
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

/// Self-service sign-up: registers a user and signs them in. The session's events come after
/// the user's, so the returned position covers both.
pub async fn sign_up(
    state: &AppState,
    meta: &CommandMeta,
    registration: Registration,
    client: ClientInfo,
) -> Result<SignedIn, AppError> {
    let user = register(state, meta, registration).await?.state;
    sessions::start(state, meta, user, client).await
}

/// Signs in with email and password. One error for an unknown email, a wrong password and a
/// deactivated user, with the same argon2 work in each case, so neither the answer nor its
/// timing tells them apart. An account takes a bounded number of failures from any address.
pub async fn sign_in(
    state: &AppState,
    meta: &CommandMeta,
    email: &str,
    password: &str,
    client: ClientInfo,
) -> Result<SignedIn, AppError> {
    // Counted before any password work: a throttled account costs no argon2 either.
    let account =
        login_throttle::account_key(&state.config.jwt_secret, email).map_err(AppError::internal)?;
    let attempt = match login_throttle::begin(
        &state.pool,
        state.config.login_failures_per_account,
        account,
    )
    .await?
    {
        Verdict::Allowed(attempt) => attempt,
        Verdict::Throttled { retry_after_secs } => {
            tracing::warn!("sign-in refused: too many failed sign-ins to one account");
            return Err(AppError::Throttled { retry_after_secs });
        }
    };
    let owner = match Email::parse(email) {
        Ok(email) => state.emails.owner_of(&email).await?,
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
            .verify_dummy(password)
            .await
            .map_err(AppError::internal)?;
        return Err(AppError::InvalidCredentials);
    };
    let password_ok = state
        .passwords
        .verify(password, &user.password_hash)
        .await
        .map_err(AppError::internal)?;
    if !password_ok || user.status != UserStatus::Active {
        return Err(AppError::InvalidCredentials);
    }
    login_throttle::succeeded(&state.pool, attempt).await?;
    sessions::start(state, meta, user, client).await
}

/// Changes the caller's own password; every other session of theirs is revoked, the one that
/// changed it stays. Returns the position covering the change and the revocations.
pub async fn change_password(
    state: &AppState,
    meta: &CommandMeta,
    caller: &Principal,
    user: UserId,
    current_password: String,
    new_password: &Password,
) -> Result<Option<Position>, AppError> {
    if caller.user_id != user {
        return Err(AppError::Forbidden);
    }
    let new_password_hash = state
        .passwords
        .hash(new_password.as_str())
        .await
        .map_err(AppError::internal)?;
    let command = UserCommand::ChangePassword {
        actor: caller.actor(),
        current_password,
        new_password_hash,
        at: crate::commands::now(),
    };
    let executed = state
        .users
        .execute(user.to_string(), command, meta, true)
        .await?;
    let revoked = sessions::revoke_all_of(
        state,
        meta,
        caller.actor(),
        user,
        caller.session_id(),
        "password changed",
    )
    .await?;
    Ok(revoked.or(executed.position))
}

/// Mails a reset link if the address belongs to an active user. Says nothing either way, and
/// takes about the same time either way.
pub async fn request_password_reset(
    state: &AppState,
    meta: &CommandMeta,
    email: &Email,
) -> Result<(), AppError> {
    let started = Instant::now();
    if let Some(user_id) = state.emails.owner_of(email).await? {
        let now = crate::commands::now();
        let command = UserCommand::RequestPasswordReset {
            token: state
                .email_tokens
                .issue(TokenKind::PasswordReset, user_id, now),
            at: now,
        };
        match state
            .users
            .execute(user_id.to_string(), command, meta, true)
            .await
        {
            // Deactivated, or past the hourly limit: nothing is mailed, and nothing says so.
            Ok(_) | Err(CommandError::Domain(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tokio::time::sleep_until(started + RESET_ANSWER_FLOOR).await;
    Ok(())
}

/// Sets a new password with a reset link's token and revokes every session of the user.
pub async fn reset_password(
    state: &AppState,
    meta: &CommandMeta,
    token: &str,
    new_password: &Password,
) -> Result<Option<Position>, AppError> {
    let token_hash = tokens::hash(token);
    // Unknown tokens stop here, before any password hashing work is spent on them.
    let user_id = reset_token_owner(&state.pool, &token_hash)
        .await?
        .map(UserId::from_uuid)
        .ok_or(AppError::InvalidToken)?;
    let new_password_hash = state
        .passwords
        .hash(new_password.as_str())
        .await
        .map_err(AppError::internal)?;
    let command = UserCommand::ResetPassword {
        token_hash,
        new_password_hash,
        at: crate::commands::now(),
    };
    let mut meta = meta.clone();
    meta.actor_id = Some(user_id);
    let executed = state
        .users
        .execute(user_id.to_string(), command, &meta, true)
        .await?;
    let revoked =
        sessions::revoke_all_of(state, &meta, Actor::System, user_id, None, "password reset")
            .await?;
    Ok(revoked.or(executed.position))
}
