//! What the read-side tests share: a server for many requests, list and walk helpers, positions
//! and a few small readers of answers.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::client::App;
use crate::helpers::TestApp;

/// Query parameters, in order.
pub type Params<'a> = Vec<(&'a str, &'a str)>;

/// A server whose rate limits stay out of the way of tests that make many requests.
pub async fn spawn_app() -> App {
    App::spawn_with(&[
        ("RATE_LIMIT_PER_MINUTE", "100000"),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1000"),
    ])
    .await
}

/// Registers a user with a chosen name; returns (user id, access token).
pub async fn register_as(app: &TestApp, email: &str, name: &str) -> (String, String) {
    let response = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": "correct horse battery", "name": name}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "registering {email}"
    );
    let body: Value = response.json().await.unwrap();
    (
        body["data"]["user"]["id"].as_str().unwrap().to_owned(),
        body["data"]["access_token"].as_str().unwrap().to_owned(),
    )
}

/// Signs in again; returns (access token, the whole response).
pub async fn login(app: &TestApp, email: &str, user_agent: &str) -> Response {
    app.request(Method::POST, "/api/v1/auth/login", None)
        .header("user-agent", user_agent)
        .json(&json!({"email": email, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
}

/// GET with query parameters (encoded by the client), any status.
pub async fn get_with(
    app: &TestApp,
    path: &str,
    params: &[(&str, &str)],
    token: Option<&str>,
) -> Response {
    app.request(Method::GET, path, token)
        .query(params)
        .send()
        .await
        .unwrap()
}

/// GET a list that must answer 200; returns the body.
pub async fn list(
    app: &TestApp,
    path: &str,
    params: &[(&str, &str)],
    token: Option<&str>,
) -> Value {
    let response = get_with(app, path, params, token).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "GET {path} {params:?}: {body}");
    body
}

pub fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {body}"))
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

pub fn id_of(item: &Value) -> String {
    item["id"].as_str().unwrap().to_owned()
}

/// Follows `next_cursor` from the first page to the last; returns every item in order.
pub async fn walk(
    app: &TestApp,
    path: &str,
    params: &[(&str, &str)],
    token: Option<&str>,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut query: Vec<(&str, &str)> = params.to_vec();
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let body = list(app, path, &query, token).await;
        items.extend(body["data"].as_array().unwrap().iter().cloned());
        let next = body["pagination"]["next_cursor"]
            .as_str()
            .map(str::to_owned);
        assert_eq!(
            body["pagination"]["has_more"],
            next.is_some(),
            "has_more agrees with next_cursor: {}",
            body["pagination"]
        );
        match next {
            Some(next) => cursor = Some(next),
            None => return items,
        }
    }
    panic!("the walk over {path} {params:?} never ended");
}

pub async fn publish(app: &TestApp, token: &str, id: &str) {
    let response = app
        .post(
            &format!("/api/v1/posts/{id}/publish"),
            Some(token),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// A position token as its ordered parts.
pub fn position(token: &str) -> (i64, i64) {
    let (tx, pos) = token
        .split_once('.')
        .unwrap_or_else(|| panic!("a position token: {token:?}"));
    (tx.parse().unwrap(), pos.parse().unwrap())
}

/// A command answer that waited for its read models: a position, no `X-Consistency`.
pub fn assert_fresh(response: &Response, what: &str) {
    assert!(
        response.status().is_success(),
        "{what}: {}",
        response.status()
    );
    assert_eq!(header(response, "x-consistency"), None, "{what}");
    assert!(
        header(response, "chronicle-position").is_some(),
        "{what} carries Chronicle-Position"
    );
}

/// The session id (`sid` claim) of an access token.
pub fn session_of(access_token: &str) -> String {
    let payload = access_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

pub fn keys(item: &Value) -> HashSet<String> {
    item.as_object().unwrap().keys().cloned().collect()
}

pub fn set(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
