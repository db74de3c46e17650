use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::TestApp;

#[tokio::test]
async fn twenty_concurrent_registrations_of_one_email_give_exactly_one_201() {
    let app = TestApp::spawn().await;
    let body =
        json!({"email": "race@example.com", "password": "correct horse battery", "name": "Racer"});

    let responses = join_all((0..20).map(|i| {
        let mut body = body.clone();
        if i % 2 == 0 {
            body["email"] = json!("RACE@example.com");
        }
        app.post("/api/v1/auth/register", None, body)
    }))
    .await;

    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        19,
        "{statuses:?}"
    );
    let registered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'user.registered'")
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
    assert_eq!(registered, 1);
}

#[tokio::test]
async fn twenty_concurrent_updates_without_if_match_all_succeed_and_lose_nothing() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("busy@example.com").await;
    let post = app
        .create_post(&token, json!({"title": "start", "body": "b"}))
        .await;
    let path = format!("/api/v1/posts/{}", post["id"].as_str().unwrap());

    let responses = join_all(
        (0..20).map(|i| app.patch(&path, Some(&token), json!({"title": format!("title {i}")}))),
    )
    .await;

    assert!(
        responses.iter().all(|r| r.status() == StatusCode::OK),
        "{:?}",
        responses.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    let current: Value = app.get(&path, Some(&token)).await.json().await.unwrap();
    assert_eq!(current["data"]["version"], 21);
    let sequences: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(post["id"].as_str().unwrap())
            .fetch_all(&app.state.pool)
            .await
            .unwrap();
    assert_eq!(
        sequences,
        (1..=21).collect::<Vec<i64>>(),
        "versions are contiguous"
    );
}

#[tokio::test]
async fn twenty_concurrent_updates_with_one_if_match_let_one_win_and_append_nothing_else() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("careful@example.com").await;
    let post = app
        .create_post(&token, json!({"title": "start", "body": "b"}))
        .await;
    let id = post["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/posts/{id}");

    let responses = join_all((0..20).map(|i| {
        app.request(reqwest::Method::PATCH, &path, Some(&token))
            .header("if-match", "\"1\"")
            .json(&json!({"title": format!("title {i}")}))
            .send()
    }))
    .await;

    let statuses: Vec<StatusCode> = responses.into_iter().map(|r| r.unwrap().status()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
            .count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(app.count_events(&id).await, 2);
}
