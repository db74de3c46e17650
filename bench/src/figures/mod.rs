//! The figures of issue #8, each against a baseline measured in the same run.

pub mod commands;
pub mod fanout;
pub mod reads;
pub mod rebuild;
pub mod relay;
pub mod tracing;

use std::path::PathBuf;

use anyhow::bail;

use crate::load::{Outcome, Watch};
use crate::report::{Figure, Side, Target};
use crate::server::{Server, ServerConfig};
use crate::services::Services;
use crate::stats::Spread;

/// Sizes and durations: the in a full run, small ones with `--quick`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    pub runs: usize,
    pub run_secs: u64,
    pub warmup_secs: u64,
    pub concurrency: Vec<usize>,
    pub update_posts: i64,
    pub update_history: i64,
    pub read_posts: usize,
    pub deep_rows: i64,
    pub deep_page: i64,
    pub rebuild_events: i64,
    pub relay_events: i64,
    pub relay_in_flight: usize,
    pub fanout_rate: u32,
    pub fanout_secs: u64,
}

impl Settings {
    pub fn full() -> Self {
        Self {
            quick: false,
            runs: 3,
            run_secs: 8,
            warmup_secs: 3,
            concurrency: vec![8, 32],
            update_posts: 2_000,
            update_history: 100,
            read_posts: 2_000,
            deep_rows: 1_000_000,
            deep_page: 50_000,
            rebuild_events: 1_000_000,
            relay_events: 200_000,
            relay_in_flight: 1_000,
            fanout_rate: 200,
            fanout_secs: 15,
        }
    }

    pub fn quick() -> Self {
        Self {
            quick: true,
            run_secs: 2,
            warmup_secs: 1,
            update_posts: 200,
            read_posts: 200,
            deep_rows: 100_000,
            deep_page: 5_000,
            rebuild_events: 50_000,
            relay_events: 20_000,
            fanout_secs: 3,
            ..Self::full()
        }
    }

    pub fn mode(&self) -> &'static str {
        if self.quick {
            "quick"
        } else {
            "full"
        }
    }
}

/// What every figure needs: the services, the binaries, the settings, a scratch directory.
pub struct Ctx<'a> {
    pub services: &'a Services,
    pub chronicle: PathBuf,
    /// This harness's own executable (it also serves the baseline point-read server).
    pub harness: PathBuf,
    pub settings: Settings,
    pub measured_at: String,
    pub command: String,
}

impl Ctx<'_> {
    pub fn work_dir(&self) -> PathBuf {
        self.services.dir.path().join("work")
    }

    pub fn server_config(&self, database_url: &str, stream: &str) -> ServerConfig {
        ServerConfig {
            bin: self.chronicle.clone(),
            database_url: database_url.to_owned(),
            nats_url: self.services.nats.url(),
            stream: stream.to_owned(),
            log_dir: self.services.dir.path().join("logs"),
            env: Vec::new(),
        }
    }

    /// A fresh, migrated database.
    pub async fn database(&self, name: &str) -> anyhow::Result<(String, ServerConfig)> {
        let url = self.services.create_database(name).await?;
        let config = self.server_config(&url, &name.to_uppercase());
        config.migrate().await?;
        Ok((url, config))
    }

    pub fn watch(&self, server: Option<&Server>) -> Watch {
        Watch {
            server: server.map(|s| s.pid),
            postmaster: self.services.pg.postmaster_pid(),
            pg_port: Some(self.services.pg.port()),
        }
    }

    pub fn pgbench(&self, database: &str) -> crate::load::Pgbench {
        crate::load::Pgbench {
            binary: self.services.pgbench(),
            port: self.services.pg.port(),
            database: database.to_owned(),
            work_dir: self.work_dir(),
        }
    }

    pub fn figure(&self, id: &str, title: &str, chronicle: Side, target: Target) -> Figure {
        Figure {
            id: id.into(),
            title: title.into(),
            concurrency: None,
            chronicle,
            baseline: None,
            ratio: None,
            target,
            notes: Vec::new(),
            mode: self.settings.mode().into(),
            measured_at: self.measured_at.clone(),
            command: self.command.clone(),
        }
    }
}

/// Fails a run whose load produced errors: its throughput would mean nothing.
pub fn check(outcome: &Outcome, what: &str) -> anyhow::Result<Outcome> {
    if outcome.errors * 100 > outcome.ops.max(1) {
        bail!(
            "{what}: {} errors in {} operations (see the server log in the harness's temporary directory)",
            outcome.errors,
            outcome.ops
        );
    }
    Ok(*outcome)
}

/// Rates and latencies of repeated runs.
pub fn side(label: &str, unit: &str, runs: &[Outcome]) -> Side {
    Side::new(
        label,
        unit,
        Spread::of(runs.iter().map(|o| o.rate).collect()),
    )
    .latencies(
        Spread::of(runs.iter().map(|o| o.p50_ms).collect()),
        Spread::of(runs.iter().map(|o| o.p99_ms).collect()),
    )
}

/// Chronicle ÷ baseline, run by run (the runs are interleaved, so each pair saw the same
/// machine).
pub fn ratios(chronicle: &[f64], baseline: &[f64]) -> Spread {
    Spread::of(
        chronicle
            .iter()
            .zip(baseline)
            .map(|(c, b)| if *b > 0.0 { c / b } else { f64::NAN })
            .collect(),
    )
}

/// "server 0.42 ms + Postgres 0.61 ms CPU per op, machine 97% busy".
pub fn cpu_note(label: &str, runs: &[Outcome]) -> String {
    let server = Spread::of(runs.iter().map(|o| o.cpu_ms_per_op().0).collect());
    let postgres = Spread::of(runs.iter().map(|o| o.cpu_ms_per_op().1).collect());
    let busy = Spread::of(runs.iter().map(|o| o.cpu.machine_busy * 100.0).collect());
    let mut text = format!("{label}: CPU per operation ");
    if server.median > 0.0 {
        text.push_str(&format!(
            "{:.3} ms in the process under test + ",
            server.median
        ));
    }
    text.push_str(&format!(
        "{:.3} ms in Postgres; machine {:.0}% busy",
        postgres.median, busy.median
    ));
    let transactions = Spread::of(runs.iter().map(Outcome::transactions_per_op).collect());
    if transactions.median > 0.0 {
        // Per-event figures (relay, rebuild) spend far less than one per event.
        let digits = if transactions.median < 0.1 { 4 } else { 1 };
        text.push_str(&format!(
            "; {:.*} Postgres transactions per operation",
            digits, transactions.median
        ));
    }
    text
}
