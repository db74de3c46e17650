//! The `chronicle` command line: serve, migrate, and operator commands.

use std::io::BufRead;

use aggregates::user::UserError;
use aggregates::values::{Email, Password, UserName};
use aggregates::Role;
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::app::accounts::Registration;
use crate::app::AppError;
use crate::commands::{CommandError, CommandMeta};
use crate::config::Config;
use crate::db::MIGRATOR;
use crate::startup::{self, Application, BuildOptions};
use crate::state::AppState;

#[derive(Debug, Parser)]
#[command(name = "chronicle", version, about = "An event-sourced CQRS backend")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (and, as they arrive, the background workers).
    Serve(ServeArgs),
    /// Run the background workers only (projectors, NATS relay, webhooks, analytics), for
    /// deployments that split them from `serve --no-workers`.
    Worker {
        /// Do not apply migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Manage users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Inspect and reset the read models' projectors.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Work with the event log.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Keys for secrets kept at rest.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Print the OpenAPI document that `serve` answers at /openapi.json (needs no configuration,
    /// database or NATS: for linters and client generators).
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print the SECRETS_KEY derived from the current JWT_SECRET. Before rotating JWT_SECRET
    /// on a deployment without SECRETS_KEY, set SECRETS_KEY to this value, or the stored
    /// webhook secrets no longer open.
    DeriveKey,
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// The projectors this build knows.
    List,
    /// Position, head, lag, state and last error of every projector.
    Status,
    /// Rebuild a projector into shadow tables from the start of the log while the live read
    /// model keeps serving, then swap them in. Resumes an interrupted rebuild.
    Rebuild { name: String },
    /// Empty a projector's read model and replay it from the start of the log, in place (the
    /// read model is empty until it has caught up). Refuses without --yes.
    Reset {
        name: String,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish the log to NATS again from a position on (inclusive). JetStream drops what it
    /// already holds within its duplicate window.
    Republish {
        /// A position token (from `Chronicle-Position`, `/events` or a NATS message).
        #[arg(long)]
        from: projections::Position,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Do not apply migrations at start (run `chronicle migrate` separately).
    #[arg(long)]
    pub no_migrate: bool,
    /// Serve the API only; run the projectors elsewhere (`chronicle worker`).
    #[arg(long)]
    pub no_workers: bool,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an admin user; the password is the first line of standard input.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Read the password from standard input (required, so it never shows in `ps`).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        let document = crate::http::openapi()
            .to_pretty_json()
            .context("serialising the OpenAPI document")?;
        println!("{document}");
        return Ok(());
    }
    let config = Config::from_env()?;
    let _flushes_logs_and_traces_at_exit =
        crate::telemetry::init(config.log_format).context("starting telemetry")?;
    match cli.command {
        Command::Serve(args) => serve(config, args).await,
        Command::Worker { no_migrate } => startup::run_workers(config, !no_migrate).await,
        Command::Migrate => {
            let pool = startup::connect_database(&config).await?;
            MIGRATOR.run(&pool).await.context("applying migrations")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Users {
            command:
                UsersCommand::CreateAdmin {
                    email,
                    name,
                    password_stdin: _,
                },
        } => create_admin(config, &email, &name).await,
        Command::Events {
            command: EventsCommand::Republish { from },
        } => republish(config, from).await,
        Command::Projections { command } => projections_command(config, command).await,
        Command::Secrets {
            command: SecretsCommand::DeriveKey,
        } => {
            if std::env::var_os("SECRETS_KEY").is_some() {
                eprintln!("note: SECRETS_KEY is set, so this derivation is not in use now");
            }
            println!(
                "{}",
                crate::auth::secrets::derive_secrets_key(&config.jwt_secret)
            );
            Ok(())
        }
        Command::Openapi => Ok(()),
    }
}

async fn serve(config: Config, args: ServeArgs) -> anyhow::Result<()> {
    let app = Application::build(
        config,
        BuildOptions {
            migrate: !args.no_migrate,
            workers: !args.no_workers,
        },
    )
    .await?;
    app.run_until_stopped(startup::shutdown_signal()).await?;
    Ok(())
}

async fn create_admin(config: Config, email: &str, name: &str) -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);

    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let name = UserName::parse(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let password = Password::parse(password).map_err(|e| anyhow::anyhow!("password: {e}"))?;

    let pool = startup::connect_database(&config).await?;
    MIGRATOR.run(&pool).await.context("applying migrations")?;
    let state = AppState::new(config, pool);
    let meta = CommandMeta {
        correlation_id: format!("cli-{}", uuid::Uuid::now_v7()),
        actor_id: None,
    };
    let registration = Registration {
        email,
        name,
        password,
        role: Role::Admin,
    };
    match crate::app::accounts::register(&state, &meta, registration).await {
        Ok(done) => {
            let id = done.state.id.map(|id| id.to_string()).unwrap_or_default();
            println!("created admin {id} <{}>", done.state.email);
            Ok(())
        }
        Err(AppError::User(CommandError::Domain(UserError::EmailTaken))) => {
            bail!("a user with that email already exists")
        }
        Err(e) => bail!("could not create the admin: {e}"),
    }
}

async fn republish(config: Config, from: projections::Position) -> anyhow::Result<()> {
    use crate::fanout::relay::{ensure_stream, publish, RelaySettings};

    let pool = startup::connect_database(&config).await?;
    let settings = RelaySettings::from_config(&config);
    let client = settings
        .connect(async_nats::ConnectOptions::new())
        .await
        .map_err(anyhow::Error::msg)?;
    let js = async_nats::jetstream::new(client);
    ensure_stream(&js, &settings).await?;
    // Inclusive: start just before the given event.
    let mut after =
        projections::Position::new(from.transaction_id, from.position.saturating_sub(1));
    let mut sent = 0usize;
    loop {
        let events = projections::log::read_after(&pool, after, 500).await?;
        match publish(&js, &settings.subject_prefix, &events).await? {
            Some(last) => {
                after = last;
                sent += events.len();
            }
            None => break,
        }
    }
    println!(
        "republished {sent} events to stream {} from {from}",
        settings.stream
    );
    Ok(())
}

async fn projections_command(config: Config, command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::List => {
            for projector in projections::all_projectors() {
                println!("{}\t{}", projector.name(), projector.tables().join(","));
            }
            Ok(())
        }
        ProjectionsCommand::Status => {
            let pool = startup::connect_database(&config).await?;
            println!(
                "{:<12} {:<10} {:>8} {:<22} {:<22} LAST ERROR",
                "NAME", "STATE", "LAG", "POSITION", "HEAD"
            );
            for s in projections::status::statuses(&pool).await? {
                println!(
                    "{:<12} {:<10} {:>8} {:<22} {:<22} {}",
                    s.name,
                    s.status,
                    s.lag,
                    s.position,
                    s.head_position,
                    s.last_error.unwrap_or_default()
                );
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { name } => {
            let pool = startup::connect_database(&config).await?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({per_sec}, ETA {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(format!("rebuilding {name}"));
            let done =
                projections::rebuild::rebuild(&pool, &config.database_url, &name, 1000, |p| {
                    bar.set_length(p.total.max(0) as u64);
                    bar.set_position(p.applied.max(0) as u64);
                })
                .await?;
            bar.finish_with_message(format!("{name} rebuilt and swapped in"));
            println!("{name}: {} events applied", done.applied);
            Ok(())
        }
        ProjectionsCommand::Reset { name, yes } => {
            if !yes {
                bail!("reset empties the {name} read model until it is rebuilt; run again with --yes to do it");
            }
            let pool = startup::connect_database(&config).await?;
            if !projections::reset::reset(&pool, &name).await? {
                let known: Vec<&str> = projections::all_projectors()
                    .iter()
                    .map(|p| p.name())
                    .collect();
                bail!("no projector named {name:?} (known: {})", known.join(", "));
            }
            println!("{name} reset; the leading instance replays it from the start of the log");
            Ok(())
        }
    }
}
