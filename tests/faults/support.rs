//! What the fault tests share: processes they own (`chronicle serve`, nats-server), a TCP proxy
//! they cut, a load generator, and the checks on the log, the read models and the stream.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::helpers::TestApp;

pub const JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123";

/// How often a deadline loop looks again.
pub const POLL: Duration = Duration::from_millis(25);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local address")
        .port()
}

/// Looks every `POLL` until `check` returns `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < deadline,
            "gave up after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn child_output() -> Stdio {
    if std::env::var("TEST_LOG").is_ok() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// A `chronicle serve` process of the test's own on a fixed port, so clients can keep the same
/// address while it is killed and started again. Killed when dropped.
pub struct Chronicle {
    pub port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Chronicle {
    /// A process on `app`'s database, stream and subjects (`app` runs no workers of its own).
    pub async fn start(app: &TestApp) -> Self {
        let config = &app.state.config;
        let env = [
            ("DATABASE_URL", config.database_url.as_str()),
            ("NATS_URL", config.nats_url.as_str()),
            ("NATS_STREAM", config.nats_stream.as_str()),
            ("NATS_SUBJECT_PREFIX", config.nats_subject_prefix.as_str()),
            ("CHRONICLE_ENV", "test"),
            ("JWT_SECRET", JWT_SECRET),
            ("RATE_LIMIT_PER_MINUTE", "1000000"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "1000000"),
            ("RUST_LOG", "warn"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut process = Self {
            port: free_port(),
            env,
            child: None,
        };
        process.spawn();
        process.ready().await;
        process
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_chronicle"))
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("BIND_ADDR", format!("127.0.0.1:{}", self.port))
            .stdout(child_output())
            .stderr(child_output())
            .kill_on_drop(true)
            .spawn()
            .expect("chronicle serve starts");
        self.child = Some(child);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `kill -9`: no shutdown, no flush, in-flight requests cut.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("reaped");
        }
    }

    /// Starts again on the same port without waiting: clients meet a refused port meanwhile.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the previous process still runs");
        self.spawn();
    }

    pub async fn ready(&self) {
        let client = reqwest::Client::new();
        let url = self.url("/readyz");
        eventually(
            Duration::from_secs(30),
            "chronicle serve to be ready",
            || {
                let request = client.get(&url).send();
                async move {
                    request
                        .await
                        .ok()
                        .filter(|r| r.status() == StatusCode::OK)
                        .map(|_| ())
                }
            },
        )
        .await;
    }
}

/// A nats-server of the test's own, on its own port and store directory, that the test stops,
/// kills and whose store it copies and replaces. Killed and removed when dropped.
pub struct Nats {
    pub port: u16,
    store: PathBuf,
    copies: Vec<PathBuf>,
    child: Option<Child>,
}

impl Nats {
    pub async fn start() -> Self {
        let store = std::env::temp_dir().join(format!(
            "chronicle-fault-nats-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut nats = Self {
            port: free_port(),
            store,
            copies: Vec::new(),
            child: None,
        };
        nats.run().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store; returns once it accepts clients.
    pub async fn run(&mut self) {
        assert!(self.child.is_none(), "nats-server already runs");
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server runs (install Debian's nats-server)");
        self.child = Some(child);
        let port = self.port;
        eventually(
            Duration::from_secs(10),
            "nats-server to listen",
            || async move {
                TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
    }

    /// A clean stop (SIGTERM): JetStream writes what it holds before it exits.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().expect("running nats-server has a pid");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "SIGTERM sent to nats-server");
        let exited = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        assert!(exited.is_ok(), "nats-server did not stop on SIGTERM");
    }

    /// `kill -9`: whatever JetStream acknowledged but had not written yet is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("reaped");
        }
    }

    /// A copy of the store as it is now (the server must not be running).
    pub async fn copy_store(&mut self) -> PathBuf {
        assert!(self.child.is_none(), "copy the store of a stopped server");
        let copy = self
            .store
            .with_extension(format!("copy{}", self.copies.len()));
        self.copies.push(copy.clone());
        copy_dir(&self.store, &copy).await;
        copy
    }

    /// Puts an earlier copy in place of the store (the server must not be running).
    pub async fn replace_store(&mut self, copy: &Path) {
        assert!(
            self.child.is_none(),
            "replace the store of a stopped server"
        );
        let store = self.store.clone();
        tokio::fs::remove_dir_all(&store)
            .await
            .expect("remove the store");
        copy_dir(copy, &store).await;
    }
}

async fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .await
        .expect("cp runs");
    assert!(status.success(), "copied {from:?} to {to:?}");
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
        for copy in &self.copies {
            let _ = std::fs::remove_dir_all(copy);
        }
    }
}

/// A TCP proxy the test controls: cutting it drops live connections and refuses new ones,
/// which to the server looks exactly like Postgres going away.
pub struct ChaosProxy {
    pub port: u16,
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ChaosProxy {
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (up, watcher) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut state = watcher.clone();
                if !*state.borrow() {
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up, task }
    }

