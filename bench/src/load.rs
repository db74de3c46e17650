//! The load generators: wrk (with Lua scripts) for HTTP, pgbench for raw SQL. Both report
//! throughput and latency percentiles, and the CPU the server and Postgres spent meanwhile.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::procs::{CpuMeter, CpuUse};
use crate::stats::percentile;

/// One timed run of a load generator.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Successful operations per second.
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ops: u64,
    pub errors: u64,
    pub cpu: CpuUse,
    /// Postgres transactions (each autocommitted statement is one) in the whole cluster.
    pub pg_transactions: f64,
}

impl Outcome {
    pub fn transactions_per_op(&self) -> f64 {
        self.pg_transactions / self.ops.max(1) as f64
    }

    /// Server and Postgres CPU milliseconds per successful operation.
    pub fn cpu_ms_per_op(&self) -> (f64, f64) {
        let ops = self.ops.max(1) as f64;
        (
            self.cpu.server_secs * 1000.0 / ops,
            self.cpu.postgres_secs * 1000.0 / ops,
        )
    }
}

/// Which processes' CPU to count.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    pub server: Option<u32>,
    pub postmaster: Option<u32>,
    /// The cluster whose transaction counters to read.
    pub pg_port: Option<u16>,
}

/// Committed and rolled-back transactions of the cluster so far. Backends publish their
/// counters about once a second, so a run of several seconds is counted to within a second.
pub async fn cluster_transactions(port: Option<u16>) -> f64 {
    use sqlx::Connection;
    let Some(port) = port else { return 0.0 };
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let Ok(mut conn) = sqlx::PgConnection::connect(&url).await else {
        return 0.0;
    };
    let total: Result<f64, _> =
        sqlx::query_scalar("SELECT sum(xact_commit + xact_rollback)::float8 FROM pg_stat_database")
            .fetch_one(&mut conn)
            .await;
    let _ = conn.close().await;
    total.unwrap_or(0.0)
}

pub const WRK_REPORT: &str = include_str!("../lua/report.lua");
pub const CREATE_POST: &str = include_str!("../lua/create_post.lua");
pub const UPDATE_POST: &str = include_str!("../lua/update_post.lua");
pub const GET_POST: &str = include_str!("../lua/get_post.lua");

/// Writes a wrk script: the harness's data (Lua definitions), the template, the reporter.
pub fn lua_script(dir: &Path, name: &str, data: &str, template: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, format!("{data}\n{template}\n{WRK_REPORT}"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A Lua string literal.
pub fn lua_str(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Deserialize)]
struct WrkReport {
    requests: u64,
    duration_us: u64,
    status_errors: u64,
    socket_errors: u64,
    p50_us: f64,
    p99_us: f64,
}

/// Where `--profile` puts its recordings; unset, nothing is recorded.
pub static PROFILE_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// With `--profile`, records the server with `perf` (call graphs, 499 Hz) for `secs`, into
/// `<dir>/<script>-c<connections>-<n>.perf.data`; `perf report -i <file>` reads it.
fn start_profile(
    pid: Option<u32>,
    script: &Path,
    connections: usize,
    secs: u64,
) -> Option<tokio::process::Child> {
    let dir = PROFILE_DIR.get()?;
    let pid = pid?;
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let stem = script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = dir.join(format!("{stem}-c{connections}-{n}.perf.data"));
    std::fs::create_dir_all(dir).ok()?;
    match tokio::process::Command::new("perf")
        .args([
            "record",
            "-F",
            "499",
            "-g",
            "-q",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(&out)
        .args(["--", "sleep", &secs.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => {
            eprintln!("  profiling the server into {}", out.display());
            Some(child)
        }
        Err(e) => {
            eprintln!("  cannot run perf ({e}); not profiling");
            None
        }
    }
}

/// Runs wrk for `secs` seconds with `connections` connections over two threads.
pub async fn wrk(
    url: &str,
    connections: usize,
    secs: u64,
    script: &Path,
    watch: Watch,
) -> anyhow::Result<Outcome> {
    let threads = connections.clamp(1, 2);
    let transactions = cluster_transactions(watch.pg_port).await;
    let meter = CpuMeter::start(watch.server, watch.postmaster);
    let profile = start_profile(watch.server, script, connections, secs);
    let output = tokio::process::Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{secs}s"),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk")?;
    let cpu = meter.stop();
    let pg_transactions = cluster_transactions(watch.pg_port).await - transactions;
    if let Some(mut perf) = profile {
        let _ = perf.wait().await;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report: WrkReport = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("wrk printed no report")
        .and_then(|l| serde_json::from_str(l).context("parsing wrk's report"))?;
    let errors = report.status_errors + report.socket_errors;
    let ok = report.requests.saturating_sub(report.status_errors);
    Ok(Outcome {
        rate: ok as f64 / (report.duration_us.max(1) as f64 / 1e6),
        p50_ms: report.p50_us / 1000.0,
        p99_ms: report.p99_us / 1000.0,
        ops: ok,
        errors,
        cpu,
        pg_transactions,
    })
}

/// A pgbench invocation against the benchmark cluster.
pub struct Pgbench {
    pub binary: PathBuf,
    pub port: u16,
    pub database: String,
    pub work_dir: PathBuf,
}

impl Pgbench {
    /// Runs `script` with `clients` clients for `secs` seconds (prepared statements, like the
    /// server's sqlx); latencies come from pgbench's per-transaction log.
    pub async fn run(
        &self,
        script: &Path,
        clients: usize,
        secs: u64,
        watch: Watch,
    ) -> anyhow::Result<Outcome> {
        let log_dir = self
            .work_dir
            .join(format!("pgbench-log-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&log_dir)?;
        let transactions = cluster_transactions(watch.pg_port).await;
        let meter = CpuMeter::start(None, watch.postmaster);
        let output = tokio::process::Command::new(&self.binary)
            .args([
                "-n",
                "-M",
                "prepared",
                "-c",
                &clients.to_string(),
                "-j",
                &clients.clamp(1, 2).to_string(),
                "-T",
                &secs.to_string(),
                "-l",
            ])
            .arg(format!("--log-prefix={}", log_dir.join("tx").display()))
            .arg("-f")
            .arg(script)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                &self.database,
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("running pgbench")?;
        let cpu = meter.stop();
        let pg_transactions = cluster_transactions(watch.pg_port).await - transactions;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&log_dir);
            bail!(
                "pgbench failed: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let latencies = read_latencies(&log_dir);
        let _ = std::fs::remove_dir_all(&log_dir);
        let mut latencies = latencies?;
        latencies.sort_by(f64::total_cmp);
        let tps: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .context("pgbench printed no tps")?;
        let failed: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("number of failed transactions: "))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        Ok(Outcome {
            rate: tps,
            p50_ms: percentile(&latencies, 50.0) / 1000.0,
            p99_ms: percentile(&latencies, 99.0) / 1000.0,
            ops: latencies.len() as u64,
            errors: failed,
            cpu: CpuUse {
                server_secs: 0.0,
                ..cpu
            },
            pg_transactions,
        })
    }
}

/// Transaction latencies (microseconds, the third column) from pgbench's `-l` files.
fn read_latencies(dir: &Path) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        latencies.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok()),
        );
    }
    if latencies.is_empty() {
        bail!("pgbench logged no transactions");
    }
    Ok(latencies)
}

/// A SQL string literal.
pub fn sql_str(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
