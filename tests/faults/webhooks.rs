//! A webhook receiver that is down (its port closed) gets every event once it is back, within
//! the retry schedule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;
use crate::support::{eventually, free_port};

/// Retries after 0.5 s, 1 s, 1 s, then every 2 s: 9.5 s from the first failure to the last try.
const SCHEDULE: &str = "500ms,1s,1s,2s,2s,2s,2s";

/// Records the `webhook-id` of every request on a given port, answering 200.
struct Receiver {
    ids: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn listen(port: u16) -> Self {
        let ids = Arc::new(Mutex::new(Vec::new()));
        let seen = ids.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push(id);
                    AxumStatus::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the receiver's port is free again");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { ids, task }
    }

    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_receiver_refusing_connections_for_a_while_gets_every_event_once_it_is_back() {
    let app = TestApp::spawn_with(&[("WEBHOOK_RETRY_SCHEDULE", SCHEDULE)]).await;
    let (_, admin) = app.admin().await;
    // Nothing listens on this port yet: every attempt is refused.
    let port = free_port();
    let created = app
        .post(
            "/api/v1/webhooks",
            Some(&admin),
            json!({"url": format!("http://127.0.0.1:{port}/hook"), "event_types": ["post.*"]}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    for i in 0..5 {
        app.create_post(
            &admin,
            json!({"title": format!("hooked {i}"), "body": "b", "status": "published"}),
        )
        .await;
    }
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_id::text FROM events WHERE aggregate_type = 'post'")
            .fetch_all(&app.state.pool)
            .await
            .unwrap();
    let pool = &app.state.pool;
    let refused: Vec<String> = eventually(
        Duration::from_secs(20),
        "every delivery to fail twice against the closed port",
        || async move {
            let rows: Vec<(i32, Option<String>)> = sqlx::query_as(
                "SELECT attempts, last_error FROM webhook_deliveries WHERE status = 'pending'",
            )
            .fetch_all(pool)
            .await
            .ok()?;
            (rows.len() == 10 && rows.iter().all(|(attempts, _)| *attempts >= 2))
                .then(|| rows.into_iter().filter_map(|(_, e)| e).collect())
        },
    )
    .await;

    let back = Instant::now();
    let receiver = Receiver::listen(port).await;
    eventually(Duration::from_secs(15), "every event to arrive", || {
        let arrived = receiver.ids().len();
        async move { (arrived >= 10).then_some(()) }
    })
    .await;
    let arrived_after = back.elapsed();
    let outcomes: Vec<(String, i32)> = eventually(
        Duration::from_secs(10),
        "every delivery to be recorded",
        || async move {
            let rows: Vec<(String, i32)> =
                sqlx::query_as("SELECT status, attempts FROM webhook_deliveries")
                    .fetch_all(pool)
                    .await
                    .ok()?;
            rows.iter()
                .all(|(status, _)| status != "pending")
                .then_some(rows)
        },
    )
    .await;
    let ids = receiver.ids();

    assert_eq!(events.len(), 10, "five posts created and published");
    assert!(
        refused.iter().all(|e| e.contains("not reachable")),
        "the attempts failed because the port was closed: {refused:?}"
    );
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    for event in &events {
        assert_eq!(
            counts.get(event.as_str()),
            Some(&1),
            "event {event} arrived exactly once"
        );
    }
    assert_eq!(ids.len(), 10, "nothing else arrived: {ids:?}");
    assert!(
        outcomes
            .iter()
            .all(|(status, attempts)| status == "succeeded" && *attempts >= 3),
        "every delivery succeeded on a retry: {outcomes:?}"
    );
    // Each delivery had at most 2 s to wait for its next try once the receiver was back.
    assert!(
        arrived_after < Duration::from_secs(5),
        "the events took {arrived_after:?} to arrive after the receiver came back"
    );
}

/// A receiver that answers every request after `delay`, and records when each event arrived
/// and how long after the event happened (its `timestamp`).
struct TimedReceiver {
    arrivals: Arc<Mutex<Vec<(String, chrono::TimeDelta)>>>,
    started: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl TimedReceiver {
    async fn listen(delay: Duration) -> (Self, u16) {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Mutex::new(0));
        let (seen, begun) = (arrivals.clone(), started.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (seen, begun) = (seen.clone(), begun.clone());
                async move {
                    let arrived = chrono::Utc::now();
                    *begun.lock().unwrap() += 1;
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let happened = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|b| {
                            b["timestamp"]
                                .as_str()?
                                .parse::<chrono::DateTime<chrono::Utc>>()
                                .ok()
                        })
                        .unwrap_or(arrived);
                    // The endpoint under test is slow on purpose: this is its answer time.
                    tokio::time::sleep(delay).await;
                    seen.lock().unwrap().push((id, arrived - happened));
                    AxumStatus::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("a port for the receiver");
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (
            Self {
                arrivals,
                started,
                task,
            },
            port,
        )
    }

    fn arrivals(&self) -> Vec<(String, chrono::TimeDelta)> {
        self.arrivals.lock().unwrap().clone()
    }

    fn started(&self) -> usize {
        *self.started.lock().unwrap()
    }
}

impl Drop for TimedReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn an_endpoint_answering_after_fourteen_seconds_does_not_delay_a_fast_one() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let (slow, slow_port) = TimedReceiver::listen(Duration::from_secs(14)).await;
    let (fast, fast_port) = TimedReceiver::listen(Duration::ZERO).await;
    // The slow endpoint first, so its deliveries are the older ones in every queue.
    for port in [slow_port, fast_port] {
        let created = app
            .post(
                "/api/v1/webhooks",
                Some(&admin),
                json!({"url": format!("http://127.0.0.1:{port}/hook"), "event_types": ["post.*"]}),
            )
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    let started = Instant::now();
    for i in 0..10 {
        app.create_post(
            &admin,
            json!({"title": format!("hooked {i}"), "body": "b", "status": "published"}),
        )
        .await;
    }

    let within = Duration::from_secs(10).saturating_sub(started.elapsed());
    eventually(within, "the fast endpoint to get all 20 events", || {
        let arrived = fast.arrivals().len();
        async move { (arrived >= 20).then_some(()) }
    })
    .await;
    let all_fast = started.elapsed();
    let latencies: Vec<i64> = fast
        .arrivals()
        .iter()
        .map(|(_, after)| after.num_milliseconds())
        .collect();
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    let mut sorted = latencies.clone();
    sorted.sort_unstable();
    eprintln!(
        "webhooks: the fast endpoint had all 20 events {all_fast:?} after the first command; \
         event to arrival median {} ms, max {slowest} ms; the slow endpoint had {} requests open",
        sorted[sorted.len() / 2],
        slow.started()
    );

    let ids: std::collections::HashSet<String> =
        fast.arrivals().into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids.len(),
        20,
        "20 distinct events reached the fast endpoint"
    );
    assert!(
        slow.started() >= 1,
        "the slow endpoint was being called meanwhile"
    );
    assert!(
        slowest < 5000,
        "an event took {slowest} ms to reach the fast endpoint"
    );
}