    pub fn cut(&self) {
        let _ = self.up.send(false);
    }

    pub fn restore(&self) {
        let _ = self.up.send(true);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// One command of the load and what came of it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sent: Instant,
    pub latency: Duration,
    /// `None` when no HTTP answer came (refused, reset, timed out).
    pub status: Option<u16>,
    pub content_type: String,
    pub code: Option<String>,
    /// The created post when the answer was a 2xx.
    pub post_id: Option<String>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn acked(&self) -> bool {
        self.post_id.is_some()
    }
}

/// Clients that create published posts (two events each) back to back until stopped.
/// Commands wait for the read models (read-your-writes) unless a client sends
/// `Prefer: respond-async`.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Load {
    pub fn start(base: &str, token: &str, clients: usize) -> Self {
        Self::spawn(base, token, clients, false)
    }

    /// Every other client sends `Prefer: respond-async`.
    pub fn start_mixed(base: &str, token: &str, clients: usize) -> Self {
        Self::spawn(base, token, clients, true)
    }

    fn spawn(base: &str, token: &str, clients: usize, mixed: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let tasks = (0..clients)
            .map(|client| {
                let (http, stop, acked) = (http.clone(), stop.clone(), acked.clone());
                let url = format!("{base}/api/v1/posts");
                let token = token.to_owned();
                let respond_async = mixed && client % 2 == 1;
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let title = format!("load {client}-{n}");
                        let outcome = command(&http, &url, &token, &title, respond_async).await;
                        if outcome.acked() {
                            acked.fetch_add(1, Ordering::SeqCst);
                        } else {
                            // A refused or failed command is retried shortly, not in a hot loop.
                            tokio::time::sleep(POLL).await;
                        }
                        outcomes.push(outcome);
                    }
                    outcomes
                })
            })
            .collect();
        Self { stop, acked, tasks }
    }

    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until `more` commands beyond `from` were acknowledged.
    pub async fn wait_for_acked(&self, from: usize, more: usize, deadline: Duration) {
        let acked = self.acked.clone();
        eventually(deadline, "acknowledged commands", || {
            let count = acked.load(Ordering::SeqCst);
            async move { (count >= from + more).then_some(()) }
        })
        .await;
    }

    /// Stops the clients after their current command and returns every outcome in send order.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("load client"));
        }
        all.sort_by_key(|o| o.sent);
        all
    }
}

async fn command(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    title: &str,
    respond_async: bool,
) -> Outcome {
    let sent = Instant::now();
    let mut request = http.post(url).bearer_auth(token);
    if respond_async {
        request = request.header("prefer", "respond-async");
    }
    let result = request
        .json(&json!({"title": title, "body": "load", "status": "published"}))
        .send()
        .await;
    let mut outcome = Outcome {
        sent,
        latency: Duration::ZERO,
        status: None,
        content_type: String::new(),
        code: None,
        post_id: None,
        error: None,
    };
    match result {
        Ok(response) => {
            outcome.status = Some(response.status().as_u16());
            outcome.content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let success = response.status().is_success();
            match response.json::<Value>().await {
                Ok(body) if success => {
                    outcome.post_id = body["data"]["id"].as_str().map(str::to_owned);
                }
                Ok(body) => outcome.code = body["code"].as_str().map(str::to_owned),
                Err(e) => outcome.error = Some(e.to_string()),
            }
        }
        Err(e) => outcome.error = Some(e.to_string()),
    }
    outcome.latency = sent.elapsed();
    outcome
}

pub fn acked_ids(outcomes: &[Outcome]) -> Vec<String> {
    outcomes.iter().filter_map(|o| o.post_id.clone()).collect()
}

/// Registers through `base` and returns the access token.
pub async fn sign_up(base: &str, email: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": email, "password": "correct horse battery", "name": "Load"}))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("json");
    body["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// The event ids of the log in commit order.
pub async fn log_ids(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id::text FROM events ORDER BY transaction_id, position")
        .fetch_all(pool)
        .await
        .expect("read the log")
}

/// How many messages the stream holds now (`None` while it cannot be asked).
pub async fn stream_len(nats_url: &str, stream: &str) -> Option<u64> {
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(1))
        .connect(nats_url);
    let client = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .ok()?
        .ok()?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream).await.ok()?;
    Some(stream.info().await.ok()?.state.messages)
}

