//! The background workers under supervision, as `/metrics` shows them.

use std::time::{Duration, Instant};

use crate::helpers::{poll_pause, TestDatabase};

/// Every worker a server with workers and without SMTP runs, besides one per projector.
const WORKERS: &[&str] = &[
    "log-listener",
    "idempotency-sweep",
    "login-throttle-sweep",
    "rate-limit-prune",
    "log-tail",
    "revocations",
    "relay",
    "analytics",
    "webhook-consumer",
    "webhook-wake",
    "webhook-sender",
    "projector:email_outbox",
];

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn metrics_show_each_background_worker_running_once_and_never_restarted() {
    // Its own process: the metrics registry is process-wide, and other tests' servers run the
    // same workers.
    let db = TestDatabase::create().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("TEST_{unique}");
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("CHRONICLE_ENV", "test")
        .env(
            "JWT_SECRET",
            "test-secret-that-is-long-enough-for-hs256-0123",
        )
        .env("NATS_URL", &nats_url)
        .env("NATS_STREAM", &stream)
        .env("NATS_SUBJECT_PREFIX", format!("test.{unique}"))
        .env_remove("SMTP_URL")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut workers: Vec<String> = WORKERS.iter().map(|w| (*w).to_owned()).collect();
    for projector in projections::all_projectors() {
        workers.push(format!("projector:{}", projector.name()));
    }
    let running = |metrics: &str, worker: &str| {
        value(
            metrics,
            &format!("chronicle_workers_running{{worker=\"{worker}\"}}"),
        )
    };
    let started = Instant::now();
    let metrics = loop {
        let scrape = match client.get(format!("{base}/metrics")).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if workers.iter().all(|w| running(&scrape, w).is_some()) {
            break scrape;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not every worker showed up in:\n{scrape}"
        );
        poll_pause().await;
    };
    let _ = server.kill().await;
    if let Ok(nats) = async_nats::connect(nats_url.as_str()).await {
        let _ = async_nats::jetstream::new(nats)
            .delete_stream(&stream)
            .await;
    }

    for worker in &workers {
        assert_eq!(
            running(&metrics, worker),
            Some(1.0),
            "{worker} in:\n{metrics}"
        );
        let restarts = format!("chronicle_worker_restarts_total{{worker=\"{worker}\"}}");
        assert_eq!(
            value(&metrics, &restarts),
            Some(0.0),
            "{restarts} in:\n{metrics}"
        );
    }
    assert_eq!(
        running(&metrics, "email-sender"),
        None,
        "no sender without SMTP_URL"
    );
}
