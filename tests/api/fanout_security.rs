//! Attacks through the fan-out: webhook targets inside the server's networks, and strangers
//! publishing on Chronicle's NATS subjects.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{poll_pause, problem, stream_messages, OwnNats, TestApp};
use crate::webhooks::{consumer_caught_up, endpoint, Receiver};

/// Hosts that are, or resolve to, no public address; each reaches inside in its own way.
const INSIDE: &[&str] = &[
    "http://[::127.0.0.1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:169.254.169.254]/latest",
    "http://[64:ff9b::7f00:1]/hook",
    "http://[64:ff9b::a9fe:a9fe]/latest",
    "http://[64:ff9b:1::1]/hook",
    "http://[2002:7f00:1::]/hook",
    "http://[2002:a9fe:a9fe::]/latest",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",
    "http://[fec0::1]/hook",
    "http://[fd00::1]/hook",
    "http://[fe80::1]/hook",
    "http://[ff02::1]/hook",
    "http://198.18.0.1/hook",
    "http://240.0.0.1/hook",
    "http://255.255.255.255/hook",
    "http://0.0.0.0/hook",
    "http://192.0.0.1/hook",
    "http://100.64.0.1/hook",
    "http://192.0.2.1/hook",
    "http://224.0.0.1/hook",
    "http://0x7f.1/hook",
    "http://2130706433/hook",
    "http://localhost/hook",
];

#[tokio::test]
async fn webhook_urls_that_reach_inside_through_special_or_embedded_addresses_are_refused_on_create_and_update(
) {
    let app = TestApp::spawn_with(&[("WEBHOOK_ALLOW_PRIVATE_TARGETS", "false")]).await;
    let (_, admin) = app.admin().await;
    // A public address literal: accepted without any lookup.
    let outside = endpoint(&app, &admin, "http://93.184.216.34/hook", json!(["*"])).await;
    let id = outside["id"].as_str().unwrap();

    for url in INSIDE {
        let created = app
            .post(
                "/api/v1/webhooks",
                Some(&admin),
                json!({"url": url, "event_types": ["*"]}),
            )
            .await;
        let updated = app
            .patch(
                &format!("/api/v1/webhooks/{id}"),
                Some(&admin),
                json!({ "url": url }),
            )
            .await;

        let body = problem(
            created,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "url", "{url}");
        let body = problem(
            updated,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "url", "{url}");
    }
    let kept: Value = app
        .get(&format!("/api/v1/webhooks/{id}"), Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(kept["data"]["url"], "http://93.184.216.34/hook");
}

#[tokio::test]
async fn a_delivery_to_a_target_that_now_lies_inside_is_not_attempted_and_fails_naming_the_reason()
{
    let app = TestApp::spawn_with(&[("WEBHOOK_ALLOW_PRIVATE_TARGETS", "false")]).await;
    let (_, admin) = app.admin().await;
    let receiver = Receiver::start(vec![]).await;
    let port = receiver.url.rsplit(':').next().unwrap().to_owned();
    // Saved while public; then the name (or the stored URL) points inside, as DNS rebinding
    // does between the check on save and the delivery.
    let inside = [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
        format!("http://[::127.0.0.1]:{port}"),
    ];
    let mut hooks = Vec::new();
    for url in &inside {
        let hook = endpoint(&app, &admin, "http://93.184.216.34/hook", json!(["*"])).await;
        let id = hook["id"].as_str().unwrap().to_owned();
        sqlx::query("UPDATE webhook_endpoints SET url = $1 WHERE id = $2::uuid")
            .bind(url)
            .bind(&id)
            .execute(&app.state.pool)
            .await
            .unwrap();
        let pinged = app
            .post(
                &format!("/api/v1/webhooks/{id}/test"),
                Some(&admin),
                json!({}),
            )
            .await;
        assert_eq!(pinged.status(), StatusCode::ACCEPTED);
        hooks.push(id);
    }

    for (id, url) in hooks.iter().zip(&inside) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let failed = loop {
            let page: Value = app
                .get(
                    &format!("/api/v1/webhooks/{id}/deliveries?status=failed"),
                    Some(&admin),
                )
                .await
                .json()
                .await
                .unwrap();
            if let Some(delivery) = page["data"].as_array().and_then(|d| d.first()) {
                break delivery.clone();
            }
            assert!(Instant::now() < deadline, "{url}: no failed delivery");
            poll_pause().await;
        };
        let error = failed["last_error"].as_str().unwrap_or_default();
        assert_eq!(failed["attempts"], 1, "{url}: not retried");
        assert!(error.contains("not a public address"), "{url}: {error}");
    }
    assert!(
        receiver.received().is_empty(),
        "nothing reached the receiver inside"
    );
}

