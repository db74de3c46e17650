use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{problem, TestApp};

#[tokio::test]
async fn a_user_edits_their_own_profile_with_patch_and_put() {
    let app = TestApp::spawn().await;
    let (id, token, _) = app.register("profile@example.com").await;
    let path = format!("/api/v1/users/{id}");

    let patched: Value = app
        .patch(&path, Some(&token), json!({"bio": "Writes things"}))
        .await
        .json()
        .await
        .unwrap();
    let put = app
        .send(
            Method::PUT,
            &path,
            Some(&token),
            Some(json!({"name": "New Name", "bio": ""})),
        )
        .await;
    let put_status = put.status();
    let put: Value = put.json().await.unwrap();
    let fetched: Value = app.get(&path, Some(&token)).await.json().await.unwrap();

    assert_eq!(patched["data"]["bio"], "Writes things");
    assert_eq!(patched["data"]["name"], "Test User");
    assert_eq!(put_status, StatusCode::OK);
    assert_eq!(put["data"]["name"], "New Name");
    assert_eq!(put["data"]["bio"], "");
    assert_eq!(fetched["data"]["name"], "New Name");
    assert_eq!(fetched["data"]["email"], "profile@example.com");
}

#[tokio::test]
async fn put_requires_both_name_and_bio() {
    let app = TestApp::spawn().await;
    let (id, token, _) = app.register("put@example.com").await;

    let response = app
        .send(
            Method::PUT,
            &format!("/api/v1/users/{id}"),
            Some(&token),
            Some(json!({"name": "Only"})),
        )
        .await;

    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "bio");
}

#[tokio::test]
async fn others_see_the_public_view_and_cannot_edit() {
    let app = TestApp::spawn().await;
    let (id, _, _) = app.register("private@example.com").await;
    let (_, other, _) = app.register("nosy@example.com").await;
    let path = format!("/api/v1/users/{id}");

    let seen: Value = app.get(&path, Some(&other)).await.json().await.unwrap();
    let edit = app
        .patch(&path, Some(&other), json!({"name": "Hacked"}))
        .await;

    let keys: Vec<&str> = seen["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 4, "public view only: {keys:?}");
    assert!(seen["data"]["email"].is_null());
    problem(edit, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn only_admins_change_roles_and_status() {
    let app = TestApp::spawn().await;
    let (id, token, _) = app.register("climber@example.com").await;
    let (_, admin) = app.admin().await;
    let path = format!("/api/v1/users/{id}");

    let self_promotion = app
        .patch(&path, Some(&token), json!({"role": "admin"}))
        .await;
    let promoted = app
        .patch(&path, Some(&admin), json!({"role": "admin"}))
        .await;
    let promoted_status = promoted.status();
    let promoted: Value = promoted.json().await.unwrap();
    let deactivated: Value = app
        .patch(&path, Some(&admin), json!({"status": "deactivated"}))
        .await
        .json()
        .await
        .unwrap();
    let reactivated: Value = app
        .patch(&path, Some(&admin), json!({"status": "active"}))
        .await
        .json()
        .await
        .unwrap();

    problem(self_promotion, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(promoted_status, StatusCode::OK);
    assert_eq!(promoted["data"]["role"], "admin");
    assert_eq!(deactivated["data"]["status"], "deactivated");
    assert_eq!(reactivated["data"]["status"], "active");
}

#[tokio::test]
async fn admins_create_users_with_a_location_and_others_may_not() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let (_, user, _) = app.register("plain@example.com").await;
    let body = json!({"email": "made@example.com", "name": "Made", "password": "correct horse battery", "role": "admin"});

    let by_user = app.post("/api/v1/users", Some(&user), body.clone()).await;
    let by_admin = app.post("/api/v1/users", Some(&admin), body).await;

    problem(by_user, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(by_admin.status(), StatusCode::CREATED);
    let location = by_admin
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let created: Value = by_admin.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/users/{}", created["data"]["id"].as_str().unwrap())
    );
    assert_eq!(created["data"]["role"], "admin");
}

#[tokio::test]
async fn the_verification_token_the_server_derives_for_the_email_verifies_once() {
    let app = TestApp::spawn().await;
    let (id, token, _) = app.register("verify@example.com").await;
    let event: Value = sqlx::query_scalar(
        "SELECT payload FROM events WHERE aggregate_id = $1 AND event_type = 'user.email_verification_requested'",
    )
    .bind(&id)
    .fetch_one(&app.state.pool)
    .await
    .unwrap();
    let nonce = event["user.email_verification_requested"]["token_nonce"]
        .as_str()
        .unwrap();
    // What the email sender puts in the link: only the server's key turns the nonce into it.
    let verification = app.state.email_tokens.token(
        chronicle::email::tokens::TokenKind::Verification,
        aggregates::UserId::from_uuid(id.parse().unwrap()),
        nonce,
    );
    let path = format!("/api/v1/users/{id}/verify-email");

    let wrong = app
        .post(&path, Some(&token), json!({"token": "not-it"}))
        .await;
    let right = app
        .post(&path, Some(&token), json!({"token": verification}))
        .await;
    let right_status = right.status();
    let right: Value = right.json().await.unwrap();
    let again = app
        .post(&path, Some(&token), json!({"token": verification}))
        .await;

    let body = problem(wrong, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(body["errors"][0]["field"], "token");
    assert_eq!(right_status, StatusCode::OK);
    assert_eq!(right["data"]["email_verified"], true);
    let used = problem(again, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(
        used["errors"][0]["field"], "token",
        "a used token is 422 on token"
    );
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_then_only_the_new_one_works() {
    let app = TestApp::spawn().await;
    let (id, token, _) = app.register("rotate@example.com").await;
    let path = format!("/api/v1/users/{id}/password");

    let wrong = app
        .post(
            &path,
            Some(&token),
            json!({"current_password": "not it at all", "new_password": "a brand new secret"}),
        )
        .await;
    let right = app
        .post(&path, Some(&token), json!({"current_password": "correct horse battery", "new_password": "a brand new secret"}))
        .await;
    let old_login = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "rotate@example.com", "password": "correct horse battery"}),
        )
        .await;
    let new_login = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "rotate@example.com", "password": "a brand new secret"}),
        )
        .await;

    problem(wrong, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    assert_eq!(right.status(), StatusCode::NO_CONTENT);
    problem(old_login, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    assert_eq!(new_login.status(), StatusCode::OK);
}
