//! Sessions and sign-in hardening (issue 12, findings 2, 12 and 14a): the refresh grace
//! window, the absolute session lifetime, per-account sign-in throttling and the session's IP.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{poll_pause, problem, TestApp};

const PASSWORD: &str = "correct horse battery";

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": token}),
    )
    .await
}

async fn pair(response: reqwest::Response) -> (String, String) {
    assert_eq!(response.status(), StatusCode::OK, "a refresh succeeds");
    let body: Value = response.json().await.unwrap();
    (
        body["data"]["access_token"].as_str().unwrap().to_owned(),
        body["data"]["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn compromised_sessions(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'session.compromised'")
        .fetch_one(&app.state.pool)
        .await
        .unwrap()
}

async fn my_sessions(app: &TestApp, access: &str) -> Vec<Value> {
    let response = app.get("/api/v1/me/sessions", Some(access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn timestamp(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

async fn login_from(app: &TestApp, ip: &str, email: &str, password: &str) -> reqwest::Response {
    app.request(Method::POST, "/api/v1/auth/login", None)
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Finding 2: the refresh grace window and the session's maximum age.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn two_tabs_refreshing_with_the_same_token_at_once_keep_their_session() {
    let app = TestApp::spawn().await;
    let (_, _, body) = app.register("two-tabs@example.com").await;
    let shared = body["data"]["refresh_token"].as_str().unwrap().to_owned();

    let (tab_a, tab_b) = tokio::join!(refresh(&app, &shared), refresh(&app, &shared));
    let (access_a, refresh_a) = pair(tab_a).await;
    let (access_b, refresh_b) = pair(tab_b).await;

    assert_ne!(refresh_a, refresh_b, "each tab gets its own pair");
    assert_eq!(claims(&access_a)["sid"], claims(&access_b)["sid"]);
    for access in [&access_a, &access_b] {
        assert_eq!(
            app.get("/api/v1/me", Some(access)).await.status(),
            StatusCode::OK
        );
    }
    // Whichever pair the tabs' shared storage kept, the session goes on.
    pair(refresh(&app, &refresh_b).await).await;
    assert_eq!(compromised_sessions(&app).await, 0);
    assert_eq!(my_sessions(&app, &access_a).await.len(), 1);
}

#[tokio::test]
async fn a_client_retrying_a_refresh_whose_answer_was_lost_gets_a_fresh_pair_for_the_same_session()
{
    let app = TestApp::spawn().await;
    let (_, first_access, body) = app.register("lost-answer@example.com").await;
    let first = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    // The answer to this one never reached the client.
    pair(refresh(&app, &first).await).await;

    let (access, newest) = pair(refresh(&app, &first).await).await;

    assert_eq!(claims(&access)["sid"], claims(&first_access)["sid"]);
    assert_eq!(
        app.get("/api/v1/me", Some(&access)).await.status(),
        StatusCode::OK
    );
    pair(refresh(&app, &newest).await).await;
    assert_eq!(compromised_sessions(&app).await, 0);
}

#[tokio::test]
async fn a_stolen_refresh_token_replayed_after_the_grace_window_still_revokes_the_session() {
    let app = TestApp::spawn_with(&[("REFRESH_REUSE_GRACE", "1s")]).await;
    let (_, _, body) = app.register("late-thief@example.com").await;
    let stolen = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    let (newest_access, newest_refresh) = pair(refresh(&app, &stolen).await).await;
    let rotated = Instant::now();

    // The scenario's clock: the thief comes back once the grace window has passed.
    tokio::time::sleep(Duration::from_millis(1_100).saturating_sub(rotated.elapsed())).await;
    let replay = refresh(&app, &stolen).await;

    problem(replay, StatusCode::UNAUTHORIZED, "TOKEN_REUSED").await;
    problem(
        refresh(&app, &newest_refresh).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(1);
    while app.get("/api/v1/me", Some(&newest_access)).await.status() != StatusCode::UNAUTHORIZED {
        assert!(
            Instant::now() < deadline,
            "the session's access token is refused within 1 s"
        );
        poll_pause().await;
    }
    assert_eq!(compromised_sessions(&app).await, 1);
}

#[tokio::test]
async fn a_session_ends_at_its_maximum_age_however_often_it_is_refreshed() {
    // Long enough for a slow machine to refresh a few times before the end.
    let app = TestApp::spawn_with(&[("SESSION_MAX_AGE", "4s")]).await;
    let (_, access, body) = app.register("max-age@example.com").await;
    let mut token = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    let session = my_sessions(&app, &access).await.remove(0);
    let created_at = timestamp(&session["created_at"]);
    let ends_at = created_at + chrono::Duration::seconds(4);

    assert_eq!(timestamp(&session["expires_at"]), ends_at);
    assert!(
        claims(&access)["exp"].as_i64().unwrap() <= ends_at.timestamp(),
        "the access token does not outlive the session"
    );
    assert!(body["data"]["expires_in"].as_i64().unwrap() <= 4);

    // Refresh as eagerly as a client could: the end does not move.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut refreshes = 0;
    let expired = loop {
        assert!(
            Instant::now() < deadline,
            "the session outlived its maximum age"
        );
        let response = refresh(&app, &token).await;
        if response.status() != StatusCode::OK {
            break response;
        }
        let (access, next) = pair(response).await;
        assert!(claims(&access)["exp"].as_i64().unwrap() <= ends_at.timestamp());
        token = next;
        refreshes += 1;
        poll_pause().await;
    };

    problem(expired, StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED").await;
    assert!(refreshes > 0, "refreshes before the end succeeded");
    assert!(
        Utc::now() >= ends_at,
        "ended no sooner than its maximum age"
    );
    assert_eq!(
        app.get("/api/v1/me", Some(&access)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let again = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "max-age@example.com", "password": PASSWORD}),
        )
        .await;
    let again: Value = again.json().await.unwrap();
    let fresh_access = again["data"]["access_token"].as_str().unwrap();
    let listed = my_sessions(&app, fresh_access).await;
    assert_eq!(listed.len(), 1, "the ended session is no longer listed");
    assert_eq!(listed[0]["current"], true);
}

// ---------------------------------------------------------------------------------------------
// Finding 12: per-account sign-in throttling.
// ---------------------------------------------------------------------------------------------

/// Ten wrong passwords for `email`, each from another address behind the trusted proxy.
async fn ten_failures_from_ten_ips(app: &TestApp, email: &str, first_octet: u8) {
    for i in 0..10u8 {
        let ip = format!("{first_octet}.0.113.{i}");
        // The case varies too: the account is the normalised email.
        let spelled = if i % 2 == 0 {
            email.to_uppercase()
        } else {
            email.to_owned()
        };
        let response = login_from(app, &ip, &spelled, "not the password").await;
        problem(response, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    }
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header")
}

#[tokio::test]
async fn ten_wrong_passwords_from_ten_ips_lock_the_account_even_for_the_right_password() {
    let app = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    app.register("victim@example.com").await;
    app.register("bystander@example.com").await;

    ten_failures_from_ten_ips(&app, "victim@example.com", 203).await;
    let locked = login_from(&app, "198.51.100.1", "victim@example.com", PASSWORD).await;
    let bystander = login_from(&app, "203.0.113.1", "bystander@example.com", PASSWORD).await;

    let wait = retry_after(&locked);
    assert!(
        (1..=900).contains(&wait),
        "Retry-After {wait} is within the window"
    );
    problem(locked, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    assert_eq!(
        bystander.status(),
        StatusCode::OK,
        "another account is unaffected"
    );
}

#[tokio::test]
async fn an_unknown_email_is_throttled_exactly_like_a_known_one() {
    let app = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    app.register("known@example.com").await;

    ten_failures_from_ten_ips(&app, "known@example.com", 203).await;
    ten_failures_from_ten_ips(&app, "nobody@example.com", 198).await;
    let known = login_from(&app, "192.0.2.1", "known@example.com", PASSWORD).await;
    let unknown = login_from(&app, "192.0.2.2", "nobody@example.com", PASSWORD).await;

    // Each window started with its account's first failure, so the waits differ by the
    // seconds between the two rounds; both run to the end of a 15-minute window.
    for response in [&known, &unknown] {
        let wait = retry_after(response);
        assert!((1..=900).contains(&wait), "Retry-After {wait}");
    }
    let known = problem(known, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    let unknown = problem(unknown, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    let without_digits = |v: &Value| {
        v.as_str()
            .unwrap()
            .replace(|c: char| c.is_ascii_digit(), "")
    };
    assert_eq!(known["title"], unknown["title"]);
    assert_eq!(
        without_digits(&known["detail"]),
        without_digits(&unknown["detail"])
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM login_throttle")
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "one row per account tried, known or not");
}

#[tokio::test]
async fn successful_sign_ins_do_not_count_as_failures() {
    let app = TestApp::spawn_with(&[("LOGIN_FAILURES_PER_ACCOUNT", "2")]).await;
    app.register("regular@example.com").await;

    for _ in 0..5 {
        let response = login_from(&app, "127.0.0.1", "regular@example.com", PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let wrong = login_from(&app, "127.0.0.1", "regular@example.com", "not it").await;
    let right = login_from(&app, "127.0.0.1", "regular@example.com", PASSWORD).await;

    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        right.status(),
        StatusCode::OK,
        "one failure is within a limit of 2"
    );
}

// ---------------------------------------------------------------------------------------------
// Finding 14a: the session's recorded IP.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_session_records_the_client_behind_a_trusted_proxy_not_the_proxy_or_a_spoofed_entry() {
    let app = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    app.register("proxied@example.com").await;

    let response = login_from(
        &app,
        "6.6.6.6, 198.51.100.7",
        "proxied@example.com",
        PASSWORD,
    )
    .await;
    let body: Value = response.json().await.unwrap();
    let access = body["data"]["access_token"].as_str().unwrap();
    let sessions = my_sessions(&app, access).await;
    let current = sessions.iter().find(|s| s["current"] == true).unwrap();

    assert_eq!(current["ip"], "198.51.100.7");
}

#[tokio::test]
async fn without_trusted_proxies_a_forwarded_for_header_cannot_choose_the_sessions_ip() {
    let app = TestApp::spawn().await;
    app.register("direct@example.com").await;

    let response = login_from(&app, "198.51.100.7", "direct@example.com", PASSWORD).await;
    let body: Value = response.json().await.unwrap();
    let access = body["data"]["access_token"].as_str().unwrap();
    let sessions = my_sessions(&app, access).await;
    let current = sessions.iter().find(|s| s["current"] == true).unwrap();

    assert_eq!(current["ip"], "127.0.0.1");
}

#[tokio::test]
async fn a_client_cannot_choose_its_ip_by_making_the_proxys_entry_unparseable() {
    let app = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    app.register("ported@example.com").await;

    // A proxy that appends `ip:port` must still name the client, not the claim on its left.
    let with_port = login_from(
        &app,
        "6.6.6.6, 198.51.100.7:5678",
        "ported@example.com",
        PASSWORD,
    )
    .await;
    let with_v6_port = login_from(
        &app,
        "6.6.6.6, [2001:db8::7]:443",
        "ported@example.com",
        PASSWORD,
    )
    .await;
    // An entry that names no address ends the walk at the proxy itself.
    let with_garbage = login_from(
        &app,
        "6.6.6.6, not-an-address",
        "ported@example.com",
        PASSWORD,
    )
    .await;

    let mut ips = Vec::new();
    for response in [with_port, with_v6_port, with_garbage] {
        let body: Value = response.json().await.unwrap();
        let access = body["data"]["access_token"].as_str().unwrap().to_owned();
        let sessions = my_sessions(&app, &access).await;
        let current = sessions.iter().find(|s| s["current"] == true).unwrap();
        ips.push(current["ip"].as_str().unwrap().to_owned());
    }
    assert_eq!(ips, ["198.51.100.7", "2001:db8::7", "127.0.0.1"]);
}
