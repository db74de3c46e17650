//! Strict query parameters: every bad one is a 400 naming it, never a 500.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::problem;
use crate::reads::{get_with, list, spawn_app, Params};

#[tokio::test]
async fn bad_list_parameters_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("strict@example.com").await;
    let (_, admin) = app.admin().await;
    for title in ["One", "Two"] {
        app.create_post(
            &token,
            json!({"title": title, "body": "B", "status": "published"}),
        )
        .await;
    }
    let first = list(&app, "/api/v1/posts", &[("limit", "1")], None).await;
    let cursor = first["pagination"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tampered: Vec<char> = cursor.chars().collect();
    tampered[5] = if tampered[5] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let (payload, _) = cursor.split_once('.').unwrap();
    let unsigned = format!("{payload}.AAAAAAAAAAAAAAAAAAAAAA");
    let forged_payload = URL_SAFE_NO_PAD
        .encode(json!({"s": "-created_at", "v": ["2000-01-01 00:00:00+00", "x"]}).to_string());
    let forged = format!("{forged_payload}.{}", cursor.split_once('.').unwrap().1);
    let cases: Vec<(&str, Params, Option<&str>, &str)> = vec![
        ("/api/v1/posts", vec![("cursor", &tampered)], None, "cursor"),
        ("/api/v1/posts", vec![("cursor", &unsigned)], None, "cursor"),
        ("/api/v1/posts", vec![("cursor", &forged)], None, "cursor"),
        ("/api/v1/posts", vec![("cursor", "garbage")], None, "cursor"),
        (
            "/api/v1/posts",
            vec![("cursor", &cursor), ("sort", "title")],
            None,
            "cursor",
        ),
        (
            "/api/v1/posts",
            vec![("cursor", &cursor), ("sort", "created_at")],
            None,
            "cursor",
        ),
        (
            "/api/v1/posts",
            vec![("cursor", &cursor), ("page", "2")],
            None,
            "page",
        ),
        (
            "/api/v1/posts",
            vec![("sort", "password_hash")],
            None,
            "sort",
        ),
        ("/api/v1/posts", vec![("sort", "-body")], None, "sort"),
        ("/api/v1/posts", vec![("sort", "title,title")], None, "sort"),
        ("/api/v1/posts", vec![("sort", "")], None, "sort"),
        ("/api/v1/posts", vec![("limit", "0")], None, "limit"),
        ("/api/v1/posts", vec![("limit", "101")], None, "limit"),
        ("/api/v1/posts", vec![("limit", "-1")], None, "limit"),
        ("/api/v1/posts", vec![("limit", "ten")], None, "limit"),
        ("/api/v1/posts", vec![("page", "0")], None, "page"),
        ("/api/v1/posts", vec![("page", "x")], None, "page"),
        ("/api/v1/posts", vec![("foo", "bar")], None, "foo"),
        ("/api/v1/posts", vec![("fields", "nope")], None, "fields"),
        (
            "/api/v1/posts",
            vec![("fields", "id,password_hash")],
            None,
            "fields",
        ),
        (
            "/api/v1/posts",
            vec![("author_id", "not-a-uuid")],
            None,
            "author_id",
        ),
        (
            "/api/v1/posts",
            vec![("created_after", "yesterday")],
            None,
            "created_after",
        ),
        (
            "/api/v1/posts",
            vec![("created_before", "2026-13-01T00:00:00Z")],
            None,
            "created_before",
        ),
        (
            "/api/v1/posts",
            vec![("status", "archived")],
            None,
            "status",
        ),
        (
            "/api/v1/posts",
            vec![("tag", "a"), ("tag", "b")],
            None,
            "tag",
        ),
        (
            "/api/v1/users",
            vec![("role", "superuser")],
            Some(&admin),
            "role",
        ),
        (
            "/api/v1/users",
            vec![("status", "banned")],
            Some(&admin),
            "status",
        ),
        (
            "/api/v1/users",
            vec![("sort", "password_hash")],
            Some(&admin),
            "sort",
        ),
        (
            "/api/v1/users",
            vec![("fields", "password_hash")],
            Some(&admin),
            "fields",
        ),
        (
            "/api/v1/events",
            vec![("after", "soon")],
            Some(&admin),
            "after",
        ),
        (
            "/api/v1/events",
            vec![("limit", "0")],
            Some(&admin),
            "limit",
        ),
        ("/api/v1/events", vec![("foo", "1")], Some(&admin), "foo"),
    ];

    let mut responses = Vec::new();
    for (path, params, token, _) in &cases {
        responses.push(get_with(&app, path, params, *token).await);
    }

    for ((path, params, _, field), response) in cases.iter().zip(responses) {
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{path} {params:?}"
        );
        let body = problem(response, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
        assert_eq!(
            body["errors"][0]["field"], *field,
            "{path} {params:?}: {body}"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn a_nul_byte_in_a_text_filter_is_a_400_naming_the_parameter_not_a_500() {
    let app = spawn_app().await;
    let admin = app.signed_in_admin().await;
    let cases = [
        ("/api/v1/posts", "q"),
        ("/api/v1/posts", "tag"),
        ("/api/v1/users", "q"),
        ("/api/v1/events", "event_type"),
        ("/api/v1/events", "aggregate_type"),
    ];

    let mut answers = Vec::new();
    for (path, name) in cases {
        answers.push(admin.get_with(path, &[(name, "a\0b")]).await);
    }

    for ((path, name), answer) in cases.iter().zip(answers) {
        assert_eq!(
            answer.status(),
            StatusCode::BAD_REQUEST,
            "{path}?{name}=a%00b"
        );
        let body = answer.problem("MALFORMED_REQUEST");
        assert_eq!(body["errors"][0]["field"], *name);
    }
    app.finish().await;
}