/// Waits (up to `deadline`) until the stream holds as many messages as the log has events, then
/// reads them all; the assertions that follow say what is missing if it never got there.
pub async fn stream_caught_up(
    pool: &PgPool,
    nats_url: &str,
    stream: &str,
    deadline: Duration,
) -> Vec<Value> {
    let expected = log_ids(pool).await.len() as u64;
    let started = Instant::now();
    while started.elapsed() < deadline {
        if stream_len(nats_url, stream)
            .await
            .is_some_and(|n| n >= expected)
        {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    crate::helpers::stream_messages(nats_url, stream).await
}

/// Waits until the relay has published the whole log and saved its checkpoint at the head.
pub async fn relayed(pool: &PgPool, nats_url: &str, stream: &str) -> u64 {
    let head = projections::log::head(pool).await.expect("log head");
    let events = log_ids(pool).await.len() as u64;
    eventually(
        Duration::from_secs(30),
        "the relay to publish the log and checkpoint it",
        || async move {
            let checkpoint: (i64, i64) = sqlx::query_as(
                "SELECT transaction_id, position FROM relay_checkpoints WHERE stream = $1",
            )
            .bind(stream)
            .fetch_optional(pool)
            .await
            .ok()??;
            let in_stream = stream_len(nats_url, stream).await?;
            (checkpoint == (head.transaction_id, head.position) && in_stream == events)
                .then_some(in_stream)
        },
    )
    .await
}

pub fn assert_exactly_once_in_order(messages: &[Value], log: &[String]) {
    let ids: Vec<&str> = messages
        .iter()
        .map(|m| m["id"].as_str().expect("CloudEvent id"))
        .collect();
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "an event is in the stream twice ({} messages, {} distinct)",
        ids.len(),
        unique.len()
    );
    let missing = log
        .iter()
        .filter(|id| !unique.contains(&id.as_str()))
        .count();
    assert_eq!(
        missing, 0,
        "{missing} events of the log are not in the stream"
    );
    assert_eq!(
        ids,
        log.iter().map(String::as_str).collect::<Vec<_>>(),
        "the stream holds the log in commit order"
    );
}

/// Every acknowledged post has its two events in the log and exactly once in the stream.
pub async fn assert_acked_in_log_and_stream(pool: &PgPool, acked: &[String], messages: &[Value]) {
    let logged: Vec<(String, String)> = sqlx::query_as(
        "SELECT aggregate_id, event_id::text FROM events
          WHERE aggregate_type = 'post' AND aggregate_id = ANY($1)",
    )
    .bind(acked)
    .fetch_all(pool)
    .await
    .expect("acknowledged events");
    let mut per_post = std::collections::HashMap::<&str, usize>::new();
    for (post, _) in &logged {
        *per_post.entry(post.as_str()).or_default() += 1;
    }
    let incomplete: Vec<&String> = acked
        .iter()
        .filter(|id| per_post.get(id.as_str()) != Some(&2))
        .collect();
    assert!(
        incomplete.is_empty(),
        "{} acknowledged posts lack their created and published events in the log: {:?}",
        incomplete.len(),
        &incomplete[..incomplete.len().min(5)]
    );
    let mut in_stream = std::collections::HashMap::<&str, usize>::new();
    for message in messages {
        if let Some(id) = message["id"].as_str() {
            *in_stream.entry(id).or_default() += 1;
        }
    }
    let not_once = logged
        .iter()
        .filter(|(_, event)| in_stream.get(event.as_str()) != Some(&1))
        .count();
    assert_eq!(
        not_once, 0,
        "{not_once} events of acknowledged commands are not exactly once in the stream"
    );
}

/// Waits until the posts read model holds every acknowledged post, published.
pub async fn read_model_has(pool: &PgPool, acked: &[String], deadline: Duration) {
    let ids: Vec<uuid::Uuid> = acked
        .iter()
        .map(|id| id.parse().expect("post ids are UUIDs"))
        .collect();
    let expected = ids.len() as i64;
    let ids = &ids;
    eventually(
        deadline,
        "the posts read model to catch up",
        || async move {
            let projected: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM posts_view WHERE id = ANY($1) AND status = 'published'",
            )
            .bind(ids)
            .fetch_one(pool)
            .await
            .ok()?;
            (projected == expected).then_some(())
        },
    )
    .await;
}
