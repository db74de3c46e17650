use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{problem, TestApp};

#[tokio::test]
async fn a_post_goes_from_draft_to_published_to_draft_to_deleted() {
    let app = TestApp::spawn().await;
    let (author_id, token, _) = app.register("author@example.com").await;

    let created = app
        .create_post(
            &token,
            json!({"title": "Hello", "body": "World", "tags": ["rust", "es"]}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let published = app
        .post(
            &format!("/api/v1/posts/{id}/publish"),
            Some(&token),
            json!({}),
        )
        .await;
    let published_status = published.status();
    let published: Value = published.json().await.unwrap();
    let unpublished = app
        .post(
            &format!("/api/v1/posts/{id}/unpublish"),
            Some(&token),
            json!({}),
        )
        .await;
    let unpublished_status = unpublished.status();
    let unpublished: Value = unpublished.json().await.unwrap();
    let deleted = app
        .send(
            Method::DELETE,
            &format!("/api/v1/posts/{id}"),
            Some(&token),
            None,
        )
        .await;
    let after = app.get(&format!("/api/v1/posts/{id}"), Some(&token)).await;

    assert_eq!(created["author_id"], author_id.as_str());
    assert_eq!(created["status"], "draft");
    assert_eq!(created["tags"], json!(["rust", "es"]));
    assert_eq!(created["version"], 1);
    assert_eq!(published_status, StatusCode::OK);
    assert_eq!(published["data"]["status"], "published");
    assert!(published["data"]["published_at"].is_string());
    assert_eq!(unpublished_status, StatusCode::OK);
    assert_eq!(unpublished["data"]["status"], "draft");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    problem(after, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(&app.state.pool)
    .await
    .unwrap();
    assert_eq!(
        types,
        [
            "post.created",
            "post.published",
            "post.unpublished",
            "post.deleted"
        ]
    );
}

#[tokio::test]
async fn creating_a_published_post_appends_created_then_published() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("pub@example.com").await;

    let created = app
        .create_post(
            &token,
            json!({"title": "Now", "body": "Live", "status": "published"}),
        )
        .await;

    assert_eq!(created["status"], "published");
    assert_eq!(created["version"], 2);
    let anonymous = app
        .get(
            &format!("/api/v1/posts/{}", created["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(anonymous.status(), StatusCode::OK);
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_put_replaces_all() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("editor@example.com").await;
    let post = app
        .create_post(
            &token,
            json!({"title": "Old", "body": "Body", "tags": ["a"]}),
        )
        .await;
    let path = format!("/api/v1/posts/{}", post["id"].as_str().unwrap());

    let patched: Value = app
        .patch(&path, Some(&token), json!({"title": "New"}))
        .await
        .json()
        .await
        .unwrap();
    let replaced = app
        .send(
            Method::PUT,
            &path,
            Some(&token),
            Some(json!({"title": "T", "body": "B", "tags": []})),
        )
        .await;
    let replaced: Value = replaced.json().await.unwrap();

    assert_eq!(patched["data"]["title"], "New");
    assert_eq!(patched["data"]["body"], "Body");
    assert_eq!(patched["data"]["tags"], json!(["a"]));
    assert_eq!(patched["data"]["version"], 2);
    assert_eq!(replaced["data"]["title"], "T");
    assert_eq!(replaced["data"]["tags"], json!([]));
    assert_eq!(replaced["data"]["version"], 3);
}

#[tokio::test]
async fn another_user_cannot_edit_a_post_but_an_admin_can() {
    let app = TestApp::spawn().await;
    let (_, author, _) = app.register("owner@example.com").await;
    let (_, stranger, _) = app.register("stranger@example.com").await;
    let (_, admin) = app.admin().await;
    let post = app
        .create_post(
            &author,
            json!({"title": "Mine", "body": "Body", "status": "published"}),
        )
        .await;
    let path = format!("/api/v1/posts/{}", post["id"].as_str().unwrap());

    let by_stranger = app
        .patch(&path, Some(&stranger), json!({"title": "Theirs"}))
        .await;
    let delete_by_stranger = app.send(Method::DELETE, &path, Some(&stranger), None).await;
    let by_admin = app
        .patch(&path, Some(&admin), json!({"title": "Moderated"}))
        .await;

    problem(by_stranger, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    problem(delete_by_stranger, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(by_admin.status(), StatusCode::OK);
}

#[tokio::test]
async fn drafts_are_invisible_to_everyone_but_their_author_and_admins() {
    let app = TestApp::spawn().await;
    let (_, author, _) = app.register("drafter@example.com").await;
    let (_, stranger, _) = app.register("peeker@example.com").await;
    let (_, admin) = app.admin().await;
    let post = app
        .create_post(&author, json!({"title": "Secret", "body": "Draft"}))
        .await;
    let path = format!("/api/v1/posts/{}", post["id"].as_str().unwrap());

    assert_eq!(app.get(&path, Some(&author)).await.status(), StatusCode::OK);
    assert_eq!(app.get(&path, Some(&admin)).await.status(), StatusCode::OK);
    problem(
        app.get(&path, Some(&stranger)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    problem(
        app.get(&path, None).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn publishing_twice_or_unpublishing_a_draft_is_an_invalid_transition() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("twice@example.com").await;
    let post = app
        .create_post(&token, json!({"title": "T", "body": "B"}))
        .await;
    let id = post["id"].as_str().unwrap();

    let unpublish_draft = app
        .post(
            &format!("/api/v1/posts/{id}/unpublish"),
            Some(&token),
            json!({}),
        )
        .await;
    app.post(
        &format!("/api/v1/posts/{id}/publish"),
        Some(&token),
        json!({}),
    )
    .await;
    let publish_again = app
        .post(
            &format!("/api/v1/posts/{id}/publish"),
            Some(&token),
            json!({}),
        )
        .await;

    problem(
        unpublish_draft,
        StatusCode::CONFLICT,
        "INVALID_STATE_TRANSITION",
    )
    .await;
    problem(
        publish_again,
        StatusCode::CONFLICT,
        "INVALID_STATE_TRANSITION",
    )
    .await;
    assert_eq!(app.count_events(id).await, 2);
}

#[tokio::test]
async fn etags_give_304_on_a_matching_if_none_match_and_412_on_a_stale_if_match() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("etag@example.com").await;
    let post = app
        .create_post(
            &token,
            json!({"title": "T", "body": "B", "status": "published"}),
        )
        .await;
    let id = post["id"].as_str().unwrap();
    let path = format!("/api/v1/posts/{id}");

    let first = app.get(&path, None).await;
    let etag = first
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let cached = app
        .request(Method::GET, &path, None)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    let fresh_write = app
        .request(Method::PATCH, &path, Some(&token))
        .header("if-match", &etag)
        .json(&json!({"title": "Second"}))
        .send()
        .await
        .unwrap();
    let stale_write = app
        .request(Method::PATCH, &path, Some(&token))
        .header("if-match", &etag)
        .json(&json!({"title": "Third"}))
        .send()
        .await
        .unwrap();

    assert_eq!(etag, "\"2\"");
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(fresh_write.status(), StatusCode::OK);
    assert_eq!(fresh_write.headers().get("etag").unwrap(), "\"3\"");
    problem(
        stale_write,
        StatusCode::PRECONDITION_FAILED,
        "PRECONDITION_FAILED",
    )
    .await;
    assert_eq!(
        app.count_events(id).await,
        3,
        "the stale write appended nothing"
    );
}

#[tokio::test]
async fn the_request_id_becomes_the_correlation_id_of_the_events() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("trace@example.com").await;

    let response = app
        .request(Method::POST, "/api/v1/posts", Some(&token))
        .header("x-request-id", "client-chosen-id.42")
        .json(&json!({"title": "T", "body": "B"}))
        .send()
        .await
        .unwrap();

    assert_eq!(
        response.headers().get("x-request-id").unwrap(),
        "client-chosen-id.42"
    );
    let id = response.json::<Value>().await.unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let metadata: Value = sqlx::query_scalar("SELECT metadata FROM events WHERE aggregate_id = $1")
        .bind(&id)
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(metadata["correlation_id"], "client-chosen-id.42");
    assert!(metadata["actor_id"].is_string());
}

/// The answer of a command is built from the aggregate's state, not read back: it must still
/// equal every later read of the resource in every field (once said `…04.712572439Z` where the
/// read model said `…04.712572Z`).
#[tokio::test]
async fn a_command_answer_and_the_following_get_are_byte_identical() {
    let app = TestApp::spawn().await;
    let (user_id, token, registered) = app.register("same@example.com").await;
    let created = app
        .post(
            "/api/v1/posts",
            Some(&token),
            json!({"title": "Same", "body": "bytes", "tags": ["b", "a"], "status": "published"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = created.text().await.unwrap();
    let created_json: Value = serde_json::from_str(&created).unwrap();
    let id = created_json["data"]["id"].as_str().unwrap();
    let read = app.get(&format!("/api/v1/posts/{id}"), Some(&token)).await;
    assert_eq!(read.status(), StatusCode::OK);
    let read = read.text().await.unwrap();
    let me = app.get("/api/v1/me", Some(&token)).await;
    let me: Value = me.json().await.unwrap();

    assert_eq!(created, read, "the 201's body and the GET's body differ");
    assert_eq!(
        registered["data"]["user"], me["data"],
        "register's user differs from /me"
    );
    assert_eq!(me["data"]["id"], user_id.as_str());
}
