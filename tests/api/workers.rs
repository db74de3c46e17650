//! The background workers under supervision, as `/metrics` shows them.

use std::time::{Duration, Instant};

use crate::helpers::{metric_value, poll_pause, ServerProcess, TestDatabase};

/// Every worker a server with workers and without SMTP runs, besides one per projector.
const WORKERS: &[&str] = &[
    "log-listener",
    "idempotency-sweep",
    "login-throttle-sweep",
    "rate-limit-prune",
    "log-tail",
    "activity-sampler",
    "revocations",
    "relay",
    "analytics",
    "webhook-consumer",
    "webhook-wake",
    "webhook-sender",
    "projector:email_outbox",
];

#[tokio::test]
async fn metrics_show_each_background_worker_running_once_and_never_restarted() {
    // Its own process: the metrics registry is process-wide, and other tests' servers run the
    // same workers.
    let db = TestDatabase::create().await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("TEST_{unique}");
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let prefix = format!("test.{unique}");
    let server = ServerProcess::start(
        &db,
        &[],
        &[
            ("NATS_URL", &nats_url),
            ("NATS_STREAM", &stream),
            ("NATS_SUBJECT_PREFIX", &prefix),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let mut workers: Vec<String> = WORKERS.iter().map(|w| (*w).to_owned()).collect();
    for projector in projections::all_projectors() {
        workers.push(format!("projector:{}", projector.name()));
    }
    let running = |metrics: &str, worker: &str| {
        metric_value(
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
    drop(server);
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
            metric_value(&metrics, &restarts),
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
