//! A post's and a user's history and the event log: order, shape, secrets, who may read them.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::client::NewPost;
use crate::helpers::problem;
use crate::reads::{header, id_of, ids, keys, list, position, set, spawn_app};

#[tokio::test]
async fn post_history_lists_the_events_oldest_first_for_the_author_and_admins_only() {
    let app = spawn_app().await;
    let author = app.signed_up("historian").await;
    let stranger = app.signed_up("snoop").await;
    let admin = app.signed_in_admin().await;
    let post = id_of(
        &author
            .create_post(NewPost::draft("First", "B"))
            .await
            .created(),
    );
    author
        .patch_post(&post, json!({"title": "Second"}))
        .await
        .ok();
    author.publish(&post).await.ok();
    admin
        .patch_post(&post, json!({"title": "Moderated"}))
        .await
        .ok();
    let draft = id_of(
        &author
            .create_post(NewPost::draft("Hidden", "B"))
            .await
            .created(),
    );

    let by_author = author.post_history(&post).await;
    let by_admin = admin.post_history(&post).await;
    let by_stranger = stranger.post_history(&post).await;
    let anonymous = app.anonymous().post_history(&post).await;
    let draft_by_stranger = stranger.post_history(&draft).await;
    let unknown = admin.post_history(&uuid::Uuid::now_v7().to_string()).await;
    let deleted = author.delete_post(&post).await;
    let after_delete = author.post_history(&post).await;
    let deleted_by_stranger = stranger.post_history(&post).await;

    let body = by_author.expect(StatusCode::OK);
    let events = body["data"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "post.created",
            "post.updated",
            "post.published",
            "post.updated"
        ]
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            keys(event),
            set(&[
                "id",
                "type",
                "aggregate_type",
                "aggregate_id",
                "aggregate_version",
                "position",
                "recorded_at",
                "data",
                "metadata"
            ])
        );
        assert_eq!(event["aggregate_type"], "post");
        assert_eq!(event["aggregate_id"], post.as_str());
        assert_eq!(event["aggregate_version"], i + 1);
        assert!(event["recorded_at"].is_string());
        assert!(event["metadata"]["correlation_id"].is_string());
        assert_eq!(
            keys(&event["metadata"]),
            set(&["correlation_id", "actor_id"])
        );
    }
    let positions: Vec<(i64, i64)> = events
        .iter()
        .map(|e| position(e["position"].as_str().unwrap()))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(events[0]["data"]["title"], "First");
    assert_eq!(events[1]["data"]["title"], "Second");
    assert_eq!(events[0]["metadata"]["actor_id"], author.id.as_str());
    assert_eq!(events[3]["metadata"]["actor_id"], admin.id.as_str());
    assert_eq!(by_admin.expect(StatusCode::OK), body);
    by_stranger.problem("FORBIDDEN");
    anonymous.problem("UNAUTHORIZED");
    draft_by_stranger.problem("NOT_FOUND");
    unknown.problem("NOT_FOUND");
    deleted.no_content();
    let after = after_delete.ok();
    assert_eq!(after.as_array().unwrap().len(), 5);
    assert_eq!(after[4]["type"], "post.deleted");
    deleted_by_stranger.problem("NOT_FOUND");
    app.finish().await;
}

