//! The Chronicle server under test: the release binary started with the benchmark's settings,
//! and an HTTP client for the setup steps (users sign in once, not per request).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::procs;
use crate::services::free_port;

/// Signs the benchmark's tokens; any 32+ bytes will do for a throwaway cluster.
pub const JWT_SECRET: &str = "chronicle-benchmark-secret-not-for-production-use";
pub const PASSWORD: &str = "benchmark password 1";

/// Builds (or finds up to date) the release `chronicle` binary and returns its path.
pub fn build_chronicle(repo: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the release chronicle binary (cargo build --release --bin chronicle)");
    let mut command = std::process::Command::new(cargo);
    // `cargo run` hands this process the bench package's CARGO_PKG_*/CARGO_MANIFEST_* values;
    // build scripts (ring's) rerun when those change, so passing them on would rebuild half
    // the dependency tree here and again on the next `cargo run`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let from_cargo_run = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
            "CARGO_RUSTC_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || name == "OUT_DIR";
        if from_cargo_run {
            command.env_remove(name.as_ref());
        }
    }
    let output = command
        .current_dir(repo)
        .args([
            "build",
            "--release",
            "--bin",
            "chronicle",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!("cargo build --release --bin chronicle failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "chronicle")
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .context("cargo built no chronicle executable")
}

/// The subject prefix of a benchmark stream.
pub fn subject_prefix(stream: &str) -> String {
    format!("bench.{}", stream.to_lowercase())
}

/// How to start Chronicle against one benchmark database.
#[derive(Clone)]
pub struct ServerConfig {
    pub bin: PathBuf,
    pub database_url: String,
    pub nats_url: String,
    pub stream: String,
    pub log_dir: PathBuf,
    /// Settings on top of the benchmark's own (e.g. an OTLP endpoint).
    pub env: Vec<(String, String)>,
}

impl ServerConfig {
    fn command(&self, port: u16) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.bin);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("NATS_URL", &self.nats_url)
            .env("NATS_STREAM", &self.stream)
            .env("NATS_SUBJECT_PREFIX", subject_prefix(&self.stream))
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", JWT_SECRET)
            .env("CHRONICLE_ENV", "production")
            // The limits are per principal and would throttle a load generator.
            .env("RATE_LIMIT_PER_MINUTE", "100000000")
            .env("AUTH_RATE_LIMIT_PER_MINUTE", "100000000")
            // The webhook receiver listens on 127.0.0.1.
            .env("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    fn log_file(&self, name: &str) -> anyhow::Result<std::fs::File> {
        std::fs::create_dir_all(&self.log_dir)?;
        Ok(std::fs::File::create(
            self.log_dir.join(format!("{name}.log")),
        )?)
    }

    /// Runs a `chronicle` CLI command to completion; returns its standard output.
    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let mut command = self.command(free_port()?);
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("starting chronicle")?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await?;
        }
        let output = child.wait_with_output().await?;
        if !output.status.success() {
            bail!(
                "chronicle {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `chronicle serve`, ready when /readyz says so.
    pub async fn serve(&self, name: &str) -> anyhow::Result<Server> {
        let port = free_port()?;
        let log = self.log_file(name)?;
        let child = self
            .command(port)
            .arg("serve")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting chronicle serve")?;
        let server = Server::new(child, Some(format!("http://127.0.0.1:{port}")))?;
        server
            .wait_ready(&self.log_dir.join(format!("{name}.log")))
            .await?;
        Ok(server)
    }

    /// `chronicle worker`: projectors, relay, webhooks and analytics without the API.
    pub fn worker(&self, name: &str) -> anyhow::Result<Server> {
        let log = self.log_file(name)?;
        let child = self
            .command(free_port()?)
            .args(["worker", "--no-migrate"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting chronicle worker")?;
        Server::new(child, None)
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.cli(&["migrate"], None).await.map(drop)
    }

    pub async fn create_admin(&self, email: &str) -> anyhow::Result<()> {
        self.cli(
            &[
                "users",
                "create-admin",
                "--email",
                email,
                "--name",
                "Bench Admin",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .await
        .map(drop)
    }
}

pub struct Server {
    child: tokio::process::Child,
    pub pid: u32,
    base: Option<String>,
}

impl Server {
    fn new(child: tokio::process::Child, base: Option<String>) -> anyhow::Result<Self> {
        let pid = child.id().context("the server exited at once")?;
        Ok(Self { child, pid, base })
    }

    pub fn base(&self) -> &str {
        self.base.as_deref().unwrap_or("")
    }

    async fn wait_ready(&self, log: &Path) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client
                .get(format!("{}/readyz", self.base()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("chronicle did not become ready (log: {})", log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Peak resident set (VmHWM) so far, in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        procs::status_kib(self.pid, "VmHWM").map(|kib| kib as f64 / 1024.0)
    }

    /// SIGTERM, a graceful drain, then SIGKILL if it takes too long.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub access: String,
}

/// The HTTP calls the setup steps make.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let response = request.send().await.with_context(|| what.to_owned())?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{what}: {status} {body}");
        }
        Ok(body)
    }

    fn signed_in(body: &Value) -> anyhow::Result<User> {
        let data = &body["data"];
        let text = |v: &Value| {
            v.as_str()
                .map(str::to_owned)
                .context("auth answer lacks a field")
        };
        Ok(User {
            id: text(&data["user"]["id"])?,
            access: text(&data["access_token"])?,
        })
    }

    pub async fn register(&self, email: &str) -> anyhow::Result<User> {
        let body = self
            .call(
                self.http
                    .post(self.url("/api/v1/auth/register"))
                    .json(&json!({"email": email, "password": PASSWORD, "name": "Bench User"})),
                "registering a user",
            )
            .await?;
        Self::signed_in(&body)
    }

    pub async fn login(&self, email: &str) -> anyhow::Result<User> {
        let body = self
            .call(
                self.http
                    .post(self.url("/api/v1/auth/login"))
                    .json(&json!({"email": email, "password": PASSWORD})),
                "signing in",
            )
            .await?;
        Self::signed_in(&body)
    }

    /// Registers `count` users, two at a time (argon2 is CPU-bound and the machine has two
    /// cores).
    pub async fn register_many(&self, prefix: &str, count: usize) -> anyhow::Result<Vec<User>> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(0..count)
            .map(|i| {
                let api = self.clone();
                let email = format!("{prefix}-{i}@bench.example");
                async move { api.register(&email).await }
            })
            .buffered(2)
            .try_collect()
            .await
    }

    /// `count` published posts by `token`'s user, 8 at a time; their ids.
    pub async fn published_posts(&self, token: &str, count: usize) -> anyhow::Result<Vec<String>> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(0..count)
            .map(|n| async move {
                let mut post = post_body(n);
                post["status"] = "published".into();
                let created = self.create_post(token, &post).await?;
                created["id"]
                    .as_str()
                    .map(str::to_owned)
                    .context("a created post without an id")
            })
            .buffer_unordered(8)
            .try_collect()
            .await
    }

    pub async fn create_post(&self, token: &str, post: &Value) -> anyhow::Result<Value> {
        let body = self
            .call(
                self.http
                    .post(self.url("/api/v1/posts"))
                    .bearer_auth(token)
                    .json(post),
                "creating a post",
            )
            .await?;
        Ok(body["data"].clone())
    }

    pub async fn post_json(&self, token: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(
            self.http.post(self.url(path)).bearer_auth(token).json(body),
            path,
        )
        .await
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        self.call(self.http.get(self.url(path)), path).await
    }
}

/// The post every command benchmark writes: a title, about 500 bytes of body and two tags.
pub fn post_body(n: usize) -> Value {
    json!({
        "title": format!("Benchmark post {n}"),
        "body": POST_TEXT,
        "tags": ["bench", "rust"],
    })
}

pub const POST_TEXT: &str = "Event sourcing keeps every change as an event in an append-only log. \
The current state of an aggregate is the fold of its events, read models are projections of the \
log, and anything derived can be rebuilt from it. This paragraph is the body of a benchmark post: \
about five hundred bytes, the size of a short note, so that the event row the command appends and \
the row the baseline inserts have the same size. Nothing in it matters but its length, which is \
kept constant across runs so that the figures compare like with like.";
