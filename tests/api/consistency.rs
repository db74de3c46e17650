//! Read-your-writes: every command is visible to the very next read, and `Chronicle-Min-Position`
//! is honoured or answered with 503 PROJECTION_LAGGING.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::problem;
use crate::reads::{
    assert_fresh, header, id_of, ids, list, login, position, register_as, session_of, spawn_app,
};

#[tokio::test]
async fn sign_up_and_sign_in_are_visible_to_the_very_next_read() {
    let app = spawn_app().await;
    let (_, admin) = app.admin().await;

    let registered = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "fresh@example.com", "password": "correct horse battery",
                   "name": "Fresh"}),
        )
        .await;
    assert_fresh(&registered, "register");
    let token = registered.json::<Value>().await.unwrap()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = app.get("/api/v1/me", Some(&token)).await;
    let found = list(
        &app,
        "/api/v1/users",
        &[("q", "fresh@example.com")],
        Some(&admin),
    )
    .await;
    let logged_in = login(&app, "fresh@example.com", "second-device").await;
    assert_fresh(&logged_in, "login");
    let second_token = logged_in.json::<Value>().await.unwrap()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sessions: Value = app
        .get("/api/v1/me/sessions", Some(&second_token))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.json::<Value>().await.unwrap()["data"]["name"], "Fresh");
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    let sessions = sessions["data"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(sessions
        .iter()
        .any(|s| s["id"] == session_of(&second_token).as_str() && s["current"] == true));
    app.finish().await;
}

