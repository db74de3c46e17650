//! What the fault tests share: deadline loops, and the processes and proxy they own and break
//! (`chronicle serve`, nats-server, a TCP proxy in front of Postgres).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
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
    devservices::free_port().expect("a free port")
}

pub use crate::common::eventually;

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
        Self::start_on(
            &config.database_url,
            &config.nats_url,
            &config.nats_stream,
            &config.nats_subject_prefix,
        )
        .await
    }

    /// A process on a database, NATS server, stream and subjects of the test's choosing.
    pub async fn start_on(database_url: &str, nats_url: &str, stream: &str, prefix: &str) -> Self {
        let env = [
            ("DATABASE_URL", database_url),
            ("NATS_URL", nats_url),
            ("NATS_STREAM", stream),
            ("NATS_SUBJECT_PREFIX", prefix),
            ("CHRONICLE_ENV", "test"),
            ("JWT_SECRET", JWT_SECRET),
            ("RATE_LIMIT_PER_MINUTE", "1000000"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "1000000"),
            ("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
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

/// A nats-server of the test's own (devservices'), on its own port and store directory, that the
/// test stops, kills and whose store it copies and replaces. Stopped and removed when dropped.
pub struct Nats {
    /// `None` only while a blocking call has it on another thread.
    server: Option<devservices::Nats>,
    copies: usize,
}

impl Nats {
    pub async fn start() -> Self {
        let server = tokio::task::spawn_blocking(devservices::Nats::start)
            .await
            .expect("joined")
            .expect("nats-server starts (install Debian's nats-server)");
        Self {
            server: Some(server),
            copies: 0,
        }
    }

    fn server(&self) -> &devservices::Nats {
        self.server.as_ref().expect("the server is here")
    }

    /// Runs a blocking call off the runtime, so the app under test keeps running meanwhile.
    async fn blocking<T: Send + 'static>(
        &mut self,
        call: impl FnOnce(&mut devservices::Nats) -> T + Send + 'static,
    ) -> T {
        let mut server = self.server.take().expect("the server is here");
        let (server, out) = tokio::task::spawn_blocking(move || {
            let out = call(&mut server);
            (server, out)
        })
        .await
        .expect("joined");
        self.server = Some(server);
        out
    }

    pub fn url(&self) -> String {
        self.server().url()
    }

    fn running(&self) -> bool {
        self.server().pid().is_some()
    }

    /// Starts the server (again) on the same port and store; returns once it accepts clients.
    pub async fn run(&mut self) {
        assert!(!self.running(), "nats-server already runs");
        self.blocking(|nats| nats.restart())
            .await
            .expect("nats-server starts again");
    }

    /// A clean stop (SIGTERM): JetStream writes what it holds before it exits.
    pub async fn stop(&mut self) {
        self.blocking(|nats| nats.stop(Duration::from_secs(10)))
            .await
            .expect("nats-server stops on SIGTERM");
    }

    /// `kill -9`: whatever JetStream acknowledged but had not written yet is gone.
    pub async fn kill(&mut self) {
        self.blocking(|nats| nats.kill()).await;
    }

    /// A copy of the store as it is now (the server must not be running).
    pub async fn copy_store(&mut self) -> PathBuf {
        assert!(!self.running(), "copy the store of a stopped server");
        let store = self.server().store();
        // Beside the store, inside the server's directory, so it goes with it.
        let copy = store.with_extension(format!("copy{}", self.copies));
        self.copies += 1;
        copy_dir(&store, &copy).await;
        copy
    }

    /// Puts an earlier copy in place of the store (the server must not be running).
    pub async fn replace_store(&mut self, copy: &Path) {
        assert!(!self.running(), "replace the store of a stopped server");
        let store = self.server().store();
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
