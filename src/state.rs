//! What every handler can reach: configuration, the pool, one command bus per aggregate and the
//! auth machinery. Cheap to clone.

use std::sync::Arc;

use aggregates::post::Post;
use aggregates::session::Session;
use aggregates::user::{User, UserServices};
use sqlx::PgPool;

use crate::auth::jwt::JwtKeys;
use crate::auth::password::Passwords;
use crate::commands::services::PgEmailRegistry;
use crate::commands::CommandBus;
use crate::config::Config;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub users: Arc<CommandBus<User>>,
    pub posts: Arc<CommandBus<Post>>,
    pub sessions: Arc<CommandBus<Session>>,
    pub emails: Arc<PgEmailRegistry>,
    pub passwords: Arc<Passwords>,
    pub jwt: Arc<JwtKeys>,
}

impl AppState {
    pub fn new(config: Config, pool: PgPool) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let passwords = Arc::new(Passwords::new(cpus));
        let emails = Arc::new(PgEmailRegistry::new(pool.clone()));
        let user_services = UserServices {
            emails: emails.clone(),
            passwords: passwords.clone(),
        };
        Self {
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
