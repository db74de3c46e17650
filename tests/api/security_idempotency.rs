//! Attacks on stored idempotent answers and on secrets at rest (issue 12, finding 1).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use chronicle::startup::{Application, BuildOptions};

use crate::helpers::{problem, test_config, TestApp, ADMIN_PASSWORD};
use crate::webhooks::{verifies, Receiver};

/// A POST with an `Idempotency-Key`, by bearer token (or API key) or anonymously.
async fn post_once(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    key: &str,
    body: Value,
) -> reqwest::Response {
    app.request(Method::POST, path, token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn data(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    response.json::<Value>().await.unwrap()["data"].clone()
}

pub(crate) async fn api_key(app: &TestApp, admin: &str) -> (String, String) {
    let created = data(
        app.post("/api/v1/api-keys", Some(admin), json!({"name": "svc"}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

fn hook(url: &str) -> Value {
    json!({"url": url, "event_types": ["post.*"]})
}

#[tokio::test]
async fn a_logged_out_admin_replaying_post_api_keys_gets_401_not_the_key() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let first = post_once(
        &app,
        "/api/v1/api-keys",
        Some(&admin),
        "k1",
        json!({"name": "ci"}),
    )
    .await;
    let key = data(first, StatusCode::CREATED).await["key"].clone();
    let logout = app
        .post("/api/v1/auth/logout", Some(&admin), json!({}))
        .await;

    let replay = post_once(
        &app,
        "/api/v1/api-keys",
        Some(&admin),
        "k1",
        json!({"name": "ci"}),
    )
    .await;

    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(key.as_str().unwrap().starts_with("sk_live_"));
    let body = problem(replay, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert!(!body.to_string().contains("sk_live_"));
}

#[tokio::test]
async fn a_revoked_api_key_replaying_its_own_request_gets_401_not_the_stored_secret() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let (key_id, key) = api_key(&app, &admin).await;
    let first = post_once(
        &app,
        "/api/v1/webhooks",
        Some(&key),
        "w1",
        hook("http://127.0.0.1:9/h"),
    )
    .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let path = format!("/api/v1/api-keys/{key_id}");
    let revoked = app.send(Method::DELETE, &path, Some(&admin), None).await;

    let replay = post_once(
        &app,
        "/api/v1/webhooks",
        Some(&key),
        "w1",
        hook("http://127.0.0.1:9/h"),
    )
    .await;

    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    problem(replay, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn a_deactivated_user_replaying_a_stored_answer_gets_401() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let (user_id, token, _) = app.register("gone@example.com").await;
    let body = json!({"title": "t", "body": "b"});
    let first = post_once(&app, "/api/v1/posts", Some(&token), "p1", body.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let path = format!("/api/v1/users/{user_id}");
    let deactivated = app.send(Method::DELETE, &path, Some(&admin), None).await;

    let replay = post_once(&app, "/api/v1/posts", Some(&token), "p1", body).await;

    assert_eq!(deactivated.status(), StatusCode::NO_CONTENT);
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert!(replay.headers().get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn a_demoted_admin_replaying_post_api_keys_gets_403_not_the_key() {
    let app = TestApp::spawn().await;
    let (_, root) = app.admin().await;
    let (demoted_id, demoted) = app.admin().await;
    let first = post_once(
        &app,
        "/api/v1/api-keys",
        Some(&demoted),
        "k1",
        json!({"name": "x"}),
    )
    .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let path = format!("/api/v1/users/{demoted_id}");
    let demotion = app.patch(&path, Some(&root), json!({"role": "user"})).await;
    // The demotion reaches the instance's role cache from the log: wait until a fresh admin
    // request is refused, as the replay must then be too.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.get("/api/v1/users", Some(&demoted)).await.status() != StatusCode::FORBIDDEN {
        assert!(
            std::time::Instant::now() < deadline,
            "the demotion never took"
        );
        crate::helpers::poll_pause().await;
    }

    let replay = post_once(
        &app,
        "/api/v1/api-keys",
        Some(&demoted),
        "k1",
        json!({"name": "x"}),
    )
    .await;

    assert_eq!(demotion.status(), StatusCode::OK);
    problem(replay, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn a_rotated_refresh_token_replayed_with_the_same_idempotency_key_is_token_reused_not_live_tokens(
) {
    // No grace window: this is about replays, not two tabs refreshing at once.
    let app = TestApp::spawn_with(&[("REFRESH_REUSE_GRACE", "0s")]).await;
    let (_, _, registered) = app.register("rotate@example.com").await;
    let old = registered["data"]["refresh_token"].clone();
    let rotated = post_once(
        &app,
        "/api/v1/auth/refresh",
        None,
        "r1",
        json!({"refresh_token": old}),
    )
    .await;
    let rotated = data(rotated, StatusCode::OK).await;

    let replay = post_once(
        &app,
        "/api/v1/auth/refresh",
        None,
        "r1",
        json!({"refresh_token": old}),
    )
    .await;
    let replayed = replay.headers().get("idempotent-replayed").cloned();
    let body = problem(replay, StatusCode::UNAUTHORIZED, "TOKEN_REUSED").await;
    let newest = json!({"refresh_token": rotated["refresh_token"]});
    let after = app.post("/api/v1/auth/refresh", None, newest).await;

    assert!(replayed.is_none());
    assert!(!body.to_string().contains("refresh_token\":\""));
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "the session was revoked"
    );
}

#[tokio::test]
async fn sign_ins_with_one_idempotency_key_are_never_replayed_or_stored() {
    let app = TestApp::spawn().await;
    let (_, _, _) = app.register("twice@example.com").await;
    let login = json!({"email": "twice@example.com", "password": "correct horse battery"});

    let first = post_once(&app, "/api/v1/auth/login", None, "l1", login.clone()).await;
    let second = post_once(&app, "/api/v1/auth/login", None, "l1", login).await;

    assert!(second.headers().get("idempotent-replayed").is_none());
    let (first, second) = (
        data(first, StatusCode::OK).await,
        data(second, StatusCode::OK).await,
    );
    assert_ne!(first["refresh_token"], second["refresh_token"]);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

/// Every `eyJ…\.eyJ` run: the start of a JWT's header and payload (both base64url JSON objects).
fn jwt_shaped(text: &str) -> bool {
    text.match_indices("eyJ").any(|(at, _)| {
        let rest = &text[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        rest[end..].starts_with(".eyJ")
    })
}

#[tokio::test]
async fn a_database_dump_holds_no_api_key_webhook_secret_jwt_or_refresh_token() {
    let app = TestApp::spawn().await;
    app.admin_with_email("dump-admin@example.com").await;
    let mut credentials: Vec<String> = Vec::new();
    let mut keep = |value: &Value| credentials.push(value.as_str().unwrap().to_owned());
    let admin_login = json!({"email": "dump-admin@example.com", "password": ADMIN_PASSWORD});
    let signed_in = post_once(&app, "/api/v1/auth/login", None, "a", admin_login).await;
    let signed_in = data(signed_in, StatusCode::OK).await;
    let admin = signed_in["access_token"].as_str().unwrap().to_owned();
    keep(&signed_in["access_token"]);
    keep(&signed_in["refresh_token"]);
    let user =
        json!({"email": "dump@example.com", "password": "correct horse battery", "name": "D"});
    let registered = data(
        post_once(&app, "/api/v1/auth/register", None, "b", user).await,
        StatusCode::CREATED,
    )
    .await;
    keep(&registered["access_token"]);
    keep(&registered["refresh_token"]);
    let refresh = json!({"refresh_token": registered["refresh_token"]});
    let refreshed = data(
        post_once(&app, "/api/v1/auth/refresh", None, "c", refresh).await,
        StatusCode::OK,
    )
    .await;
    keep(&refreshed["access_token"]);
    keep(&refreshed["refresh_token"]);
    let key = post_once(
        &app,
        "/api/v1/api-keys",
        Some(&admin),
        "d",
        json!({"name": "k"}),
    )
    .await;
    let key = data(key, StatusCode::CREATED).await;
    keep(&key["key"]);
    let by_key = key["key"].as_str().unwrap().to_owned();
    let created = post_once(
        &app,
        "/api/v1/webhooks",
        Some(&by_key),
        "e",
        hook("http://127.0.0.1:9/h"),
    )
    .await;
    let created = data(created, StatusCode::CREATED).await;
    keep(&created["secret"]);
    let rotate = format!(
        "/api/v1/webhooks/{}/rotate-secret",
        created["id"].as_str().unwrap()
    );
    let rotated = data(
        post_once(&app, &rotate, Some(&admin), "f", json!({})).await,
        StatusCode::OK,
    )
    .await;
    keep(&rotated["secret"]);

    let database_url = &app.state.config.database_url;
    let output = std::process::Command::new("pg_dump")
        // libpq knows none of sqlx's URL parameters.
        .args([
            "--data-only",
            "--dbname",
            database_url.split('?').next().unwrap(),
        ])
        .output()
        .expect("pg_dump runs");
    let dump = String::from_utf8_lossy(&output.stdout);

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        dump.contains(created["id"].as_str().unwrap()),
        "the dump holds the endpoint"
    );
    for marker in ["sk_live_", "whsec_"] {
        assert!(!dump.contains(marker), "the dump holds {marker}");
    }
    assert!(!jwt_shaped(&dump), "the dump holds a JWT");
    for credential in &credentials {
        assert!(
            !dump.contains(credential.as_str()),
            "the dump holds {credential}"
        );
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE state = 'done'")
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
    assert_eq!(
        stored, 3,
        "the key and webhook answers are kept (sealed) for replays"
    );
}

#[tokio::test]
async fn a_stored_answer_still_replays_to_its_caller_with_the_same_secret() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let body = hook("http://127.0.0.1:9/h");

    let first = data(
        post_once(&app, "/api/v1/webhooks", Some(&admin), "w", body.clone()).await,
        StatusCode::CREATED,
    )
    .await;
    let replay = post_once(&app, "/api/v1/webhooks", Some(&admin), "w", body).await;

    assert_eq!(replay.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(data(replay, StatusCode::CREATED).await, first);
}

#[tokio::test]
async fn webhook_secrets_left_in_plaintext_are_sealed_at_start_and_still_sign() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let receiver = Receiver::start(vec![]).await;
    let created = data(
        app.post("/api/v1/webhooks", Some(&admin), hook(&receiver.url))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    // A row as an older version wrote it.
    let legacy = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    sqlx::query("UPDATE webhook_endpoints SET secret = $1 WHERE id = $2::uuid")
        .bind(&legacy)
        .bind(&id)
        .execute(&app.state.pool)
        .await
        .unwrap();

    let restarted = app.another_instance().await;
    let stored: String =
        sqlx::query_scalar("SELECT secret FROM webhook_endpoints WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
    let ping = restarted
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            Some(&admin),
            json!({}),
        )
        .await;
    let received = receiver.wait_for(1, Duration::from_secs(20)).await;

    assert!(
        stored.starts_with("sealed:v1:") && !stored.contains(&legacy[6..]),
        "{stored}"
    );
    assert_eq!(ping.status(), StatusCode::ACCEPTED);
    assert!(!received.is_empty(), "the ping arrived");
    assert!(
        verifies(&legacy, &received[0]),
        "signed with the old secret"
    );
}

#[tokio::test]
async fn a_changed_secrets_key_with_the_previous_one_given_reseals_webhook_secrets_that_still_sign()
{
    const OLD: &str = "the-secrets-key-before-the-change-0123456789";
    const NEW: &str = "the-secrets-key-after-the-change-9876543210";
    let mut first = TestApp::spawn_with(&[("SECRETS_KEY", OLD)]).await;
    let _database = first.take_database();
    let (_, admin) = first.admin().await;
    let receiver = Receiver::start(vec![]).await;
    let created = data(
        first
            .post("/api/v1/webhooks", Some(&admin), hook(&receiver.url))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let database_url = first.state.config.database_url.clone();
    let api_only = BuildOptions {
        migrate: true,
        workers: false,
    };

    let without_previous = Application::build(
        test_config(&database_url, &[("SECRETS_KEY", NEW)]),
        api_only,
    )
    .await;
    let changed = first
        .another_instance_with(&[("SECRETS_KEY", NEW), ("SECRETS_KEY_PREVIOUS", OLD)])
        .await;
    drop(first);
    let stored: String =
        sqlx::query_scalar("SELECT secret FROM webhook_endpoints WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&changed.state.pool)
            .await
            .unwrap();
    let ping = changed
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            Some(&admin),
            json!({}),
        )
        .await;
    let received = receiver.wait_for(1, Duration::from_secs(20)).await;
    // Once resealed, the new key alone starts (`another_instance_with` panics otherwise).
    let after_the_change = changed.another_instance_with(&[("SECRETS_KEY", NEW)]).await;

    let error = format!(
        "{:#}",
        without_previous.err().expect("the start is refused")
    );
    assert!(error.contains("SECRETS_KEY_PREVIOUS"), "{error}");
    let context = format!("webhook_endpoints.secret {id}");
    assert!(
        changed
            .state
            .secrets
            .open_text(&stored, context.as_bytes())
            .is_ok(),
        "sealed under the new key"
    );
    assert_eq!(ping.status(), StatusCode::ACCEPTED);
    assert!(!received.is_empty(), "the ping arrived");
    assert!(
        verifies(&secret, &received[0]),
        "signed with the same secret"
    );
    drop(after_the_change);
}

#[tokio::test]
async fn rotating_jwt_secret_alone_is_refused_at_start_and_the_pinned_derived_key_keeps_secrets_readable(
) {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let created = app
        .post(
            "/api/v1/webhooks",
            Some(&admin),
            hook("http://127.0.0.1:9/h"),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let database_url = app.state.config.database_url.clone();
    let derived = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["secrets", "derive-key"])
        .env(
            "JWT_SECRET",
            std::str::from_utf8(&app.state.config.jwt_secret).unwrap(),
        )
        .env("CHRONICLE_ENV", "test")
        .env("RUST_LOG", "warn")
        .env_remove("SECRETS_KEY")
        .output()
        .unwrap();
    let derived = String::from_utf8(derived.stdout).unwrap().trim().to_owned();
    let rotated = [("JWT_SECRET", "a-brand-new-jwt-secret-after-rotation-0123")];
    let api_only = BuildOptions {
        migrate: true,
        workers: false,
    };

    let unpinned = Application::build(test_config(&database_url, &rotated), api_only).await;
    let pinned = test_config(&database_url, &[rotated[0], ("SECRETS_KEY", &derived)]);
    let pinned = Application::build(pinned, api_only).await;

    let error = format!("{:#}", unpinned.err().expect("the start is refused"));
    assert!(error.contains("SECRETS_KEY"), "{error}");
    assert!(pinned.is_ok(), "the pinned derivation opens the secrets");
}
