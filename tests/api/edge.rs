use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{problem, TestApp};

async fn login_from(app: &TestApp, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app
        .request(Method::POST, "/api/v1/auth/login", None)
        .json(&json!({"email": "nobody@example.com", "password": "wrong password"}));
    if let Some(ip) = forwarded_for {
        request = request.header("x-forwarded-for", ip);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_eleventh_login_in_a_minute_from_one_ip_is_429_while_another_ip_gets_through() {
    // The per-account throttle would lock the one account these sign-ins try; this test is
    // about the per-IP budget alone.
    let app = TestApp::spawn_with(&[
        ("AUTH_RATE_LIMIT_PER_MINUTE", "10"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("LOGIN_FAILURES_PER_ACCOUNT", "100"),
    ])
    .await;

    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(login_from(&app, Some("203.0.113.7")).await.status());
    }
    let eleventh = login_from(&app, Some("203.0.113.7")).await;
    let other_client = login_from(&app, Some("198.51.100.9")).await;

    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    let retry_after: u64 = eleventh
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(eleventh.headers().get("ratelimit-remaining").unwrap(), "0");
    assert_eq!(eleventh.headers().get("x-ratelimit-limit").unwrap(), "10");
    problem(eleventh, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    assert_eq!(
        other_client.status(),
        StatusCode::UNAUTHORIZED,
        "another client is not limited"
    );
}

#[tokio::test]
async fn a_spoofed_x_forwarded_for_does_not_reset_the_limit() {
    let app = TestApp::spawn_with(&[("AUTH_RATE_LIMIT_PER_MINUTE", "10")]).await;

    for i in 0..10 {
        login_from(&app, Some(&format!("10.0.0.{i}"))).await;
    }
    let spoofed = login_from(&app, Some("10.9.9.9")).await;

    problem(spoofed, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
}

#[tokio::test]
async fn every_api_answer_reports_its_budget_and_signed_in_users_count_separately() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "5")]).await;
    let (_, token, _) = app.register("budget@example.com").await;

    let first = app.get("/api/v1/posts", Some(&token)).await;
    let second = app.get("/api/v1/posts", Some(&token)).await;
    let anonymous = app.get("/api/v1/posts", None).await;
    let health = app.get("/healthz", None).await;

    assert_eq!(first.headers().get("ratelimit-limit").unwrap(), "5");
    assert_eq!(first.headers().get("ratelimit-remaining").unwrap(), "4");
    assert_eq!(second.headers().get("x-ratelimit-remaining").unwrap(), "3");
    assert!(second.headers().get("ratelimit-reset").is_some());
    assert_eq!(
        anonymous.headers().get("ratelimit-remaining").unwrap(),
        "4",
        "the IP has its own budget"
    );
    assert!(
        health.headers().get("ratelimit-limit").is_none(),
        "only /api/v1 is limited"
    );
}

#[tokio::test]
async fn cors_preflight_is_204_for_an_allowed_origin_and_silent_for_others() {
    let app = TestApp::spawn_with(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com")]).await;
    let preflight = |origin: &'static str| {
        app.request(Method::OPTIONS, "/api/v1/posts", None)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, idempotency-key",
            )
            .send()
    };

    let allowed = preflight("https://app.example.com").await.unwrap();
    let denied = preflight("https://evil.example.com").await.unwrap();
    let simple = app
        .request(Method::GET, "/api/v1/posts", None)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();

    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    let h = allowed.headers();
    assert_eq!(
        h.get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    assert_eq!(h.get("access-control-max-age").unwrap(), "86400");
    let methods = h
        .get("access-control-allow-methods")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        assert!(methods.contains(method), "{methods}");
    }
    let allowed_headers = h
        .get("access-control-allow-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed_headers.contains("idempotency-key")
            && allowed_headers.contains("chronicle-min-position")
    );
    assert!(
        denied
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-allow")),
        "{:?}",
        denied.headers()
    );
    let exposed = simple
        .headers()
        .get("access-control-expose-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("chronicle-position") && exposed.contains("etag"));
}

