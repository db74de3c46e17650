use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{problem, TestApp};

const SECRET: &[u8] = b"test-secret-that-is-long-enough-for-hs256-0123";

async fn login(app: &TestApp, email: &str) -> Value {
    let response = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["data"].clone()
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": token}),
    )
    .await
}

/// Polls until the access token is refused, returning how long that took.
async fn refused_within(app: &TestApp, token: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if app.get("/api/v1/me", Some(token)).await.status() == StatusCode::UNAUTHORIZED {
            return Some(started.elapsed());
        }
        crate::helpers::poll_pause().await;
    }
    None
}

#[tokio::test]
async fn refreshing_rotates_the_pair_and_the_old_refresh_token_stops_working() {
    let app = TestApp::spawn().await;
    let (_, _, body) = app.register("rotate-rt@example.com").await;
    let first = body["data"]["refresh_token"].as_str().unwrap().to_owned();

    let rotated = refresh(&app, &first).await;
    let rotated_status = rotated.status();
    let rotated: Value = rotated.json().await.unwrap();
    let second = rotated["data"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let access = rotated["data"]["access_token"].as_str().unwrap().to_owned();
    let me = app.get("/api/v1/me", Some(&access)).await;

    assert_eq!(rotated_status, StatusCode::OK);
    assert_ne!(first, second);
    assert_eq!(rotated["data"]["token_type"], "Bearer");
    assert_eq!(rotated["data"]["expires_in"], 900);
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_whole_session() {
    // `0s` turns the reuse grace off: any second use is reuse, however soon.
    let app = TestApp::spawn_with(&[("REFRESH_REUSE_GRACE", "0s")]).await;
    let (_, _, body) = app.register("thief@example.com").await;
    let stolen = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    let rotated: Value = refresh(&app, &stolen).await.json().await.unwrap();
    let newest_refresh = rotated["data"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let newest_access = rotated["data"]["access_token"].as_str().unwrap().to_owned();

    let reuse = refresh(&app, &stolen).await;
    let newest_refresh_after = refresh(&app, &newest_refresh).await;
    let access_after = refused_within(&app, &newest_access, Duration::from_secs(1)).await;

    problem(reuse, StatusCode::UNAUTHORIZED, "TOKEN_REUSED").await;
    problem(
        newest_refresh_after,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    assert!(
        access_after.is_some(),
        "the session's access token is refused within 1 s"
    );
    let compromised: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'session.compromised'")
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
    assert_eq!(compromised, 1);
}

#[tokio::test]
async fn garbage_refresh_tokens_are_401_not_500() {
    let app = TestApp::spawn().await;

    for token in [
        "",
        "nope",
        "rt_",
        "rt_0000000000000000000000000000000000",
        "rt_01a20a2c173e723690fad9005a68d087xyz",
    ] {
        let response = refresh(&app, token).await;
        assert!(
            response.status() == StatusCode::UNAUTHORIZED
                || response.status() == StatusCode::UNPROCESSABLE_ENTITY,
            "{token:?} gave {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn an_access_token_is_refused_within_a_second_of_logout_on_every_instance() {
    let app = TestApp::spawn().await;
    let other_instance = app.another_instance().await;
    let (_, token, _) = app.register("bye@example.com").await;
    assert_eq!(
        other_instance
            .get("/api/v1/me", Some(&token))
            .await
            .status(),
        StatusCode::OK
    );

    let logout = app
        .send(Method::POST, "/api/v1/auth/logout", Some(&token), None)
        .await;
    let here = refused_within(&app, &token, Duration::from_secs(1)).await;
    let there = refused_within(&other_instance, &token, Duration::from_secs(1)).await;

    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(here.is_some(), "refused on the instance that logged out");
    assert!(there.is_some(), "refused on the other instance within 1 s");
    let problem_body = problem(
        app.get("/api/v1/me", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    assert!(problem_body["detail"].as_str().unwrap().contains("revoked"));
}

#[tokio::test]
async fn a_restarted_instance_still_refuses_a_session_revoked_before_it_started() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("restart@example.com").await;
    app.send(Method::POST, "/api/v1/auth/logout", Some(&token), None)
        .await;

    let fresh_instance = app.another_instance().await;

    problem(
        fresh_instance.get("/api/v1/me", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user() {
    let app = TestApp::spawn().await;
    let (_, first, _) = app.register("all@example.com").await;
    let second = login(&app, "all@example.com").await;
    let second_access = second["access_token"].as_str().unwrap();
    let second_refresh = second["refresh_token"].as_str().unwrap();

    let response = app
        .send(Method::POST, "/api/v1/auth/logout-all", Some(&first), None)
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(refused_within(&app, &first, Duration::from_secs(1))
        .await
        .is_some());
    assert!(refused_within(&app, second_access, Duration::from_secs(1))
        .await
        .is_some());
    assert_eq!(
        refresh(&app, second_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_password_change_signs_out_the_other_sessions_but_not_the_current_one() {
    let app = TestApp::spawn().await;
    let (id, current, _) = app.register("pw-sessions@example.com").await;
    let other = login(&app, "pw-sessions@example.com").await;
    let other_access = other["access_token"].as_str().unwrap();

    let changed = app
        .post(
            &format!("/api/v1/users/{id}/password"),
            Some(&current),
            json!({"current_password": "correct horse battery", "new_password": "another long secret"}),
        )
        .await;

    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert!(refused_within(&app, other_access, Duration::from_secs(1))
        .await
        .is_some());
    assert_eq!(
        app.get("/api/v1/me", Some(&current)).await.status(),
        StatusCode::OK
    );
    let sessions: Value = app
        .get("/api/v1/me/sessions", Some(&current))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sessions["data"].as_array().unwrap().len(), 1);
    assert_eq!(sessions["data"][0]["current"], true);
}

#[tokio::test]
async fn deactivating_a_user_ends_their_sessions_and_refresh_tokens() {
    let app = TestApp::spawn().await;
    let (id, token, body) = app.register("deact@example.com").await;
    let refresh_token = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    let (_, admin) = app.admin().await;

    let response = app
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{id}"),
            Some(&admin),
            None,
        )
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(refused_within(&app, &token, Duration::from_secs(1))
        .await
        .is_some());
    assert_eq!(
        refresh(&app, &refresh_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_user_revokes_their_own_session_but_another_users_session_is_404() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("mine@example.com").await;
    let second = login(&app, "mine@example.com").await;
    let (_, stranger, _) = app.register("theirs@example.com").await;
    let sessions: Value = app
        .get("/api/v1/me/sessions", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let other_session = sessions["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let by_stranger = app
        .send(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{other_session}"),
            Some(&stranger),
            None,
        )
        .await;
    let by_owner = app
        .send(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{other_session}"),
            Some(&token),
            None,
        )
        .await;

    problem(by_stranger, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert_eq!(by_owner.status(), StatusCode::NO_CONTENT);
    assert!(refused_within(
        &app,
        second["access_token"].as_str().unwrap(),
        Duration::from_secs(1)
    )
    .await
    .is_some());
    assert_eq!(
        app.get("/api/v1/me", Some(&token)).await.status(),
        StatusCode::OK
    );
}

fn claims(user: &str, session: &str, exp_offset: i64, iss: &str, aud: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": user, "sid": session, "role": "admin", "iat": now, "exp": now + exp_offset,
           "iss": iss, "aud": aud, "jti": "x"})
}

#[tokio::test]
async fn forged_expired_and_misaddressed_jwts_are_refused() {
    let app = TestApp::spawn().await;
    let (id, token, _) = app.register("jwt@example.com").await;
    let sid = {
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["sid"].as_str().unwrap().to_owned()
    };
    let good = claims(&id, &sid, 600, "chronicle", "chronicle-api");
    let sign = |alg: Algorithm, claims: &Value, secret: &[u8]| {
        encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
    };
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let tampered = {
        let mut parts: Vec<String> = sign(Algorithm::HS256, &good, SECRET)
            .split('.')
            .map(str::to_owned)
            .collect();
        let mut forged = good.clone();
        forged["sub"] = json!(uuid::Uuid::now_v7());
        parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
        parts.join(".")
    };
    let cases = [
        (
            "control",
            sign(Algorithm::HS256, &good, SECRET),
            StatusCode::OK,
            None,
        ),
        (
            "alg none",
            alg_none,
            StatusCode::UNAUTHORIZED,
            Some("UNAUTHORIZED"),
        ),
        (
            "HS512",
            sign(Algorithm::HS512, &good, SECRET),
            StatusCode::UNAUTHORIZED,
            Some("UNAUTHORIZED"),
        ),
        (
            "other key",
            sign(
                Algorithm::HS256,
                &good,
                b"another-secret-another-secret-another!!",
            ),
            StatusCode::UNAUTHORIZED,
            Some("UNAUTHORIZED"),
        ),
        (
            "tampered",
            tampered,
            StatusCode::UNAUTHORIZED,
            Some("UNAUTHORIZED"),
        ),
        (
            "expired",
            sign(
                Algorithm::HS256,
                &claims(&id, &sid, -10, "chronicle", "chronicle-api"),
                SECRET,
            ),
            StatusCode::UNAUTHORIZED,
            Some("TOKEN_EXPIRED"),
        ),
        (
            "issuer",
            sign(
                Algorithm::HS256,
                &claims(&id, &sid, 600, "evil", "chronicle-api"),
                SECRET,
            ),
            StatusCode::UNAUTHORIZED,
            Some("UNAUTHORIZED"),
        ),
        (
            "audience",
            sign(
                Algorithm::HS256,
                &claims(&id, &sid, 600, "chronicle", "other"),
                SECRET,
            ),
            StatusCode::UNAUTHORIZED,
            Some("UNAUTHORIZED"),
        ),
    ];

    for (name, jwt, status, code) in cases {
        let response = app.get("/api/v1/me", Some(&jwt)).await;
        assert_eq!(response.status(), status, "{name}");
        if let Some(code) = code {
            problem(response, status, code).await;
        }
    }
}

#[tokio::test]
async fn api_keys_are_shown_once_act_as_their_creator_and_are_revoked_at_once() {
    let app = TestApp::spawn().await;
    let (admin_id, admin) = app.admin().await;

    let created = app
        .post("/api/v1/api-keys", Some(&admin), json!({"name": "ci"}))
        .await;
    let created_status = created.status();
    let created: Value = created.json().await.unwrap();
    let key = created["data"]["key"].as_str().unwrap().to_owned();
    let key_id = created["data"]["id"].as_str().unwrap().to_owned();
    let listed = app
        .get("/api/v1/api-keys", Some(&admin))
        .await
        .text()
        .await
        .unwrap();
    let via_header = app
        .request(Method::GET, "/api/v1/users", None)
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    let via_bearer = app.get("/api/v1/me", Some(&key)).await;
    let me: Value = via_bearer.json().await.unwrap();
    let revoked = app
        .send(
            Method::DELETE,
            &format!("/api/v1/api-keys/{key_id}"),
            Some(&admin),
            None,
        )
        .await;
    let after = app
        .request(Method::GET, "/api/v1/users", None)
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();

    assert_eq!(created_status, StatusCode::CREATED);
    assert!(key.starts_with("sk_live_"));
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(&key["sk_live_".len()..])
            .unwrap()
            .len(),
        32
    );
    assert_eq!(created["data"]["role"], "admin");
    assert!(!listed.contains(&key), "the list never shows the key");
    assert!(listed.contains(&key_id));
    assert_eq!(via_header.status(), StatusCode::OK);
    assert_eq!(me["data"]["id"], admin_id.as_str());
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    problem(after, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let stored: String = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_ne!(stored, key);
    assert_eq!(stored.len(), 64);
}

#[tokio::test]
async fn an_api_key_with_the_user_role_cannot_do_admin_things() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let created: Value = app
        .post(
            "/api/v1/api-keys",
            Some(&admin),
            json!({"name": "reader", "role": "user"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let key = created["data"]["key"].as_str().unwrap();

    let admin_route = app
        .request(Method::GET, "/api/v1/users", None)
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let user_route = app
        .request(Method::GET, "/api/v1/posts", None)
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let bad_role = app
        .post(
            "/api/v1/api-keys",
            Some(&admin),
            json!({"name": "x", "role": "root"}),
        )
        .await;

    problem(admin_route, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(user_route.status(), StatusCode::OK);
    problem(
        bad_role,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
}

#[tokio::test]
async fn no_response_or_public_event_carries_a_password_hash_or_token_hash() {
    let app = TestApp::spawn().await;
    let (id, token, body) = app.register("leak@example.com").await;
    let refresh_token = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = refresh(&app, &refresh_token).await.text().await.unwrap();
    let (_, admin) = app.admin().await;

    let mut bodies = vec![body.to_string(), refreshed];
    for path in [
        format!("/api/v1/users/{id}/history"),
        "/api/v1/me".into(),
        "/api/v1/me/sessions".into(),
    ] {
        bodies.push(app.get(&path, Some(&token)).await.text().await.unwrap());
    }
    bodies.push(
        app.get("/api/v1/events?limit=1000", Some(&admin))
            .await
            .text()
            .await
            .unwrap(),
    );
    bodies.push(
        app.get("/api/v1/users", Some(&admin))
            .await
            .text()
            .await
            .unwrap(),
    );
    let hashes: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(payload->'session.started'->>'refresh_token_hash', payload->'session.refreshed'->>'refresh_token_hash')
           FROM events WHERE event_type IN ('session.started', 'session.refreshed')",
    )
    .fetch_all(&app.state.pool)
    .await
    .unwrap();

    assert!(hashes.len() >= 3);
    for body in &bodies {
        assert!(!body.contains("$argon2"), "password hash leaked: {body}");
        assert!(!body.contains("password_hash"));
        assert!(!body.contains("refresh_token_hash"));
        for hash in &hashes {
            assert!(!body.contains(hash.as_str()));
        }
    }
}

#[tokio::test]
async fn an_admins_keys_lose_admin_powers_when_the_admin_is_demoted_and_stop_when_deactivated() {
    let app = TestApp::spawn().await;
    let (creator, creator_token) = app.admin().await;
    let (_, other_admin) = app.admin().await;
    let created: Value = app
        .post(
            "/api/v1/api-keys",
            Some(&creator_token),
            json!({"name": "ops"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let key = created["data"]["key"].as_str().unwrap().to_owned();
    let list_users = || async {
        app.request(Method::GET, "/api/v1/users", None)
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(list_users().await.status(), StatusCode::OK);

    let demoted = app
        .patch(
            &format!("/api/v1/users/{creator}"),
            Some(&other_admin),
            json!({"role": "user"}),
        )
        .await;
    assert_eq!(demoted.status(), StatusCode::OK);
    problem(list_users().await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let own_posts = app
        .request(Method::GET, "/api/v1/posts", None)
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(own_posts.status(), StatusCode::OK, "still a user's key");

    let deactivated = app
        .request(Method::DELETE, &format!("/api/v1/users/{creator}"), None)
        .bearer_auth(&other_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deactivated.status(), StatusCode::NO_CONTENT);
    assert_eq!(list_users().await.status(), StatusCode::UNAUTHORIZED);
}
