//! Made-up API keys buy nothing, and a key never turns on its creator's account (issue 12,
//! findings 3 and 4).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{problem, TestApp, ADMIN_PASSWORD};
use crate::security_idempotency::api_key;

#[tokio::test]
async fn made_up_api_keys_buy_no_rate_limit_budget_of_their_own() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "5")]).await;

    let mut statuses = Vec::new();
    for _ in 0..8 {
        let made_up = format!("sk_live_{}", uuid::Uuid::new_v4().simple());
        let response = app
            .request(Method::GET, "/api/v1/posts", None)
            .header("x-api-key", made_up)
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    let anonymous = app.get("/api/v1/posts", None).await;

    assert_eq!(&statuses[..5], &[StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(
        &statuses[5..],
        &[StatusCode::TOO_MANY_REQUESTS; 3],
        "{statuses:?}"
    );
    assert_eq!(
        anonymous.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the IP's budget is spent"
    );
}

#[tokio::test]
async fn a_made_up_api_key_with_an_idempotency_key_is_401_and_leaves_no_record() {
    let app = TestApp::spawn().await;

    let response = app
        .request(Method::POST, "/api/v1/posts", None)
        .header("x-api-key", "sk_live_made-up")
        .header("idempotency-key", "i1")
        .json(&json!({"title": "t", "body": "b"}))
        .send()
        .await
        .unwrap();

    problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(records, 0);
}

/// An admin, a key that acts as them, and their session's id.
async fn admin_and_key(app: &TestApp) -> (String, String, String) {
    let (admin_id, admin) = app.admin().await;
    let (_, key) = api_key(app, &admin).await;
    // The session's id is the token's `sid` (the sessions read model may not list it yet).
    let payload = admin.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let session = claims["sid"].as_str().unwrap().to_owned();
    (admin_id, key, session)
}

async fn by_key(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Value,
) -> reqwest::Response {
    app.request(method, path, None)
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_api_key_cannot_deactivate_its_creator_but_still_manages_other_users() {
    let app = TestApp::spawn().await;
    let (admin_id, key, _) = admin_and_key(&app).await;
    let (other_id, _, _) = app.register("other@example.com").await;

    let creator = by_key(
        &app,
        Method::DELETE,
        &format!("/api/v1/users/{admin_id}"),
        &key,
        json!({}),
    )
    .await;
    let other = by_key(
        &app,
        Method::DELETE,
        &format!("/api/v1/users/{other_id}"),
        &key,
        json!({}),
    )
    .await;

    problem(creator, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(other.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_api_key_cannot_deactivate_or_demote_its_creator_through_patch() {
    let app = TestApp::spawn().await;
    let (admin_id, key, _) = admin_and_key(&app).await;
    let path = format!("/api/v1/users/{admin_id}");

    let deactivate = by_key(
        &app,
        Method::PATCH,
        &path,
        &key,
        json!({"status": "deactivated"}),
    )
    .await;
    let demote = by_key(&app, Method::PATCH, &path, &key, json!({"role": "user"})).await;
    let rename = by_key(
        &app,
        Method::PATCH,
        &path,
        &key,
        json!({"name": "Renamed by a key"}),
    )
    .await;

    problem(deactivate, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    problem(demote, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(
        rename.status(),
        StatusCode::OK,
        "a profile edit is not account management"
    );
    let creator: Value = app
        .request(Method::GET, &path, None)
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(creator["data"]["status"], "active");
    assert_eq!(creator["data"]["role"], "admin");
}

#[tokio::test]
async fn an_api_key_cannot_change_its_creators_password() {
    let app = TestApp::spawn().await;
    let (admin_id, key, _) = admin_and_key(&app).await;
    let change = json!({"current_password": ADMIN_PASSWORD, "new_password": "taken over by a key"});

    let response = by_key(
        &app,
        Method::POST,
        &format!("/api/v1/users/{admin_id}/password"),
        &key,
        change,
    )
    .await;

    problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn an_api_key_cannot_sign_its_creator_out() {
    let app = TestApp::spawn().await;
    let (_, key, _) = admin_and_key(&app).await;

    let logout = by_key(&app, Method::POST, "/api/v1/auth/logout", &key, json!({})).await;
    let logout_all = by_key(
        &app,
        Method::POST,
        "/api/v1/auth/logout-all",
        &key,
        json!({}),
    )
    .await;

    problem(logout, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    problem(logout_all, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn an_api_key_cannot_read_or_revoke_its_creators_sessions() {
    let app = TestApp::spawn().await;
    let (_, key, session) = admin_and_key(&app).await;

    let list = app
        .request(Method::GET, "/api/v1/me/sessions", None)
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    let revoke = app
        .request(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{session}"),
            None,
        )
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();

    problem(list, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    problem(revoke, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}
