//! Building and running the application: database, migrations, state, router and listener.
//! Tests bind port 0 and read `port()`.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use projections::projector::Projector;
use projections::runner::Runner;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::net::TcpListener;

use crate::config::urls::redact;
use crate::config::Config;
use crate::db::MIGRATOR;
use crate::state::AppState;
use crate::supervisor::Supervisor;

/// How long a request waits for a pooled connection before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// A pooled connection idle longer than this is pinged before use.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);
/// How long shutdown waits for the background workers to stop before aborting them.
const WORKERS_STOP_WITHIN: Duration = Duration::from_secs(5);

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    background: Supervisor,
}

#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    pub migrate: bool,
    /// Run the projectors in this process (`serve --no-workers` turns them off).
    pub workers: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            migrate: true,
            workers: true,
        }
    }
}

impl Application {
    pub async fn build(config: Config, options: BuildOptions) -> anyhow::Result<Self> {
        config.check_bind_address()?;
        let pool = connect_database(&config).await?;
        if options.migrate {
            MIGRATOR
                .run(&pool)
                .await
                .context("applying database migrations")?;
        }
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("binding {}", config.bind_addr))?;
        let state = AppState::new(config, pool);
        seal_secrets(&state).await?;
        // Before serving: a restarted instance must already refuse recently revoked sessions.
        state
            .revocations
            .load_recent(&state.pool)
            .await
            .context("loading recent revocations")?;
        state
            .nats
            .connect(
                &state.config.nats_url,
                state.config.nats_creds_file.as_deref(),
            )
            .await;
        crate::recorder::families::register(&state);
        let router = crate::http::router(state.clone());
        let background = start_background(&state, options);
        Ok(Self {
            listener,
            router,
            state,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(address = %self.listener.local_addr()?, "chronicle is listening");
        let limits = crate::server::Limits {
            header_read_timeout: self.state.config.header_read_timeout,
            idle_timeout: crate::server::IDLE_TIMEOUT,
            max_connections: self.state.config.max_connections,
        };
        crate::server::serve(self.listener, self.router, limits, shutdown).await?;
        // Workers stop at an await point; an interrupted batch rolls back and is redone by
        // whichever instance leads next, so stopping them there loses nothing.
        self.background.shutdown(WORKERS_STOP_WITHIN).await;
        Ok(())
    }
}

/// `chronicle worker`: the projectors, the relay, webhooks and analytics without the HTTP API,
/// until SIGTERM or Ctrl-C. Any number of workers and API servers may share one database.
pub async fn run_workers(config: Config, migrate: bool) -> anyhow::Result<()> {
    let pool = connect_database(&config).await?;
    if migrate {
        MIGRATOR
            .run(&pool)
            .await
            .context("applying database migrations")?;
    }
    let state = AppState::new(config, pool);
    seal_secrets(&state).await?;
    let workers = start_background(
        &state,
        BuildOptions {
            migrate,
            workers: true,
        },
    );
    tracing::info!("chronicle worker is running");
    shutdown_signal().await;
    workers.shutdown(WORKERS_STOP_WITHIN).await;
    Ok(())
}

/// Seals webhook secrets left in plaintext by an older version and checks that `SECRETS_KEY`
/// opens the sealed ones; a wrong key fails the start with what to do about it.
async fn seal_secrets(state: &AppState) -> anyhow::Result<()> {
    let previous = state
        .config
        .secrets_key_previous
        .as_deref()
        .map(crate::auth::secrets::SecretBox::new);
    let sealed = crate::fanout::webhooks::store::seal_secrets(
        &state.pool,
        &state.secrets,
        previous.as_ref(),
    )
    .await?;
    if sealed > 0 {
        tracing::info!(endpoints = sealed, "sealed plaintext webhook secrets");
    }
    Ok(())
}

/// Every instance listens for log and progress notifications (read-your-writes needs them even
/// without workers); with workers it also runs the projectors, each led by one instance.
///
/// A restarted worker is made from the state again, so it starts from what the database and the
/// log say, not from the failed run's memory; only the senders are kept, as the webhook
/// deliveries already handed off report back to theirs.
fn start_background(state: &AppState, options: BuildOptions) -> Supervisor {
    crate::email::register_metrics();
    let mut workers = Supervisor::default();
    let s = state.clone();
    workers.spawn("log-listener", move || {
        projections::progress::listen(s.pool.clone(), s.progress.clone(), s.log_wake.clone())
    });
    let s = state.clone();
    workers.spawn("idempotency-sweep", move || {
        crate::http::idempotency::sweep(s.pool.clone())
    });
    let s = state.clone();
    workers.spawn("login-throttle-sweep", move || {
        crate::auth::login_throttle::sweep(s.pool.clone())
    });
    let s = state.clone();
    workers.spawn("rate-limit-prune", move || {
        let limits = s.rate_limits.clone();
        async move {
            let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every_minute.tick().await;
                limits.prune();
            }
        }
    });
    let s = state.clone();
    workers.spawn("log-tail", move || {
        s.log_tail.clone().run(s.log_wake.subscribe())
    });
    let s = state.clone();
    workers.spawn("activity-sampler", move || crate::activity::run(s.clone()));
    let s = state.clone();
    workers.spawn("revocations", move || {
        s.revocations.clone().follow(s.log_tail.clone())
    });
    if options.workers {
        start_fanout(&mut workers, state);
        start_email(&mut workers, state);
        for projector in projections::all_projectors() {
            let s = state.clone();
            workers.spawn(format!("projector:{}", projector.name()), move || {
                runner(&s, projector.clone()).run()
            });
        }
    }
    workers
}

