use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{problem, TestApp};

/// Event counts by type, straight from the log: what analytics must agree with.
async fn log_counts(app: &TestApp) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT event_type, count(*) FROM events GROUP BY event_type",
    )
    .fetch_all(&app.state.pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

async fn summary(app: &TestApp, admin: &str) -> Value {
    app.get("/api/v1/analytics/summary", Some(admin))
        .await
        .json::<Value>()
        .await
        .unwrap()["data"]
        .clone()
}

fn by_type(summary: &Value) -> BTreeMap<String, i64> {
    summary["events_by_type"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
        .collect()
}

/// Waits until analytics has counted every event of the log.
async fn counted(app: &TestApp, admin: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current = summary(app, admin).await;
        if by_type(&current) == log_counts(app).await || Instant::now() > deadline {
            return current;
        }
        crate::helpers::poll_pause().await;
    }
}

#[tokio::test]
async fn analytics_counts_match_the_commands_issued_and_survive_a_full_redelivery() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let mut authors = Vec::new();
    for i in 0..3 {
        authors.push(app.register(&format!("counted-{i}@example.com")).await.1);
    }
    for token in &authors[..2] {
        app.create_post(
            token,
            json!({"title": "counted", "body": "b", "status": "published"}),
        )
        .await;
    }
    app.create_post(&authors[2], json!({"title": "draft", "body": "b"}))
        .await;

    let first = counted(&app, &admin).await;

    assert_eq!(
        by_type(&first),
        log_counts(&app).await,
        "every event counted"
    );
    assert_eq!(first["users_registered"], 4, "three sign-ups and the admin");
    assert_eq!(
        first["logins"], 4,
        "three sessions from sign-up, one admin login"
    );
    assert_eq!(first["posts_published"], 2);
    assert_eq!(first["active_users"], 4);

    // Make NATS deliver everything again: a new consumer of the same name starts from the top.
    let client = async_nats::connect(&app.state.config.nats_url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(&app.state.config.nats_stream).await.unwrap();
    stream.delete_consumer("chronicle-analytics").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut redelivered = false;
    while Instant::now() < deadline && !redelivered {
        if let Ok(mut consumer) = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>("chronicle-analytics")
            .await
        {
            let info = consumer.info().await.unwrap();
            redelivered = info.num_pending == 0
                && info.num_ack_pending == 0
                && info.ack_floor.stream_sequence > 0;
        }
        crate::helpers::poll_pause().await;
    }
    let second = summary(&app, &admin).await;

    assert!(
        redelivered,
        "the recreated consumer went through the whole stream again"
    );
    assert_eq!(by_type(&second), by_type(&first), "nothing counted twice");
    assert_eq!(second["active_users"], first["active_users"]);
}

#[tokio::test]
async fn the_timeseries_adds_up_to_the_summary_and_bad_parameters_are_400() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let (_, author, _) = app.register("series@example.com").await;
    for i in 0..3 {
        app.create_post(
            &author,
            json!({"title": format!("p{i}"), "body": "b", "status": "published"}),
        )
        .await;
    }
    let totals = counted(&app, &admin).await;

    let hourly: Value = app
        .get(
            "/api/v1/analytics/timeseries?metric=posts_published&interval=hour",
            Some(&admin),
        )
        .await
        .json()
        .await
        .unwrap();
    let daily: Value = app
        .get(
            "/api/v1/analytics/timeseries?metric=events&interval=day",
            Some(&admin),
        )
        .await
        .json()
        .await
        .unwrap();
    let bad_metric = app
        .get("/api/v1/analytics/timeseries?metric=nope", Some(&admin))
        .await;
    let bad_time = app
        .get("/api/v1/analytics/summary?from=yesterday", Some(&admin))
        .await;
    let not_admin = app.get("/api/v1/analytics/summary", Some(&author)).await;

    let sum = |series: &Value| {
        series["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(
        hourly["data"].as_array().unwrap().len(),
        25,
        "24 hours back, both ends included"
    );
    assert_eq!(sum(&hourly), 3);
    assert_eq!(sum(&daily), by_type(&totals).values().sum::<i64>());
    problem(
        bad_metric,
        reqwest::StatusCode::BAD_REQUEST,
        "MALFORMED_REQUEST",
    )
    .await;
    problem(
        bad_time,
        reqwest::StatusCode::BAD_REQUEST,
        "MALFORMED_REQUEST",
    )
    .await;
    problem(not_admin, reqwest::StatusCode::FORBIDDEN, "FORBIDDEN").await;
}
