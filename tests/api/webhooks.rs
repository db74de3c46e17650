use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{problem, TestApp};

#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    timestamp: String,
    signature: String,
    /// The W3C trace context the sender passed on (empty when none).
    pub traceparent: String,
    pub body: Vec<u8>,
}

/// An HTTP receiver of the test's own: records every request and answers with the next
/// scripted status (200 once the script runs out).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(script: Vec<u16>) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script));
        let (r, s) = (received.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (r, s) = (r.clone(), s.clone());
                async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    r.lock().unwrap().push(Received {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        traceparent: header("traceparent"),
                        body: body.to_vec(),
                    });
                    let mut script = s.lock().unwrap();
                    let status = if script.is_empty() {
                        200
                    } else {
                        script.remove(0)
                    };
                    AxumStatus::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, count: usize, deadline: Duration) -> Vec<Received> {
        let started = Instant::now();
        while self.received().len() < count && started.elapsed() < deadline {
            crate::helpers::poll_pause().await;
        }
        self.received()
    }
}

/// Standard Webhooks verification, written here from the specification (not the server's code).
pub(crate) fn verifies(secret: &str, message: &Received) -> bool {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", message.id, message.timestamp).as_bytes());
    mac.update(&message.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    message.signature.split(' ').any(|s| s == expected)
}

pub async fn endpoint(app: &TestApp, admin: &str, url: &str, types: Value) -> Value {
    let response = app
        .post(
            "/api/v1/webhooks",
            Some(admin),
            json!({"url": url, "event_types": types}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["data"].clone()
}

#[tokio::test]
async fn matching_events_arrive_signed_with_the_standard_webhooks_headers() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint(&app, &admin, &receiver.url, json!(["post.*"])).await;
    let secret = hook["secret"].as_str().unwrap();

    let post = app
        .create_post(
            &admin,
            json!({"title": "hooked", "body": "b", "status": "published"}),
        )
        .await;
    let messages = receiver.wait_for(2, Duration::from_secs(20)).await;

    assert!(secret.starts_with("whsec_"));
    assert_eq!(STANDARD.decode(&secret[6..]).unwrap().len(), 32);
    assert_eq!(
        messages.len(),
        2,
        "post.created and post.published, not the user's events"
    );
    for message in &messages {
        assert!(verifies(secret, message), "signature verifies");
        let body: Value = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(
            body["metadata"]["event_id"],
            message.id.as_str(),
            "webhook-id is the event id"
        );
        assert_eq!(body["metadata"]["aggregate_id"], post["id"]);
        assert!(body["metadata"]["position"]
            .as_str()
            .unwrap()
            .parse::<projections::Position>()
            .is_ok());
    }
    // Deliveries run in parallel per endpoint, so arrival order is not part of the contract.
    let mut types: Vec<String> = messages
        .iter()
        .map(|m| {
            serde_json::from_slice::<Value>(&m.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["post.created", "post.published"]);
    let listed = app
        .get("/api/v1/webhooks", Some(&admin))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !listed.contains(secret),
        "the secret is shown only at creation"
    );
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_event_three_times_and_the_log_shows_it() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let receiver = Receiver::start(vec![500, 503]).await;
    let hook = endpoint(&app, &admin, &receiver.url, json!(["post.created"])).await;
    let id = hook["id"].as_str().unwrap();

    app.create_post(&admin, json!({"title": "retry me", "body": "b"}))
        .await;
    let messages = receiver.wait_for(3, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut deliveries = Value::Null;
    while Instant::now() < deadline {
        deliveries = app
            .get(
                &format!("/api/v1/webhooks/{id}/deliveries?status=succeeded"),
                Some(&admin),
            )
            .await
            .json()
            .await
            .unwrap();
        if deliveries["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        crate::helpers::poll_pause().await;
    }

    assert_eq!(messages.len(), 3);
    assert!(
        messages.iter().all(|m| m.id == messages[0].id),
        "the same webhook-id every time"
    );
    let delivery = &deliveries["data"][0];
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["status"], "succeeded");
    assert_eq!(delivery["last_status_code"], 200);
    assert!(delivery["delivered_at"].is_string());
}

#[tokio::test]
async fn after_a_rotation_both_secrets_sign_during_the_overlap() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    // The admin's own sign-up events must not reach this `*` endpoint as late arrivals.
    consumer_caught_up(&app, "chronicle-webhooks").await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint(&app, &admin, &receiver.url, json!(["*"])).await;
    let old = hook["secret"].as_str().unwrap().to_owned();
    let id = hook["id"].as_str().unwrap();

    let rotated: Value = app
        .post(
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            Some(&admin),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new = rotated["data"]["secret"].as_str().unwrap().to_owned();
    let ping = app
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            Some(&admin),
            json!({}),
        )
        .await;
    let messages = receiver.wait_for(1, Duration::from_secs(20)).await;

    assert_ne!(old, new);
    assert_eq!(ping.status(), StatusCode::ACCEPTED);
    let message = messages.last().unwrap();
    assert_eq!(message.signature.split(' ').count(), 2);
    assert!(verifies(&old, message) && verifies(&new, message));
    assert_eq!(
        serde_json::from_slice::<Value>(&message.body).unwrap()["type"],
        "webhook.test"
    );
}

#[tokio::test]
async fn private_targets_are_refused_by_default() {
    let app = TestApp::spawn_with(&[("WEBHOOK_ALLOW_PRIVATE_TARGETS", "false")]).await;
    let (_, admin) = app.admin().await;

    let loopback = app
        .post(
            "/api/v1/webhooks",
            Some(&admin),
            json!({"url": "http://127.0.0.1:9/x", "event_types": ["*"]}),
        )
        .await;
    let metadata = app
        .post(
            "/api/v1/webhooks",
            Some(&admin),
            json!({"url": "http://169.254.169.254/latest", "event_types": ["*"]}),
        )
        .await;
    let bad_type = app
        .post(
            "/api/v1/webhooks",
            Some(&admin),
            json!({"url": "https://example.com/x", "event_types": ["nope"]}),
        )
        .await;

    let body = problem(
        loopback,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "url");
    problem(
        metadata,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let body = problem(
        bad_type,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "event_types[0]");
}

#[tokio::test]
async fn a_delivery_scheduled_before_a_restart_is_still_delivered() {
    let mut app = TestApp::spawn_with(&[("WEBHOOK_RETRY_SCHEDULE", "1s,1s,1s,1s,1s")]).await;
    let (_, admin) = app.admin().await;
    let receiver = Receiver::start(vec![500]).await;
    endpoint(&app, &admin, &receiver.url, json!(["post.created"])).await;
    app.create_post(&admin, json!({"title": "survives", "body": "b"}))
        .await;
    receiver.wait_for(1, Duration::from_secs(20)).await;

    let database = app.take_database();
    let successor = app.another_instance().await;
    drop(app);
    let messages = receiver.wait_for(2, Duration::from_secs(20)).await;

    assert_eq!(
        messages.len(),
        2,
        "the retry went out from the restarted server"
    );
    assert_eq!(messages[0].id, messages[1].id);
    // The stream belonged to the first app, which gave its database away and so did not
    // delete it.
    let config = successor.state.config.clone();
    drop(successor);
    drop(database);
    crate::helpers::delete_stream(&config).await;
}

#[tokio::test]
async fn an_endpoint_that_answers_410_is_disabled() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let receiver = Receiver::start(vec![410]).await;
    let hook = endpoint(&app, &admin, &receiver.url, json!(["post.*"])).await;
    let id = hook["id"].as_str().unwrap();

    app.post(
        &format!("/api/v1/webhooks/{id}/test"),
        Some(&admin),
        json!({}),
    )
    .await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut current = Value::Null;
    while Instant::now() < deadline {
        current = app
            .get(&format!("/api/v1/webhooks/{id}"), Some(&admin))
            .await
            .json()
            .await
            .unwrap();
        if current["data"]["enabled"] == false {
            break;
        }
        crate::helpers::poll_pause().await;
    }

    assert_eq!(current["data"]["enabled"], false);
    let removed = app
        .send(
            Method::DELETE,
            &format!("/api/v1/webhooks/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
}

/// Waits until a durable consumer has acknowledged every message of the app's stream.
pub async fn consumer_caught_up(app: &TestApp, name: &str) {
    let client = async_nats::connect(&app.state.config.nats_url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let log: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
        if let Ok(mut stream) = js.get_stream(&app.state.config.nats_stream).await {
            let last = stream.info().await.unwrap().state.last_sequence;
            if let Ok(mut consumer) = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(name)
                .await
            {
                let info = consumer.info().await.unwrap();
                if last as i64 >= log && info.ack_floor.stream_sequence >= last {
                    return;
                }
            }
        }
        crate::helpers::poll_pause().await;
    }
    panic!("the {name} consumer did not catch up");
}

#[tokio::test]
async fn a_failed_delivery_can_be_retried_and_a_replay_covers_events_from_before_the_endpoint() {
    let app = TestApp::spawn_with(&[("WEBHOOK_RETRY_SCHEDULE", "50ms")]).await;
    let (_, admin) = app.admin().await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    app.create_post(&admin, json!({"title": "before the endpoint", "body": "b"}))
        .await;
    // Only once the webhook consumer has passed that event does it predate the endpoint;
    // otherwise it would be delivered live too and take one of the scripted failures.
    consumer_caught_up(&app, "chronicle-webhooks").await;
    let receiver = Receiver::start(vec![500, 500]).await;
    let hook = endpoint(&app, &admin, &receiver.url, json!(["post.created"])).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    app.create_post(&admin, json!({"title": "after", "body": "b"}))
        .await;
    receiver.wait_for(2, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failed = Value::Null;
    while Instant::now() < deadline {
        failed = app
            .get(
                &format!("/api/v1/webhooks/{id}/deliveries?status=failed"),
                Some(&admin),
            )
            .await
            .json()
            .await
            .unwrap();
        if failed["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        crate::helpers::poll_pause().await;
    }
    let delivery = failed["data"][0]["id"].as_str().unwrap().to_owned();

    let retried = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/{delivery}/retry"),
            Some(&admin),
            json!({}),
        )
        .await;
    let after_retry = receiver.wait_for(3, Duration::from_secs(20)).await;
    let replayed = app
        .post(
            &format!("/api/v1/webhooks/{id}/replay"),
            Some(&admin),
            json!({"since": since.to_rfc3339()}),
        )
        .await;
    let after_replay = receiver.wait_for(5, Duration::from_secs(20)).await;

    assert_eq!(
        failed["data"][0]["attempts"], 2,
        "two attempts on a one-retry schedule"
    );
    assert_eq!(failed["data"][0]["last_status_code"], 500);
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    assert_eq!(after_retry.len(), 3);
    assert_eq!(replayed.status(), StatusCode::ACCEPTED);
    let titles: Vec<String> = after_replay[3..]
        .iter()
        .map(|m| {
            serde_json::from_slice::<Value>(&m.body).unwrap()["data"]["title"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        titles.contains(&"before the endpoint".to_owned()),
        "replay reaches back before the endpoint: {titles:?}"
    );
    assert!(titles.contains(&"after".to_owned()));
}

#[tokio::test]
async fn a_replay_delivers_every_matching_event_across_several_pages() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    let count = 2 * chronicle::fanout::webhooks::replay::PAGE as usize + 30;
    let posts: Vec<_> = (0..count)
        .map(|i| {
            let (app, admin) = (&app, &admin);
            async move {
                app.create_post(admin, json!({"title": format!("paged {i}"), "body": "b"}))
                    .await
            }
        })
        .collect();
    // A few at a time: enough to seed quickly, not so many that the server is swamped.
    let mut posts = futures::stream::iter(posts).buffer_unordered(8);
    while posts.next().await.is_some() {}
    consumer_caught_up(&app, "chronicle-webhooks").await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint(&app, &admin, &receiver.url, json!(["post.created"])).await;
    let id = hook["id"].as_str().unwrap();

    let replayed = app
        .post(
            &format!("/api/v1/webhooks/{id}/replay"),
            Some(&admin),
            json!({"since": since.to_rfc3339()}),
        )
        .await;
    let received = receiver.wait_for(count, Duration::from_secs(60)).await;

    assert_eq!(replayed.status(), StatusCode::ACCEPTED);
    let expected: std::collections::BTreeSet<String> =
        sqlx::query_scalar("SELECT event_id::text FROM events WHERE event_type = 'post.created'")
            .fetch_all(&app.state.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let got: std::collections::BTreeSet<String> = received.iter().map(|m| m.id.clone()).collect();
    assert_eq!(expected.len(), count);
    assert_eq!(received.len(), count, "each event once");
    assert_eq!(got, expected);
}