/// The NATS relay, analytics, and the webhook consumer and sender.
fn start_fanout(workers: &mut Supervisor, state: &AppState) {
    let s = state.clone();
    workers.spawn("relay", move || {
        crate::fanout::relay::Relay::new(
            s.pool.clone(),
            s.config.database_url.clone(),
            crate::fanout::relay::RelaySettings::from_config(&s.config),
            &s.log_tail,
            s.leader_terms.clone(),
        )
        .reporting_to(s.gauges.clone())
        .run()
    });
    let s = state.clone();
    workers.spawn("analytics", move || {
        crate::fanout::analytics::run(
            s.pool.clone(),
            s.log_tail.clone(),
            crate::fanout::relay::RelaySettings::from_config(&s.config),
        )
    });
    let s = state.clone();
    workers.spawn("webhook-consumer", move || {
        crate::fanout::webhooks::consumer::run(
            s.pool.clone(),
            s.log_tail.clone(),
            crate::fanout::relay::RelaySettings::from_config(&s.config),
            s.webhook_wake.clone(),
        )
    });
    let sender = Arc::new(crate::fanout::webhooks::delivery::Sender::new(
        state.pool.clone(),
        state.config.webhook_retry_schedule.clone(),
        state.config.webhook_allow_private_targets,
        state.config.webhook_max_in_flight,
        state.secrets.clone(),
    ));
    // The sender shares the instance's wake-up, so test pings and retries go out at once.
    let (wake, sender_wake) = (state.webhook_wake.clone(), sender.wake.clone());
    workers.spawn("webhook-wake", move || {
        let (wake, sender_wake) = (wake.clone(), sender_wake.clone());
        async move {
            loop {
                wake.notified().await;
                sender_wake.notify_one();
            }
        }
    });
    workers.spawn("webhook-sender", move || sender.clone().run());
}

/// The outbox writer (a log reader with its own checkpoint, not among the rebuildable read
/// models) and, when email can go anywhere, the sender.
fn start_email(workers: &mut Supervisor, state: &AppState) {
    let outbox: Arc<dyn Projector> = Arc::new(crate::email::outbox::EmailOutbox::new(
        &state.config.email.mail_from,
    ));
    let s = state.clone();
    workers.spawn(format!("projector:{}", outbox.name()), move || {
        runner(&s, outbox.clone()).run()
    });
    match crate::email::mailer::Mailer::from_config(&state.config) {
        Ok(Some(mailer)) => {
            let sender = Arc::new(crate::email::sender::Sender::new(
                state.pool.clone(),
                state.config.database_url.clone(),
                mailer,
                state.email_tokens.clone(),
                state.config.email.app_base_url.clone(),
            ));
            workers.spawn("email-sender", move || sender.clone().run());
        }
        Ok(None) => tracing::warn!(
            "email is off: SMTP_URL is not set, so emails stay pending in the outbox until it is"
        ),
        Err(e) => tracing::error!(error = %e, "email is off: the mailer cannot be built"),
    }
}

fn runner(state: &AppState, projector: Arc<dyn Projector>) -> Runner {
    let runner = Runner::new(
        state.pool.clone(),
        state.config.database_url.clone(),
        projector,
        state.progress.clone(),
        &state.log_tail,
    )
    .with_terms(state.leader_terms.clone());
    if crate::telemetry::propagation::enabled() {
        runner.with_event_spans(crate::telemetry::spans::projection_apply)
    } else {
        runner
    }
}

/// Connects to `DATABASE_URL`, creating the database first if it does not exist.
pub async fn connect_database(config: &Config) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(&config.database_url)
        .context("DATABASE_URL is not a valid postgres:// URL")?
        .log_statements(tracing::log::LevelFilter::Trace)
        // Any open transaction holds back what every log reader may read (the snapshot xmin is
        // cluster-wide), so one that a stuck client left idle is ended rather than kept.
        .options([("idle_in_transaction_session_timeout", "60s")]);
    create_database_if_missing(&options)
        .await
        .with_context(|| format!("connecting to Postgres at {}", redact(&config.database_url)))?;
    PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // sqlx pings every connection it hands out, a second round trip per query that cost a
        // quarter of a point read's CPU. A connection in steady use has just proved itself, so
        // only one that sat idle (perhaps across a database restart) is checked first.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_BEFORE_PING {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to Postgres at {}", redact(&config.database_url)))
}

async fn create_database_if_missing(options: &PgConnectOptions) -> anyhow::Result<()> {
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut admin = options.clone().database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&statement).execute(&mut admin).await {
            Ok(_) => tracing::info!(database = %name, "created the database"),
            // Another instance created it a moment ago.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