#[tokio::test]
async fn every_post_command_is_visible_to_the_very_next_read() {
    let app = spawn_app().await;
    let (author_id, token, _) = app.register("rw@example.com").await;

    let created = app
        .post(
            "/api/v1/posts",
            Some(&token),
            json!({"title": "Made", "body": "B", "tags": ["one"]}),
        )
        .await;
    assert_fresh(&created, "create");
    let id = id_of(&created.json::<Value>().await.unwrap()["data"]);
    let path = format!("/api/v1/posts/{id}");
    let after_create = app.get(&path, Some(&token)).await.status();
    let drafts_after_create =
        ids(&list(&app, "/api/v1/posts", &[("status", "draft")], Some(&token)).await);

    let patched = app
        .patch(&path, Some(&token), json!({"title": "Patched"}))
        .await;
    assert_fresh(&patched, "patch");
    let after_patch: Value = app.get(&path, Some(&token)).await.json().await.unwrap();

    let replaced = app
        .send(
            Method::PUT,
            &path,
            Some(&token),
            Some(json!({"title": "Put", "body": "Replaced", "tags": ["two"]})),
        )
        .await;
    assert_fresh(&replaced, "put");
    let after_put: Value = app.get(&path, Some(&token)).await.json().await.unwrap();

    let published = app
        .post(&format!("{path}/publish"), Some(&token), json!({}))
        .await;
    assert_fresh(&published, "publish");
    let anonymous_after_publish = app.get(&path, None).await.status();
    let listed_after_publish = ids(&list(&app, "/api/v1/posts", &[("tag", "two")], None).await);

    let unpublished = app
        .post(&format!("{path}/unpublish"), Some(&token), json!({}))
        .await;
    assert_fresh(&unpublished, "unpublish");
    let anonymous_after_unpublish = app.get(&path, None).await;
    let listed_after_unpublish = ids(&list(&app, "/api/v1/posts", &[], None).await);

    let deleted = app.send(Method::DELETE, &path, Some(&token), None).await;
    assert_fresh(&deleted, "delete");
    let after_delete = app.get(&path, Some(&token)).await;
    let authors_after_delete = ids(&list(
        &app,
        &format!("/api/v1/users/{author_id}/posts"),
        &[],
        Some(&token),
    )
    .await);

    assert_eq!(after_create, StatusCode::OK);
    assert_eq!(drafts_after_create, vec![id.clone()]);
    assert_eq!(after_patch["data"]["title"], "Patched");
    assert_eq!(after_patch["data"]["version"], 2);
    assert_eq!(after_put["data"]["title"], "Put");
    assert_eq!(after_put["data"]["body"], "Replaced");
    assert_eq!(after_put["data"]["tags"], json!(["two"]));
    assert_eq!(anonymous_after_publish, StatusCode::OK);
    assert_eq!(listed_after_publish, vec![id.clone()]);
    problem(
        anonymous_after_unpublish,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(listed_after_unpublish, Vec::<String>::new());
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    problem(after_delete, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert_eq!(authors_after_delete, Vec::<String>::new());
    app.finish().await;
}

#[tokio::test]
async fn every_user_command_is_visible_to_the_very_next_read() {
    let app = spawn_app().await;
    let (_, admin) = app.admin().await;
    let (id, token) = register_as(&app, "changing@example.com", "Before").await;
    let path = format!("/api/v1/users/{id}");

    let patched = app
        .patch(
            &path,
            Some(&token),
            json!({"name": "After", "bio": "New bio"}),
        )
        .await;
    assert_fresh(&patched, "user patch");
    let after_patch: Value = app.get(&path, Some(&token)).await.json().await.unwrap();
    let me_after_patch: Value = app
        .get("/api/v1/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();

    let promoted = app
        .patch(&path, Some(&admin), json!({"role": "admin"}))
        .await;
    assert_fresh(&promoted, "role change");
    let after_promotion: Value = app.get(&path, Some(&admin)).await.json().await.unwrap();
    let admins = ids(&list(&app, "/api/v1/users", &[("role", "admin")], Some(&admin)).await);

    let deactivated = app.send(Method::DELETE, &path, Some(&admin), None).await;
    assert_fresh(&deactivated, "deactivate");
    let after_deactivation: Value = app.get(&path, Some(&admin)).await.json().await.unwrap();
    let deactivated_list = ids(&list(
        &app,
        "/api/v1/users",
        &[("status", "deactivated")],
        Some(&admin),
    )
    .await);
    let login_after = login(&app, "changing@example.com", "after").await;

    assert_eq!(after_patch["data"]["name"], "After");
    assert_eq!(after_patch["data"]["bio"], "New bio");
    assert_eq!(me_after_patch["data"]["name"], "After");
    assert_eq!(after_promotion["data"]["role"], "admin");
    assert!(admins.contains(&id));
    assert_eq!(deactivated.status(), StatusCode::NO_CONTENT);
    assert_eq!(after_deactivation["data"]["status"], "deactivated");
    assert_eq!(deactivated_list, vec![id.clone()]);
    problem(login_after, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    app.finish().await;
}

#[tokio::test]
async fn chronicle_min_position_from_a_command_is_honoured_by_every_read() {
    let app = spawn_app().await;
    let (user_id, token, _) = app.register("minpos@example.com").await;
    let created = app
        .post(
            "/api/v1/posts",
            Some(&token),
            json!({"title": "T", "body": "B", "status": "published"}),
        )
        .await;
    let command_position = header(&created, "chronicle-position").unwrap();
    let post = id_of(&created.json::<Value>().await.unwrap()["data"]);
    let asynchronous = app
        .request(Method::POST, "/api/v1/posts", Some(&token))
        .header("prefer", "respond-async")
        .json(&json!({"title": "Async", "body": "B"}))
        .send()
        .await
        .unwrap();
    assert_eq!(asynchronous.status(), StatusCode::CREATED);
    let async_position = header(&asynchronous, "chronicle-position").unwrap();
    let async_post = id_of(&asynchronous.json::<Value>().await.unwrap()["data"]);
    let paths = [
        format!("/api/v1/posts/{post}"),
        "/api/v1/posts".to_owned(),
        format!("/api/v1/users/{user_id}/posts"),
        format!("/api/v1/users/{user_id}"),
        "/api/v1/me".to_owned(),
        "/api/v1/me/sessions".to_owned(),
    ];

    let mut answers = Vec::new();
    for path in &paths {
        let response = app
            .request(Method::GET, path, Some(&token))
            .header("chronicle-min-position", &command_position)
            .send()
            .await
            .unwrap();
        answers.push((response.status(), header(&response, "chronicle-position")));
    }
    let async_read = app
        .request(
            Method::GET,
            &format!("/api/v1/posts/{async_post}"),
            Some(&token),
        )
        .header("chronicle-min-position", &async_position)
        .send()
        .await
        .unwrap();
    let plain = app.get("/api/v1/posts", None).await;
    let mut garbage = Vec::new();
    for token_text in ["soon", "1.2.3", "-1.5", ""] {
        garbage.push(
            app.request(Method::GET, "/api/v1/posts", None)
                .header("chronicle-min-position", token_text)
                .send()
                .await
                .unwrap(),
        );
    }

    for (path, (status, answered)) in paths.iter().zip(answers) {
        assert_eq!(status, StatusCode::OK, "{path}");
        let answered = answered.unwrap_or_else(|| panic!("{path} answers a Chronicle-Position"));
        assert!(
            position(&answered) >= position(&command_position),
            "{path}: {answered} >= {command_position}"
        );
    }
    assert_eq!(async_read.status(), StatusCode::OK);
    assert_eq!(
        async_read.json::<Value>().await.unwrap()["data"]["title"],
        "Async"
    );
    assert!(header(&plain, "chronicle-position").is_some());
    for response in garbage {
        let body = problem(response, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
        assert_eq!(body["errors"][0]["field"], "Chronicle-Min-Position");
    }
    app.finish().await;
}

#[tokio::test]
async fn a_position_the_read_models_never_reach_is_503_projection_lagging_after_the_wait() {
    let app = spawn_app().await;
    let started = std::time::Instant::now();

    let response = app
        .request(Method::GET, "/api/v1/posts", None)
        .header("chronicle-min-position", "999999999999.1")
        .send()
        .await
        .unwrap();

    let waited = started.elapsed();
    assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
    problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "PROJECTION_LAGGING",
    )
    .await;
    assert!(waited >= Duration::from_millis(1900), "waited {waited:?}");
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    app.finish().await;
}
