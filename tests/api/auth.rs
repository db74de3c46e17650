use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, TestApp};

#[tokio::test]
async fn registering_returns_the_user_and_a_token_pair_without_secrets() {
    let app = TestApp::spawn().await;

    let response = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "Ada@Example.com", "password": "correct horse battery", "name": "Ada"}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().get("chronicle-position").is_some());
    let raw = response.text().await.unwrap();
    assert!(!raw.contains("argon2"), "no password hash in the answer");
    assert!(!raw.contains("password"), "no password field in the answer");
    let body: Value = serde_json::from_str(&raw).unwrap();
    let data = &body["data"];
    assert_eq!(data["user"]["email"], "ada@example.com");
    assert_eq!(data["user"]["role"], "user");
    assert_eq!(data["user"]["status"], "active");
    assert_eq!(data["user"]["email_verified"], false);
    assert_eq!(data["token_type"], "Bearer");
    assert_eq!(data["expires_in"], 900);
    assert!(data["refresh_token"].as_str().unwrap().starts_with("rt_"));
    assert_eq!(data["access_token"].as_str().unwrap().split('.').count(), 3);
}

#[tokio::test]
async fn the_stored_events_keep_the_password_hash_and_the_refresh_token_only_hashed() {
    let app = TestApp::spawn().await;
    let (user_id, _, body) = app.register("hash@example.com").await;
    let refresh_token = body["data"]["refresh_token"].as_str().unwrap();

    let payloads: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM events")
        .fetch_all(&app.state.pool)
        .await
        .unwrap();

    let all = payloads.join("\n");
    assert!(
        all.contains("$argon2id$"),
        "the password is stored as an argon2id hash"
    );
    assert!(
        !all.contains("correct horse battery"),
        "never the password itself"
    );
    assert!(
        !all.contains(refresh_token),
        "never the refresh token itself"
    );
    assert_eq!(
        app.count_events(&user_id).await,
        2,
        "registered + verification requested"
    );
}

#[tokio::test]
async fn login_answers_the_same_for_a_wrong_password_and_an_unknown_email() {
    let app = TestApp::spawn().await;
    app.register("known@example.com").await;

    let wrong_password = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "known@example.com", "password": "not the password"}),
        )
        .await;
    let unknown_email = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": "not the password"}),
        )
        .await;

    let a = problem(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    )
    .await;
    let b = problem(
        unknown_email,
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_eq!(a["detail"], b["detail"]);
    assert_eq!(a["title"], b["title"]);
}

#[tokio::test]
async fn login_with_the_right_password_starts_a_new_session() {
    let app = TestApp::spawn().await;
    let (user_id, first_token, _) = app.register("login@example.com").await;

    let response = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "LOGIN@example.com", "password": "correct horse battery"}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["user"]["id"], user_id.as_str());
    assert_ne!(body["data"]["access_token"], first_token.as_str());
    let sessions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'session.started'")
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
    assert_eq!(sessions, 2, "one session per sign-in");
}

#[tokio::test]
async fn registering_a_taken_email_in_another_case_is_a_conflict() {
    let app = TestApp::spawn().await;
    app.register("taken@example.com").await;

    let response = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "TAKEN@example.com", "password": "correct horse battery", "name": "Copy"}),
        )
        .await;

    problem(response, StatusCode::CONFLICT, "EMAIL_TAKEN").await;
}

#[tokio::test]
async fn a_deactivated_user_cannot_sign_in() {
    let app = TestApp::spawn().await;
    let (user_id, token, _) = app.register("leaving@example.com").await;

    let deactivated = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/users/{user_id}"),
            Some(&token),
            None,
        )
        .await;
    let login = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "leaving@example.com", "password": "correct horse battery"}),
        )
        .await;

    assert_eq!(deactivated.status(), StatusCode::NO_CONTENT);
    problem(login, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
}

#[tokio::test]
async fn missing_garbage_and_forged_tokens_are_401_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    let forged = {
        let keys = chronicle::auth::jwt::JwtKeys::new(
            b"another-secret-another-secret-another",
            "chronicle",
            "chronicle-api",
        );
        keys.issue(
            aggregates::UserId::from_uuid(uuid::Uuid::now_v7()),
            aggregates::SessionId::from_uuid(uuid::Uuid::now_v7()),
            aggregates::Role::Admin,
            chrono::Utc::now(),
        )
        .unwrap()
    };
    let body = json!({"title": "t", "body": "b"});

    for token in [None, Some("garbage"), Some("a.b.c"), Some(forged.as_str())] {
        let response = app.post("/api/v1/posts", token, body.clone()).await;
        assert_eq!(
            response.headers().get("www-authenticate").unwrap(),
            "Bearer"
        );
        problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
    let basic = app
        .request(reqwest::Method::POST, "/api/v1/posts", None)
        .header("authorization", "Basic Zm9vOmJhcg==")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(basic, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn a_burst_of_logins_does_not_starve_other_requests() {
    // A sign-in counts against its account's failure limit until its password checks out, so
    // 24 at once to one account need a limit above 24.
    let app = TestApp::spawn_with(&[("LOGIN_FAILURES_PER_ACCOUNT", "100")]).await;
    app.register("burst@example.com").await;
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let logins = futures::future::join_all((0..24).map(|_| async {
        let response = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "burst@example.com", "password": "correct horse battery"}),
            )
            .await;
        finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        response
    }));
    tokio::pin!(logins);

    // Let the burst start, then ask for something cheap while the hashing is under way.
    let cheap = async {
        crate::helpers::poll_pause().await;
        let status = app.get("/healthz", None).await.status();
        (status, finished.load(std::sync::atomic::Ordering::SeqCst))
    };
    let answered = tokio::select! {
        answer = cheap => Some(answer),
        _ = &mut logins => None,
    };
    let results = logins.await;

    let (status, logins_done_before) =
        answered.expect("healthz answered while the logins were still hashing");
    assert_eq!(status, StatusCode::OK);
    assert!(
        logins_done_before <= 12,
        "healthz waited for {logins_done_before} of 24 password hashes"
    );
    assert!(results.iter().all(|r| r.status() == StatusCode::OK));
}