async fn summary(app: &TestApp, admin: &str) -> BTreeMap<String, i64> {
    let body: Value = app
        .get("/api/v1/analytics/summary", Some(admin))
        .await
        .json()
        .await
        .unwrap();
    body["data"]["events_by_type"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
        .collect()
}

fn types(receiver: &Receiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|m| {
            serde_json::from_slice::<Value>(&m.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn cloud_events_forged_on_the_event_subjects_are_neither_delivered_nor_counted() {
    let app = TestApp::spawn().await;
    let (admin_id, admin) = app.admin().await;
    // The admin's own events are behind the consumer before the endpoint exists.
    consumer_caught_up(&app, "chronicle-webhooks").await;
    let receiver = Receiver::start(vec![]).await;
    endpoint(&app, &admin, &receiver.url, json!(["*"])).await;
    let (registered_id, registered_at): (uuid::Uuid, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT event_id, recorded_at FROM events WHERE event_type = 'user.registered'",
        )
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    let prefix = &app.state.config.nats_subject_prefix;
    let forged = |id: String, kind: &str, data: Value| {
        json!({
            "specversion": "1.0", "id": id, "source": "/chronicle", "type": kind,
            "subject": format!("user/{admin_id}"), "time": registered_at,
            "datacontenttype": "application/json", "data": data, "position": "1.1",
            "aggregateid": admin_id, "aggregateversion": "9", "correlationid": "", "actorid": "",
        })
    };
    let strangers = [
        // An event that never happened.
        forged(
            uuid::Uuid::now_v7().to_string(),
            "user.deactivated",
            json!({}),
        ),
        // A logged event's id on another type.
        forged(registered_id.to_string(), "user.deactivated", json!({})),
        // A logged event's id and type with other data.
        forged(
            registered_id.to_string(),
            "user.registered",
            json!({"email": "mallory@example.com"}),
        ),
    ];
    let client = async_nats::connect(app.state.config.nats_url.as_str())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    for message in &strangers {
        let kind = message["type"].as_str().unwrap();
        js.publish(
            format!("{prefix}.{kind}"),
            serde_json::to_vec(message).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .expect("the stream stored the forged message");
    }

    // A real event after them: once it is delivered and counted, the forgeries were handled.
    app.create_post(&admin, json!({"title": "real", "body": "b"}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let counted = loop {
        let counted = summary(&app, &admin).await;
        if types(&receiver).contains(&"post.created".to_owned())
            && counted.get("post.created") == Some(&1)
        {
            break counted;
        }
        assert!(
            Instant::now() < deadline,
            "the real event was not delivered and counted"
        );
        poll_pause().await;
    };

    assert_eq!(
        types(&receiver),
        ["post.created"],
        "no forgery was delivered"
    );
    assert_eq!(counted.get("user.deactivated"), None, "no forgery counted");
    assert_eq!(counted.get("user.registered"), Some(&1));
}

#[tokio::test]
async fn an_exact_copy_of_an_old_message_published_again_sends_no_history_to_a_newer_endpoint() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    consumer_caught_up(&app, "chronicle-webhooks").await;
    let old = stream_messages(&app.state.config.nats_url, &app.state.config.nats_stream)
        .await
        .into_iter()
        .find(|m| m["type"] == "user.registered")
        .expect("the relay published the admin's registration");
    let receiver = Receiver::start(vec![]).await;
    endpoint(&app, &admin, &receiver.url, json!(["*"])).await;

    // The same bytes the relay sent, under a new message id so the stream keeps them.
    let client = async_nats::connect(app.state.config.nats_url.as_str())
        .await
        .unwrap();
    let prefix = &app.state.config.nats_subject_prefix;
    async_nats::jetstream::new(client)
        .publish(
            format!("{prefix}.user.registered"),
            serde_json::to_vec(&old).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .expect("the stream stored the copy");
    app.create_post(&admin, json!({"title": "real", "body": "b"}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !types(&receiver).contains(&"post.created".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "the real event was not delivered"
        );
        poll_pause().await;
    }

    assert_eq!(types(&receiver), ["post.created"], "no history was sent");
}

#[tokio::test]
async fn a_stranger_publishing_a_far_future_position_cannot_make_the_relay_skip_events() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let (url, stream) = (&app.state.config.nats_url, &app.state.config.nats_stream);
    let deadline = Instant::now() + Duration::from_secs(20);
    while stream_messages(url, stream).await.is_empty() {
        assert!(Instant::now() < deadline, "the relay published nothing");
        poll_pause().await;
    }
    let prefix = &app.state.config.nats_subject_prefix;
    let forged = json!({
        "specversion": "1.0", "id": uuid::Uuid::now_v7().to_string(), "source": "/chronicle",
        "type": "post.created", "subject": "post/x", "time": chrono::Utc::now(),
        "datacontenttype": "application/json", "data": {}, "position": "9999999999.1",
        "aggregateid": "x", "aggregateversion": "1", "correlationid": "",
    });
    let client = async_nats::connect(url.as_str()).await.unwrap();
    async_nats::jetstream::new(client)
        .publish(
            format!("{prefix}.post.created"),
            serde_json::to_vec(&forged).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .expect("the stream stored the forgery");

    // The forgery throws off the relay's expected sequence, so it anchors on the stream again.
    let post = app
        .create_post(&admin, json!({"title": "after the forgery", "body": "b"}))
        .await;
    let id = post["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let messages = stream_messages(url, stream).await;
        if messages.iter().any(|m| m["aggregateid"] == id.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay skipped the post published after the forgery"
        );
        poll_pause().await;
    }
}

#[tokio::test]
async fn the_fan_out_signs_in_to_a_nats_that_requires_a_user_and_password_from_nats_url() {
    let nats = OwnNats::start_with(&["--user", "chronicle", "--pass", "p@ss word"]);
    let url = format!("nats://chronicle:p%40ss%20word@127.0.0.1:{}", nats.port());
    let app = TestApp::spawn_with(&[("NATS_URL", url.as_str())]).await;
    let (_, admin) = app.admin().await;
    let receiver = Receiver::start(vec![]).await;
    endpoint(&app, &admin, &receiver.url, json!(["post.created"])).await;

    let anonymous = tokio::time::timeout(
        Duration::from_secs(5),
        async_nats::ConnectOptions::new().connect(nats.url()),
    )
    .await;
    let post = app
        .create_post(&admin, json!({"title": "authenticated", "body": "b"}))
        .await;
    let delivered = receiver.wait_for(1, Duration::from_secs(30)).await;
    let client =
        async_nats::ConnectOptions::with_user_and_password("chronicle".into(), "p@ss word".into())
            .connect(nats.url())
            .await
            .unwrap();
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(&app.state.config.nats_stream)
        .await
        .unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut relayed = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        relayed.push(serde_json::from_slice::<Value>(&message.payload).unwrap());
    }

    assert!(
        !matches!(anonymous, Ok(Ok(_))),
        "the server requires credentials"
    );
    assert!(relayed
        .iter()
        .any(|m| m["type"] == "post.created" && m["aggregateid"] == post["id"]));
    assert_eq!(delivered.len(), 1, "the webhook consumer signed in too");
}

#[tokio::test]
async fn the_relay_signs_in_to_a_nats_that_requires_a_token_from_nats_url() {
    let nats = OwnNats::start_with(&["--auth", "t0ken"]);
    let url = format!("nats://t0ken@127.0.0.1:{}", nats.port());
    let app = TestApp::spawn_with(&[("NATS_URL", url.as_str())]).await;
    let (admin_id, _) = app.admin().await;

    let client = async_nats::ConnectOptions::with_token("t0ken".into())
        .connect(nats.url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    let relayed = loop {
        if let Ok(mut stream) = js.get_stream(&app.state.config.nats_stream).await {
            if stream.info().await.unwrap().state.messages > 0 {
                let first = stream.get_raw_message(1).await.unwrap();
                break serde_json::from_slice::<Value>(&first.payload).unwrap();
            }
        }
        assert!(Instant::now() < deadline, "nothing was relayed");
        poll_pause().await;
    };

    assert_eq!(relayed["type"], "user.registered");
    assert_eq!(relayed["aggregateid"], admin_id.as_str());
}
