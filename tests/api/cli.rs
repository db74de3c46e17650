use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, TestDatabase};

/// The `chronicle` binary with the test settings, on `database_url`.
pub(crate) fn chronicle(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .env("DATABASE_URL", database_url)
        .env(
            "JWT_SECRET",
            "test-secret-that-is-long-enough-for-hs256-0123",
        )
        .env("CHRONICLE_ENV", "test")
        .env("RUST_LOG", "warn");
    command
}

#[tokio::test]
async fn create_admin_reads_the_password_from_stdin_and_the_admin_can_sign_in() {
    let app = TestApp::spawn().await;
    let database_url = app.state.config.database_url.clone();

    let mut child = chronicle(&database_url)
        .args([
            "users",
            "create-admin",
            "--email",
            "Root@Example.com",
            "--name",
            "Root",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"an admin password\nignored second line\n")
        .unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let login = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "root@example.com", "password": "an admin password"}),
        )
        .await;

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("root@example.com"));
    assert_eq!(login.status(), StatusCode::OK);
    let body: serde_json::Value = login.json().await.unwrap();
    assert_eq!(body["data"]["user"]["role"], "admin");
}

#[tokio::test]
async fn create_admin_refuses_a_taken_email_with_a_clear_message() {
    let app = TestApp::spawn().await;
    app.register("dup-admin@example.com").await;

    let mut child = chronicle(&app.state.config.database_url)
        .args([
            "users",
            "create-admin",
            "--email",
            "dup-admin@example.com",
            "--name",
            "X",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"an admin password\n")
        .unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();

    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));
}

#[test]
fn serve_refuses_to_start_in_production_without_a_jwt_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .arg("serve")
        .env_remove("JWT_SECRET")
        .env_remove("CHRONICLE_ENV")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("JWT_SECRET is required"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn serve_with_an_unreachable_database_fails_with_a_clear_message() {
    let output = chronicle("postgres://postgres@127.0.0.1:1/nowhere")
        .arg("serve")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("connecting to Postgres at postgres://postgres@127.0.0.1:1/nowhere"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[tokio::test]
async fn serve_creates_its_database_and_stops_gracefully_on_sigterm() {
    let db = TestDatabase::create().await;
    let fresh = format!("{}_fresh", db.name);
    let database_url = crate::helpers::with_database(&db.url, &fresh);
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut server = chronicle(&database_url)
        .arg("serve")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = false;
    while Instant::now() < deadline && !ready {
        ready = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        crate::helpers::poll_pause().await;
    }

    let kill = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&crate::helpers::admin_database_url())
            .await
            .unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {fresh} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();

    assert!(ready, "the server became ready on a database it created");
    assert!(kill.success());
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}"
    );
}

#[tokio::test]
async fn openapi_prints_the_served_document_without_any_configuration() {
    let app = TestApp::spawn().await;
    // No DATABASE_URL, JWT_SECRET or NATS: a linter or client generator needs none.
    let output = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .arg("openapi")
        .env_clear()
        .env("CHRONICLE_ENV", "production")
        .output()
        .unwrap();
    let served: serde_json::Value = app.get("/openapi.json", None).await.json().await.unwrap();

    assert!(output.status.success(), "{output:?}");
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, served);
}