#[tokio::test]
async fn user_history_shows_the_users_events_without_any_secret() {
    let app = spawn_app().await;
    let (id, token, _) = app.register("memoir@example.com").await;
    let (_, other, _) = app.register("other@example.com").await;
    let (_, admin) = app.admin().await;
    assert_eq!(
        app.patch(
            &format!("/api/v1/users/{id}"),
            Some(&token),
            json!({"bio": "Now with a bio"})
        )
        .await
        .status(),
        StatusCode::OK
    );
    let changed = app
        .post(
            &format!("/api/v1/users/{id}/password"),
            Some(&token),
            json!({"current_password": "correct horse battery",
                   "new_password": "a brand new secret"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let path = format!("/api/v1/users/{id}/history");

    let by_self = app.get(&path, Some(&token)).await;
    let by_admin = app.get(&path, Some(&admin)).await;
    let by_other = app.get(&path, Some(&other)).await;
    let anonymous = app.get(&path, None).await;
    let unknown = app
        .get(
            &format!("/api/v1/users/{}/history", uuid::Uuid::now_v7()),
            Some(&admin),
        )
        .await;

    assert_eq!(by_self.status(), StatusCode::OK);
    let text = by_self.text().await.unwrap();
    for secret in ["password_hash", "refresh_token_hash", "$argon2"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    let events = body["data"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "user.registered",
            "user.email_verification_requested",
            "user.updated",
            "user.password_changed"
        ]
    );
    assert!(events.iter().all(|e| e["aggregate_id"] == id.as_str()
        && e["aggregate_type"] == "user"
        && e["metadata"]["actor_id"] == id.as_str()));
    assert_eq!(events[0]["data"]["email"], "memoir@example.com");
    assert_eq!(events[2]["data"]["bio"], "Now with a bio");
    assert_eq!(by_admin.status(), StatusCode::OK);
    assert_eq!(by_admin.json::<Value>().await.unwrap(), body);
    problem(by_other, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    problem(unknown, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    app.finish().await;
}

#[tokio::test]
async fn the_event_log_pages_with_after_filters_by_type_and_is_for_admins_only() {
    let app = spawn_app().await;
    let (_, admin) = app.admin().await;
    let (_, token, _) = app.register("logger@example.com").await;
    let mut published = HashSet::new();
    for (i, status) in ["published", "draft", "published"].into_iter().enumerate() {
        let post = app
            .create_post(
                &token,
                json!({"title": format!("Log {i}"), "body": "B", "status": status}),
            )
            .await;
        if status == "published" {
            published.insert(id_of(&post));
        }
    }

    let everything = app
        .request(Method::GET, "/api/v1/events?limit=1000", Some(&admin))
        .send()
        .await
        .unwrap();
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut params = vec![("limit", "3")];
        if let Some(after) = &after {
            params.push(("after", after));
        }
        let page = list(&app, "/api/v1/events", &params, Some(&admin)).await;
        after = page["pagination"]["next_cursor"]
            .as_str()
            .map(str::to_owned);
        pages.push(page);
        if after.is_none() || pages.len() > 50 {
            break;
        }
    }
    let by_type = list(
        &app,
        "/api/v1/events",
        &[("event_type", "post.published")],
        Some(&admin),
    )
    .await;
    let first_published = list(
        &app,
        "/api/v1/events",
        &[("event_type", "post.published"), ("limit", "1")],
        Some(&admin),
    )
    .await;
    let next_token = first_published["pagination"]["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let second_published = list(
        &app,
        "/api/v1/events",
        &[
            ("event_type", "post.published"),
            ("limit", "1"),
            ("after", &next_token),
        ],
        Some(&admin),
    )
    .await;
    let by_aggregate = list(
        &app,
        "/api/v1/events",
        &[("aggregate_type", "post")],
        Some(&admin),
    )
    .await;
    let by_user = app.get("/api/v1/events", Some(&token)).await;
    let anonymous = app.get("/api/v1/events", None).await;

    assert_eq!(everything.status(), StatusCode::OK);
    let text = everything.text().await.unwrap();
    for secret in ["password_hash", "refresh_token_hash", "$argon2"] {
        assert!(!text.contains(secret), "{secret} in the log");
    }
    let everything: Value = serde_json::from_str(&text).unwrap();
    let all = everything["data"].as_array().unwrap();
    assert_eq!(everything["pagination"]["has_more"], false);
    let positions: Vec<(i64, i64)> = all
        .iter()
        .map(|e| position(e["position"].as_str().unwrap()))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "commit order");
    let paged: Vec<String> = pages.iter().flat_map(ids).collect();
    assert_eq!(
        paged,
        ids(&everything),
        "paging with after= loses and repeats nothing"
    );
    for page in &pages[..pages.len() - 1] {
        assert_eq!(page["pagination"]["has_more"], true);
        assert_eq!(
            page["pagination"]["next_cursor"], page["data"][2]["position"],
            "the cursor is the last item's position"
        );
    }
    let published_events = by_type["data"].as_array().unwrap();
    assert_eq!(published_events.len(), 2);
    assert!(published_events
        .iter()
        .all(|e| e["type"] == "post.published"));
    let published_ids: HashSet<String> = published_events
        .iter()
        .map(|e| e["aggregate_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(published_ids, published);
    assert_eq!(first_published["pagination"]["has_more"], true);
    assert_eq!(ids(&first_published), vec![id_of(&published_events[0])]);
    assert_eq!(ids(&second_published), vec![id_of(&published_events[1])]);
    assert_eq!(second_published["pagination"]["has_more"], false);
    let post_events = by_aggregate["data"].as_array().unwrap();
    assert_eq!(post_events.len(), 5, "3 created, 2 published");
    assert!(post_events.iter().all(|e| e["aggregate_type"] == "post"));
    problem(by_user, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    app.finish().await;
}

#[tokio::test]
async fn history_and_the_event_log_take_and_report_a_chronicle_position_like_every_query() {
    let app = spawn_app().await;
    let (user_id, token, _) = app.register("positions@example.com").await;
    let (_, admin) = app.admin().await;
    let post = id_of(
        &app.create_post(&token, json!({"title": "T", "body": "B"}))
            .await,
    );
    let paths = [
        format!("/api/v1/posts/{post}/history"),
        format!("/api/v1/users/{user_id}/history"),
        "/api/v1/events".to_owned(),
    ];

    let mut plain = Vec::new();
    let mut garbage = Vec::new();
    for path in &paths {
        plain.push(app.get(path, Some(&admin)).await);
        garbage.push(
            app.request(Method::GET, path, Some(&admin))
                .header("chronicle-min-position", "soon")
                .send()
                .await
                .unwrap(),
        );
    }

    for ((path, plain), garbage) in paths.iter().zip(plain).zip(garbage) {
        assert_eq!(plain.status(), StatusCode::OK, "{path}");
        assert!(
            header(&plain, "chronicle-position").is_some(),
            "{path} carries Chronicle-Position"
        );
        assert_eq!(garbage.status(), StatusCode::BAD_REQUEST, "{path}");
    }
    app.finish().await;
}