#[tokio::test]
async fn a_retried_idempotent_post_returns_the_same_answer_and_appends_once() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("idem@example.com").await;
    let send = |key: &'static str, title: &'static str| {
        app.request(Method::POST, "/api/v1/posts", Some(&token))
            .header("idempotency-key", key)
            .json(&json!({"title": title, "body": "b"}))
            .send()
    };

    let first = send("key-1", "once").await.unwrap();
    let first_status = first.status();
    let first_location = first.headers().get("location").cloned();
    let first_body = first.text().await.unwrap();
    let retry = send("key-1", "once").await.unwrap();
    let other_request = send("key-1", "different").await.unwrap();

    assert_eq!(first_status, StatusCode::CREATED);
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(retry.headers().get("location").cloned(), first_location);
    assert_eq!(retry.text().await.unwrap(), first_body);
    problem(
        other_request,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'post.created'")
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
    assert_eq!(created, 1);
}

#[tokio::test]
async fn concurrent_duplicates_with_one_key_append_once_and_get_409_or_the_replay() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("race-idem@example.com").await;

    let responses = join_all((0..8).map(|_| {
        app.request(Method::POST, "/api/v1/posts", Some(&token))
            .header("idempotency-key", "racing")
            .json(&json!({"title": "race", "body": "b"}))
            .send()
    }))
    .await;

    let statuses: Vec<StatusCode> = responses.into_iter().map(|r| r.unwrap().status()).collect();
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::CREATED));
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'post.created'")
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
    assert_eq!(created, 1);
}

#[tokio::test]
async fn an_idempotency_key_is_per_principal_and_bad_keys_are_400() {
    let app = TestApp::spawn().await;
    let (_, alice, _) = app.register("alice-idem@example.com").await;
    let (_, bob, _) = app.register("bob-idem@example.com").await;
    let post = |token: &str, key: String| {
        app.request(Method::POST, "/api/v1/posts", Some(token))
            .header("idempotency-key", key)
            .json(&json!({"title": "t", "body": "b"}))
            .send()
    };

    let a = post(&alice, "shared".into()).await.unwrap();
    let b = post(&bob, "shared".into()).await.unwrap();
    let too_long = post(&alice, "k".repeat(256)).await.unwrap();

    assert_eq!(a.status(), StatusCode::CREATED);
    assert_eq!(b.status(), StatusCode::CREATED);
    assert!(b.headers().get("idempotent-replayed").is_none());
    problem(too_long, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
}

#[tokio::test]
async fn answers_are_gzipped_for_clients_that_accept_it() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("zip@example.com").await;
    for i in 0..5 {
        app.create_post(
            &token,
            json!({"title": format!("post {i}"), "body": "x".repeat(500), "status": "published"}),
        )
        .await;
    }

    let response = app
        .request(Method::GET, "/api/v1/posts", None)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();

    assert_eq!(response.headers().get("content-encoding").unwrap(), "gzip");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "a gzip stream");
}

fn counter(metrics: &str, route: &str, status: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count{"))
        .filter(|l| {
            l.contains(&format!("http_route=\"{route}\""))
                && l.contains(&format!("http_response_status_code=\"{status}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_show_projection_lag() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("metrics@example.com").await;
    let before = app.get("/metrics", None).await.text().await.unwrap();

    let post = app
        .create_post(
            &token,
            json!({"title": "m", "body": "b", "status": "published"}),
        )
        .await;
    app.get(
        &format!("/api/v1/posts/{}", post["id"].as_str().unwrap()),
        None,
    )
    .await;
    app.get(
        &format!("/api/v1/posts/{}", post["id"].as_str().unwrap()),
        None,
    )
    .await;
    let response = app.get("/metrics", None).await;
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let after = response.text().await.unwrap();

    assert!(content_type.starts_with("text/plain"));
    assert!(
        counter(&after, "/api/v1/posts/{id}", "200")
            >= counter(&before, "/api/v1/posts/{id}", "200") + 2.0
    );
    assert!(
        counter(&after, "/api/v1/posts", "201") >= counter(&before, "/api/v1/posts", "201") + 1.0
    );
    assert!(after.contains("http_server_request_duration_seconds_bucket"));
    assert!(after.contains("http_server_active_requests"));
    assert!(after.contains("chronicle_projection_lag_events{projector=\"posts\"}"));
    assert!(after.contains("chronicle_relay_lag_events{stream="));
}
