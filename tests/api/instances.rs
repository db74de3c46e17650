use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{stream_messages, TestApp};

/// A `chronicle serve` process named by its Postgres application_name, so the test can tell
/// which process holds which leader lock.
fn serve(app: &TestApp, name: &str) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = &app.state.config.database_url;
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}application_name={name}");
    let child = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .arg("serve")
        .env("DATABASE_URL", url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("NATS_URL", &app.state.config.nats_url)
        .env("NATS_STREAM", &app.state.config.nats_stream)
        .env("NATS_SUBJECT_PREFIX", &app.state.config.nats_subject_prefix)
        .env("CHRONICLE_ENV", "test")
        .env(
            "JWT_SECRET",
            "test-secret-that-is-long-enough-for-hs256-0123",
        )
        .env("RATE_LIMIT_PER_MINUTE", "1000000")
        .env("AUTH_RATE_LIMIT_PER_MINUTE", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, port)
}

async fn ready(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            return;
        }
        crate::helpers::poll_pause().await;
    }
    panic!("instance on {port} never became ready");
}

/// Which application holds each leader lock.
/// Roles with one leader each: the users, posts, sessions and email-outbox projectors and the
/// relay (no SMTP is configured here, so no email sender runs).
const LEADER_LOCKS: usize = 5;
/// Every one of them reports its terms in `/admin/projections`.
const FENCED_ROLES: usize = LEADER_LOCKS;

async fn leaders(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&app.state.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn with_the_leader_killed_the_other_instance_keeps_projecting_and_relaying_without_gap_or_duplicate(
) {
    // The test app only provides the database and names; the two instances are processes.
    let app = TestApp::spawn_with_options(
        crate::helpers::TestDatabase::create().await,
        &[],
        chronicle::startup::BuildOptions {
            migrate: true,
            workers: false,
        },
    )
    .await;
    let client = reqwest::Client::new();
    let (mut first, first_port) = serve(&app, "first");
    ready(&client, first_port).await;
    let (mut second, second_port) = serve(&app, "second");
    ready(&client, second_port).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while leaders(&app).await.len() < LEADER_LOCKS && Instant::now() < deadline {
        crate::helpers::poll_pause().await;
    }
    let before = leaders(&app).await;
    let register = |port: u16, i: usize| {
        client
            .post(format!("http://127.0.0.1:{port}/api/v1/auth/register"))
            .json(&json!({"email": format!("u{i}@example.com"), "password": "correct horse battery", "name": "U"}))
            .send()
    };
    for i in 0..10 {
        assert_eq!(
            register(second_port, i).await.unwrap().status(),
            StatusCode::CREATED
        );
    }

    first.kill().unwrap();
    first.wait().unwrap();
    let mut statuses = Vec::new();
    for i in 10..40 {
        statuses.push(register(second_port, i).await.unwrap().status());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = leaders(&app).await;
    while !(after.len() == LEADER_LOCKS && after.iter().all(|a| a == "second"))
        && Instant::now() < deadline
    {
        crate::helpers::poll_pause().await;
        after = leaders(&app).await;
    }
    let log: Vec<String> =
        sqlx::query_scalar("SELECT event_id::text FROM events ORDER BY transaction_id, position")
            .fetch_all(&app.state.pool)
            .await
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut messages: Vec<Value> = Vec::new();
    while Instant::now() < deadline {
        messages = stream_messages(&app.state.config.nats_url, &app.state.config.nats_stream).await;
        if messages.len() >= log.len() {
            break;
        }
        crate::helpers::poll_pause().await;
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users_view")
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    let (_, admin) = app.admin().await;
    let reported: Value = client
        .get(format!(
            "http://127.0.0.1:{second_port}/api/v1/admin/projections"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    second.kill().unwrap();
    second.wait().unwrap();

    assert_eq!(
        before.len(),
        LEADER_LOCKS,
        "one leader per role: {before:?}"
    );
    assert!(
        before.iter().all(|a| a == "first"),
        "the first instance led: {before:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CREATED),
        "the API kept working: {statuses:?}"
    );
    assert!(
        after.iter().all(|a| a == "second") && after.len() == LEADER_LOCKS,
        "the survivor took over: {after:?}"
    );
    assert_eq!(users, 40, "the survivor projected everything");
    let leading: Vec<&str> = reported["leadership"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["until"].is_null())
        .map(|t| t["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        leading.len(),
        FENCED_ROLES,
        "the survivor reports leading every role: {reported}"
    );
    let epochs: Vec<i64> = reported["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&reported["relay"]])
        .map(|r| r["leader_epoch"].as_i64().unwrap())
        .collect();
    assert!(
        epochs.iter().all(|e| *e >= 2),
        "each takeover began a new epoch: {epochs:?}"
    );
    let ids: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        log.iter().map(String::as_str).collect::<Vec<_>>(),
        "every event once, in commit order"
    );
}
