use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{problem, TestApp};

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_documents() {
    let app = TestApp::spawn().await;

    let unknown = app.get("/api/v1/nothing-here", None).await;
    let wrong_method = app
        .send(Method::DELETE, "/api/v1/auth/login", None, None)
        .await;

    problem(unknown, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert!(wrong_method
        .headers()
        .get("allow")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("POST"));
    problem(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_body_is_413_even_without_credentials() {
    let app = TestApp::spawn().await;
    let huge = "x".repeat(2 * 1024 * 1024);

    let response = app
        .request(Method::POST, "/api/v1/posts", None)
        .header("content-type", "application/json")
        .body(format!("{{\"title\":\"t\",\"body\":\"{huge}\"}}"))
        .send()
        .await
        .unwrap();

    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_415() {
    let app = TestApp::spawn().await;

    let response = app
        .request(Method::POST, "/api/v1/auth/register", None)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();

    problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
}

#[tokio::test]
async fn bad_bodies_are_400_or_422_with_the_field_never_500() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("fuzz@example.com").await;
    let send_raw = |raw: &'static str| {
        app.request(Method::POST, "/api/v1/posts", Some(&token))
            .header("content-type", "application/json")
            .body(raw)
            .send()
    };

    let not_json = send_raw("{\"title\": ").await.unwrap();
    let wrong_type = app
        .post(
            "/api/v1/posts",
            Some(&token),
            json!({"title": 42, "body": "b"}),
        )
        .await;
    let unknown_field = app
        .post(
            "/api/v1/posts",
            Some(&token),
            json!({"title": "t", "body": "b", "admin": true}),
        )
        .await;
    let missing = app
        .post("/api/v1/posts", Some(&token), json!({"body": "b"}))
        .await;
    let too_long = app
        .post(
            "/api/v1/posts",
            Some(&token),
            json!({"title": "x".repeat(201), "body": "b"}),
        )
        .await;
    let bad_tag = app
        .post(
            "/api/v1/posts",
            Some(&token),
            json!({"title": "t", "body": "b", "tags": ["ok", "fine", "NOT OK"]}),
        )
        .await;
    let array = send_raw("[1,2,3]").await.unwrap();

    problem(not_json, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    let body = problem(
        wrong_type,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "title");
    let body = problem(
        unknown_field,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "admin");
    let body = problem(
        missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "title");
    let body = problem(
        too_long,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "title");
    assert_eq!(body["errors"][0]["code"], "LENGTH");
    let body = problem(
        bad_tag,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "tags[2]");
    problem(array, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
}

#[tokio::test]
async fn several_invalid_fields_are_each_reported() {
    let app = TestApp::spawn().await;

    let response = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "nope", "password": "short", "name": ""}),
        )
        .await;

    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "name", "password"]);
    assert_eq!(body["detail"], "3 fields are invalid");
}

#[tokio::test]
async fn malformed_and_unknown_ids_in_paths_are_404() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("ids@example.com").await;

    for path in [
        "/api/v1/posts/not-a-uuid",
        "/api/v1/posts/00000000-0000-0000-0000-000000000000",
        "/api/v1/users/%27%3B%20DROP%20TABLE",
        "/api/v1/users/00000000-0000-0000-0000-000000000000",
    ] {
        problem(
            app.get(path, Some(&token)).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
    }
    let patch_missing = app
        .patch(
            "/api/v1/posts/00000000-0000-0000-0000-000000000000",
            Some(&token),
            json!({"title": "t"}),
        )
        .await;
    problem(patch_missing, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn a_malformed_request_id_is_replaced_by_a_fresh_one() {
    let app = TestApp::spawn().await;

    let response = app
        .request(Method::GET, "/healthz", None)
        .header("x-request-id", "has spaces and is bad")
        .send()
        .await
        .unwrap();

    let id = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert_ne!(id, "has spaces and is bad");
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(
        response.headers().get("x-content-type-options").unwrap(),
        "nosniff"
    );
}
