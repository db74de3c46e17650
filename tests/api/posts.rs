use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::client::{App, NewPost};

#[tokio::test]
async fn a_post_goes_from_draft_to_published_to_draft_to_deleted() {
    let app = App::spawn().await;
    let author = app.signed_up("author").await;

    let created = author
        .create_post(NewPost::draft("Hello", "World").tags(&["rust", "es"]))
        .await
        .created();
    let id = created["id"].as_str().unwrap();
    let published = author.publish(id).await.ok();
    let unpublished = author.unpublish(id).await.ok();
    let deleted = author.delete_post(id).await;
    let after = author.get_post(id).await;

    assert_eq!(created["author_id"], author.id.as_str());
    assert_eq!(created["status"], "draft");
    assert_eq!(created["tags"], json!(["rust", "es"]));
    assert_eq!(created["version"], 1);
    assert_eq!(published["status"], "published");
    assert!(published["published_at"].is_string());
    assert_eq!(unpublished["status"], "draft");
    deleted.no_content();
    after.problem("NOT_FOUND");
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
    app.finish().await;
}

#[tokio::test]
async fn creating_a_published_post_appends_created_then_published() {
    let app = App::spawn().await;
    let author = app.signed_up("pub").await;

    let created = author
        .create_post(NewPost::published("Now", "Live"))
        .await
        .created();

    assert_eq!(created["status"], "published");
    assert_eq!(created["version"], 2);
    let anonymous = app
        .anonymous()
        .get_post(created["id"].as_str().unwrap())
        .await;
    assert_eq!(anonymous.status(), StatusCode::OK);
    app.finish().await;
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_put_replaces_all() {
    let app = App::spawn().await;
    let editor = app.signed_up("editor").await;
    let post = editor
        .create_post(NewPost::draft("Old", "Body").tags(&["a"]))
        .await
        .created();
    let id = post["id"].as_str().unwrap();

    let patched = editor.patch_post(id, json!({"title": "New"})).await.ok();
    let replaced = editor
        .put_post(id, json!({"title": "T", "body": "B", "tags": []}))
        .await
        .ok();

    assert_eq!(patched["title"], "New");
    assert_eq!(patched["body"], "Body");
    assert_eq!(patched["tags"], json!(["a"]));
    assert_eq!(patched["version"], 2);
    assert_eq!(replaced["title"], "T");
    assert_eq!(replaced["tags"], json!([]));
    assert_eq!(replaced["version"], 3);
    app.finish().await;
}

#[tokio::test]
async fn another_user_cannot_edit_a_post_but_an_admin_can() {
    let app = App::spawn().await;
    let author = app.signed_up("owner").await;
    let stranger = app.signed_up("stranger").await;
    let admin = app.signed_in_admin().await;
    let post = author
        .create_post(NewPost::published("Mine", "Body"))
        .await
        .created();
    let id = post["id"].as_str().unwrap();

    let by_stranger = stranger.patch_post(id, json!({"title": "Theirs"})).await;
    let delete_by_stranger = stranger.delete_post(id).await;
    let by_admin = admin.patch_post(id, json!({"title": "Moderated"})).await;

    by_stranger.problem("FORBIDDEN");
    delete_by_stranger.problem("FORBIDDEN");
    assert_eq!(by_admin.status(), StatusCode::OK);
    app.finish().await;
}

#[tokio::test]
async fn drafts_are_invisible_to_everyone_but_their_author_and_admins() {
    let app = App::spawn().await;
    let author = app.signed_up("drafter").await;
    let stranger = app.signed_up("peeker").await;
    let admin = app.signed_in_admin().await;
    let post = author
        .create_post(NewPost::draft("Secret", "Draft"))
        .await
        .created();
    let id = post["id"].as_str().unwrap();

    assert_eq!(author.get_post(id).await.status(), StatusCode::OK);
    assert_eq!(admin.get_post(id).await.status(), StatusCode::OK);
    stranger.get_post(id).await.problem("NOT_FOUND");
    app.anonymous().get_post(id).await.problem("NOT_FOUND");
    app.finish().await;
}

#[tokio::test]
async fn publishing_twice_or_unpublishing_a_draft_is_an_invalid_transition() {
    let app = App::spawn().await;
    let author = app.signed_up("twice").await;
    let post = author.create_post(NewPost::draft("T", "B")).await.created();
    let id = post["id"].as_str().unwrap();

    let unpublish_draft = author.unpublish(id).await;
    author.publish(id).await;
    let publish_again = author.publish(id).await;

    unpublish_draft.problem("INVALID_STATE_TRANSITION");
    publish_again.problem("INVALID_STATE_TRANSITION");
    assert_eq!(app.count_events(id).await, 2);
    app.finish().await;
}

#[tokio::test]
async fn etags_give_304_on_a_matching_if_none_match_and_412_on_a_stale_if_match() {
    let app = App::spawn().await;
    let author = app.signed_up("etag").await;
    let anonymous = app.anonymous();
    let post = author
        .create_post(NewPost::published("T", "B"))
        .await
        .created();
    let id = post["id"].as_str().unwrap();
    let path = format!("/api/v1/posts/{id}");

    let etag = anonymous.get(&path).await.header("etag").unwrap();
    let cached = anonymous
        .send(
            anonymous
                .request(Method::GET, &path)
                .header("if-none-match", &etag),
        )
        .await;
    let fresh_write = author
        .send(
            author
                .request(Method::PATCH, &path)
                .header("if-match", &etag)
                .json(&json!({"title": "Second"})),
        )
        .await;
    let stale_write = author
        .send(
            author
                .request(Method::PATCH, &path)
                .header("if-match", &etag)
                .json(&json!({"title": "Third"})),
        )
        .await;

    assert_eq!(etag, "\"2\"");
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(fresh_write.status(), StatusCode::OK);
    assert_eq!(fresh_write.header("etag").unwrap(), "\"3\"");
    stale_write.problem("PRECONDITION_FAILED");
    assert_eq!(
        app.count_events(id).await,
        3,
        "the stale write appended nothing"
    );
    app.finish().await;
}

#[tokio::test]
async fn the_request_id_becomes_the_correlation_id_of_the_events() {
    let app = App::spawn().await;
    let author = app.signed_up("trace").await;

    let response = author
        .send(
            author
                .request(Method::POST, "/api/v1/posts")
                .header("x-request-id", "client-chosen-id.42")
                .json(&json!({"title": "T", "body": "B"})),
        )
        .await;

    assert_eq!(
        response.header("x-request-id").unwrap(),
        "client-chosen-id.42"
    );
    let id = response.json()["data"]["id"].as_str().unwrap().to_owned();
    let metadata: Value = sqlx::query_scalar("SELECT metadata FROM events WHERE aggregate_id = $1")
        .bind(&id)
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(metadata["correlation_id"], "client-chosen-id.42");
    assert!(metadata["actor_id"].is_string());
    app.finish().await;
}

/// The answer of a command is built from the aggregate's state, not read back: it must still
/// equal every later read of the resource in every field (once said `…04.712572439Z` where the
/// read model said `…04.712572Z`).
#[tokio::test]
async fn a_command_answer_and_the_following_get_are_byte_identical() {
    let app = App::spawn().await;
    let (user_id, token, registered) = app.register("same@example.com").await;
    let user = app.signed_in(user_id.clone(), token);
    let created = user
        .create_post(
            json!({"title": "Same", "body": "bytes", "tags": ["b", "a"], "status": "published"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created_json = created.json();
    let id = created_json["data"]["id"].as_str().unwrap();
    let read = user.get_post(id).await;
    assert_eq!(read.status(), StatusCode::OK);
    let me = user.get("/api/v1/me").await.json();

    assert_eq!(
        created.text(),
        read.text(),
        "the 201's body and the GET's body differ"
    );
    assert_eq!(
        registered["data"]["user"], me["data"],
        "register's user differs from /me"
    );
    assert_eq!(me["data"]["id"], user_id.as_str());
    app.finish().await;
}
