//! A Postgres server of the test's own (initdb into a temporary directory, run as the `postgres`
//! user), which the test can stop fast, crash with `kill -9` and start again, and the admin that
//! a test makes on it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::process::Command;

use crate::support::{eventually, free_port};

/// Postgres refuses to run as root; the tests may run as root.
const OS_USER: &str = "postgres";

pub struct PgServer {
    pub port: u16,
    dir: PathBuf,
}

fn quiet() -> Stdio {
    if std::env::var("TEST_LOG").is_ok() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// Runs a Postgres tool as the `postgres` user when this process is root, else as itself.
fn as_postgres(tool: &str) -> Command {
    let root = std::env::var("USER").is_ok_and(|u| u == "root")
        || std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let mut command = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", OS_USER, "--", tool]);
        c
    } else {
        Command::new(tool)
    };
    command.stdout(quiet()).stderr(quiet()).kill_on_drop(true);
    command
}

impl PgServer {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "chronicle-fault-pg-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("the server's directory");
        let _ = Command::new("chown").arg(OS_USER).arg(&dir).status().await;
        let status = as_postgres("initdb")
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .status()
            .await
            .expect("initdb runs (install Postgres' server binaries)");
        assert!(status.success(), "initdb succeeded");
        let server = Self {
            port: free_port(),
            dir,
        };
        server.run().await;
        server
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts the server (again) and waits until it accepts connections. After a crash the
    /// orphaned backends of the old server must exit first, so a refused start is retried.
    pub async fn run(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let data = self.data();
        let log = self.dir.join("log");
        eventually(Duration::from_secs(30), "Postgres to start", || {
            let mut command = as_postgres("pg_ctl");
            command
                .args(["start", "-w", "-t", "20", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-o", &options]);
            async move { command.status().await.ok()?.success().then_some(()) }
        })
        .await;
    }

    /// `pg_ctl stop -m fast`: sessions are terminated (57P01), open transactions rolled back.
    pub async fn stop_fast(&self) {
        let status = as_postgres("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.data())
            .status()
            .await
            .expect("pg_ctl runs");
        assert!(status.success(), "Postgres stopped");
    }

    /// `kill -9` of the postmaster.
    pub async fn crash(&self) {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .expect("a running server has a pid file");
        let pid = pid_file.lines().next().expect("the pid").trim().to_owned();
        let status = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "SIGKILL sent to the postmaster");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args([
                "-u",
                OS_USER,
                "--",
                "pg_ctl",
                "stop",
                "-m",
                "immediate",
                "-D",
            ])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates an admin in the database at `database_url` (as the CLI does) and signs in at `base`.
pub async fn admin_token(database_url: &str, base: &str) -> String {
    let pool = PgPool::connect(database_url).await.expect("the database");
    let state =
        chronicle::state::AppState::new(crate::helpers::test_config(database_url, &[]), pool);
    let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
    chronicle::app::accounts::register(
        &state,
        &chronicle::commands::CommandMeta {
            correlation_id: "fault-test".into(),
            actor_id: None,
        },
        chronicle::app::accounts::Registration {
            email: aggregates::values::Email::parse(&email).expect("email"),
            name: aggregates::values::UserName::parse("Admin").expect("name"),
            password: aggregates::values::Password::parse(crate::helpers::ADMIN_PASSWORD)
                .expect("password"),
            role: aggregates::Role::Admin,
        },
    )
    .await
    .expect("admin created");
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    body["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}
