//! What every handler can reach: configuration, the pool, one command bus per aggregate and the
//! auth machinery. Cheap to clone: one reference count, however many parts it has (axum clones
//! the state for every extractor and layer of every request; cloning two dozen `Arc`s each
//! time showed up in profiles of the read path).

use std::sync::Arc;

use aggregates::post::Post;
use aggregates::session::Session;
use aggregates::user::{User, UserServices};
use projections::progress::{LogWake, Progress};
use sqlx::PgPool;

use crate::activity::Activity;
use crate::auth::jwt::JwtKeys;
use crate::auth::password::Passwords;
use crate::auth::revocations::Revocations;
use crate::auth::secrets::SecretBox;
use crate::commands::services::PgEmailRegistry;
use crate::commands::CommandBus;
use crate::config::Config;
use crate::fanout::nats_status::NatsStatus;
use crate::rate_limits::RateLimits;
use crate::recorder::Gauges;

#[derive(Clone)]
pub struct AppState(Arc<Parts>);

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

pub struct Parts {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub users: Arc<CommandBus<User>>,
    pub posts: Arc<CommandBus<Post>>,
    pub sessions: Arc<CommandBus<Session>>,
    pub emails: Arc<PgEmailRegistry>,
    pub passwords: Arc<Passwords>,
    pub jwt: Arc<JwtKeys>,
    /// How far each read model has got, for read-your-writes and `Chronicle-Position`.
    pub progress: Arc<Progress>,
    /// Bumped when the log may have grown; the projector runners wait on it.
    pub log_wake: Arc<LogWake>,
    /// The process's one reader of new events, which every in-process log reader shares.
    pub log_tail: Arc<projections::tail::LogTail>,
    /// Signs list cursors; derived from the JWT secret so every instance agrees.
    pub cursor_key: Arc<[u8]>,
    /// Revoked sessions, deactivated users and changed roles, followed from the log.
    pub revocations: Arc<Revocations>,
    pub rate_limits: Arc<RateLimits>,
    /// Wakes this instance's webhook sender when a delivery becomes due.
    pub webhook_wake: Arc<tokio::sync::Notify>,
    /// This server's own NATS connection, which `/readyz` reports.
    pub nats: Arc<NatsStatus>,
    /// What `/metrics` reports without asking the database.
    pub gauges: Arc<Gauges>,
    /// Request counters and the samples `/admin/activity` serves.
    pub activity: Arc<Activity>,
    /// Seals webhook signing secrets and stored idempotent answers at rest.
    pub secrets: Arc<SecretBox>,
    /// Derives the tokens of email links; see [`crate::email::tokens`].
    pub email_tokens: Arc<crate::email::tokens::TokenKey>,
    /// The terms this instance led the projectors and the relay, for `/admin/projections`.
    pub leader_terms: Arc<projections::leader::TermLog>,
}

impl AppState {
    pub fn new(config: Config, pool: PgPool) -> Self {
        Self(Arc::new(Parts::new(config, pool)))
    }
}

impl Parts {
    fn new(config: Config, pool: PgPool) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let passwords = Arc::new(Passwords::new(cpus));
        let emails = Arc::new(PgEmailRegistry::new(pool.clone()));
        let user_services = UserServices {
            emails: emails.clone(),
            passwords: passwords.clone(),
        };
        let names: Vec<&'static str> = projections::all_projectors()
            .iter()
            .map(|p| p.name())
            .collect();
        let cursor_key: Arc<[u8]> = {
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            hasher.update(b"chronicle list cursors\0");
            hasher.update(&config.jwt_secret);
            Arc::from(hasher.finalize().to_vec())
        };
        Self {
            nats: Arc::new(NatsStatus::default()),
            gauges: Arc::new(Gauges::default()),
            activity: Arc::new(Activity::new(config.activity_sample_interval)),
            secrets: Arc::new(SecretBox::new(&config.secrets_key)),
            email_tokens: Arc::new(crate::email::tokens::TokenKey::derive(
                &config.email.token_secret,
            )),
            webhook_wake: Arc::new(tokio::sync::Notify::new()),
            leader_terms: Arc::default(),
            rate_limits: Arc::new(RateLimits::new(&config)),
            revocations: Arc::new(Revocations::default()),
            cursor_key,
            progress: Arc::new(Progress::new(&names)),
            log_wake: Arc::new(tokio::sync::watch::channel(0).0),
            log_tail: Arc::new(projections::tail::LogTail::new(pool.clone())),
            jwt: Arc::new(JwtKeys::new(
                &config.jwt_secret,
                &config.jwt_issuer,
                &config.jwt_audience,
            )),
            users: Arc::new(CommandBus::new(pool.clone(), user_services)),
            posts: Arc::new(CommandBus::new(pool.clone(), ())),
            sessions: Arc::new(CommandBus::new(pool.clone(), ())),
            emails,
            passwords,
            config: Arc::new(config),
            pool,
        }
    }
}
