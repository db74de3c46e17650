use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{stream_messages, OwnNats, TestApp};

/// The event ids of the log in commit order.
async fn log_ids(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id::text FROM events ORDER BY transaction_id, position")
        .fetch_all(&app.state.pool)
        .await
        .unwrap()
}

/// Waits until the stream holds as many messages as the log has events.
async fn stream_caught_up(app: &TestApp, nats_url: &str, deadline: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let expected = log_ids(app).await.len();
        let messages = stream_messages(nats_url, &app.state.config.nats_stream).await;
        if messages.len() >= expected || started.elapsed() > deadline {
            return messages;
        }
        crate::helpers::poll_pause().await;
    }
}

async fn burst(app: &TestApp, token: &str, posts: usize) {
    for chunk in (0..posts).collect::<Vec<_>>().chunks(25) {
        let responses = join_all(chunk.iter().map(|i| {
            app.post(
                "/api/v1/posts",
                Some(token),
                json!({"title": format!("burst {i}"), "body": "b", "status": "published"}),
            )
        }))
        .await;
        assert!(responses.iter().all(|r| r.status() == StatusCode::CREATED));
    }
}

fn assert_exactly_once_in_order(messages: &[Value], log: &[String]) {
    let ids: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no event twice in the stream");
    assert_eq!(
        ids,
        log.iter().map(String::as_str).collect::<Vec<_>>(),
        "every event, in commit order"
    );
}

#[tokio::test]
async fn every_event_of_a_burst_reaches_the_stream_once_in_commit_order_as_a_cloud_event() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("relay@example.com").await;

    burst(&app, &token, 1000).await;
    let nats_url = app.state.config.nats_url.clone();
    let messages = stream_caught_up(&app, &nats_url, Duration::from_secs(30)).await;

    let log = log_ids(&app).await;
    assert!(
        log.len() >= 1500,
        "1,000 commands, half of them publishing at once, are 1,500 events"
    );
    assert_exactly_once_in_order(&messages, &log);
    let published = messages
        .iter()
        .find(|m| m["type"] == "post.published")
        .unwrap();
    assert_eq!(published["specversion"], "1.0");
    assert_eq!(published["source"], "/chronicle");
    assert!(published["subject"].as_str().unwrap().starts_with("post/"));
    assert!(published["position"]
        .as_str()
        .unwrap()
        .parse::<projections::Position>()
        .is_ok());
    assert_eq!(published["aggregateversion"], "2");
    assert!(published["correlationid"].is_string());
    let registered = messages
        .iter()
        .find(|m| m["type"] == "user.registered")
        .unwrap();
    assert!(
        registered["data"]["password_hash"].is_null(),
        "no secrets on NATS"
    );
}

#[tokio::test]
async fn nats_killed_mid_burst_and_restarted_loses_nothing_and_duplicates_nothing() {
    let mut nats = OwnNats::start();
    let url = nats.url();
    let app = TestApp::spawn_with(&[("NATS_URL", url.as_str())]).await;
    let (_, token, _) = app.register("outage@example.com").await;
    burst(&app, &token, 50).await;

    nats.kill();
    burst(&app, &token, 50).await;
    let ready: Value = app.get("/readyz", None).await.json().await.unwrap();
    nats.restart();
    burst(&app, &token, 20).await;
    let messages = stream_caught_up(&app, &url, Duration::from_secs(30)).await;

    assert_eq!(
        ready["checks"]["nats"], "down",
        "readyz saw NATS down while the API kept working"
    );
    assert_exactly_once_in_order(&messages, &log_ids(&app).await);
}

#[tokio::test]
async fn republishing_from_a_position_resends_and_jetstream_keeps_one_copy() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("republish@example.com").await;
    burst(&app, &token, 10).await;
    let nats_url = app.state.config.nats_url.clone();
    let before = stream_caught_up(&app, &nats_url, Duration::from_secs(30)).await;
    let from = before[3]["position"].as_str().unwrap().to_owned();

    // Off the runtime: a blocking wait would freeze this test's server while the CLI
    // may wait for a lock its projector holds.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .args(["events", "republish", "--from", &from])
        .env("DATABASE_URL", &app.state.config.database_url)
        .env("NATS_URL", &nats_url)
        .env("NATS_STREAM", &app.state.config.nats_stream)
        .env("NATS_SUBJECT_PREFIX", &app.state.config.nats_subject_prefix)
        .env("CHRONICLE_ENV", "test")
        .env(
            "JWT_SECRET",
            "test-secret-that-is-long-enough-for-hs256-0123",
        );
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let after = stream_messages(&nats_url, &app.state.config.nats_stream).await;

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("republished {} events", before.len() - 3)),
        "{stdout}"
    );
    assert_eq!(after.len(), before.len(), "deduplicated by Nats-Msg-Id");
    assert_exactly_once_in_order(&after, &log_ids(&app).await);
}
