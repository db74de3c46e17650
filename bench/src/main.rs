//! Chronicle's benchmark harness: every figure of issue #8 against a baseline measured in the
//! same run, on throwaway Postgres and NATS instances it starts and removes itself.
//!
//! `cargo run --release -p bench -- all` runs everything (about 20 minutes on two cores) and
//! writes bench/results/latest.json, bench/chart.svg and BENCHMARKS.md; a figure's name runs
//! that figure alone and merges it into the results; `--quick` uses small sizes.

mod baseline_server;
mod chart;
mod document;
mod figures;
mod load;
mod procs;
mod report;
mod seed;
mod server;
mod services;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use figures::{Ctx, Settings};
use report::{Figure, Results};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Chronicle's benchmarks, each against a baseline measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Small sizes and 2-second runs (about 4 minutes for `all`), for development.
    #[arg(long, global = true)]
    quick: bool,
    /// Runs per point (default 3).
    #[arg(long, global = true)]
    runs: Option<usize>,
    /// Seconds per run.
    #[arg(long, global = true)]
    secs: Option<u64>,
    /// Records the server with `perf` during every HTTP run, into bench/results/profiles/.
    #[arg(long, global = true)]
    profile: bool,
    /// Concurrent clients for the HTTP figures, e.g. `1,8,32` (default 8,32).
    #[arg(long, global = true, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
enum Command {
    /// Every figure, then the table, latest.json, the chart and BENCHMARKS.md.
    All,
    /// POST /posts throughput and the server's peak RSS.
    Commands,
    /// PATCH /posts/{id} throughput on posts with 100 events of history.
    Updates,
    /// GET /posts/{id} against a minimal axum + sqlx server.
    Reads,
    /// A cursor page 50,000 deep against the first page.
    DeepPage,
    /// Rebuilding the posts projection from 1,000,000 events.
    Rebuild,
    /// Relaying a backlog of 200,000 events to JetStream.
    Relay,
    /// Commit-to-webhook latency at 200 commands/s.
    Fanout,
    /// GET /posts/{id} and POST /posts with traces exported (every trace, and 1 %) against
    /// the same server with tracing off.
    Tracing,
    /// Re-render the table, chart and BENCHMARKS.md from bench/results/latest.json.
    Report,
    /// The point-read baseline server (started by the `reads` figure).
    #[command(hide = true)]
    BaselineServer {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 20)]
        pool: u32,
    },
}

const ALL: [Command; 8] = [
    Command::Commands,
    Command::Updates,
    Command::Reads,
    Command::DeepPage,
    Command::Rebuild,
    Command::Relay,
    Command::Fanout,
    Command::Tracing,
];

/// The checkout being measured: where `cargo run` was started (it sets CARGO_MANIFEST_DIR
/// to bench/), else the working directory, else where this binary was built from.
fn repo_root() -> PathBuf {
    let is_root = |dir: &Path| dir.join("bench/Cargo.toml").is_file();
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|bench| bench.parent().map(Path::to_path_buf))
        .filter(|dir| is_root(dir))
        .or_else(|| std::env::current_dir().ok().filter(|dir| is_root(dir)))
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::BaselineServer {
            database_url,
            port,
            pool,
        } => {
            return baseline_server::serve(database_url, ([127, 0, 0, 1], *port).into(), *pool)
                .await
        }
        Command::Report => return publish(&Results::load(&results_path())),
        _ => {}
    }
    if cli.profile {
        let _ = load::PROFILE_DIR.set(repo_root().join("bench/results/profiles"));
    }
    let mut settings = if cli.quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    if let Some(runs) = cli.runs {
        settings.runs = runs.max(1);
    }
    if let Some(secs) = cli.secs {
        settings.run_secs = secs.max(1);
    }
    if let Some(concurrency) = cli.concurrency.clone() {
        settings.concurrency = concurrency;
    }
    let selected: Vec<Command> = match &cli.command {
        Command::All => ALL.to_vec(),
        one => vec![one.clone()],
    };
    services::ensure_tool("wrk", "wrk")?;
    let chronicle = server::build_chronicle(&repo_root())?;
    let services = services::Services::start().await?;
    eprintln!(
        "postgres on port {}, nats on port {}, scratch in {}",
        services.pg.port(),
        services.nats.port(),
        services.dir.path().display()
    );
    let command = format!(
        "cargo run --release -p bench -- {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let ctx = Ctx {
        services: &services,
        chronicle,
        harness: std::env::current_exe().context("locating the harness executable")?,
        settings,
        measured_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command,
    };
    let work = async {
        for figure in selected {
            eprintln!("== {figure:?}");
            let started = std::time::Instant::now();
            let fresh = run_figure(&ctx, &figure).await?;
            eprintln!("   done in {:.0} s", started.elapsed().as_secs_f64());
            let mut results = Results::load(&results_path());
            results.machine = report::machine();
            results.merge(fresh);
            results.save(&results_path())?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        result = work => result?,
        () = interrupted() => anyhow::bail!("interrupted; the throwaway services are being removed"),
    }
    drop(ctx);
    drop(services);
    publish(&Results::load(&results_path()))
}

async fn run_figure(ctx: &Ctx<'_>, figure: &Command) -> anyhow::Result<Vec<Figure>> {
    match figure {
        Command::Commands => figures::commands::commands(ctx).await,
        Command::Updates => figures::commands::updates(ctx).await,
        Command::Reads => figures::reads::point_reads(ctx).await,
        Command::DeepPage => figures::reads::deep_page(ctx).await,
        Command::Rebuild => figures::rebuild::rebuild(ctx).await,
        Command::Relay => figures::relay::relay(ctx).await,
        Command::Fanout => figures::fanout::fanout(ctx).await,
        Command::Tracing => figures::tracing::overhead(ctx).await,
        Command::All | Command::Report | Command::BaselineServer { .. } => Ok(Vec::new()),
    }
}

fn results_path() -> PathBuf {
    repo_root().join("bench/results/latest.json")
}

/// Prints the table and writes the chart and BENCHMARKS.md.
fn publish(results: &Results) -> anyhow::Result<()> {
    let root = repo_root();
    println!("\n{}", results.table());
    for figure in &results.figures {
        for note in &figure.notes {
            println!("  {}: {note}", figure.id);
        }
    }
    chart::draw(results, &root.join("bench/chart.svg"))?;
    let analysis = std::fs::read_to_string(root.join("bench/ANALYSIS.md")).ok();
    document::write(results, &root.join("BENCHMARKS.md"), analysis.as_deref())?;
    println!(
        "\nwrote {}, {} and {}",
        results_path().display(),
        root.join("bench/chart.svg").display(),
        root.join("BENCHMARKS.md").display()
    );
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}
