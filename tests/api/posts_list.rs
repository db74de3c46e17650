//! Post lists: every filter, every sort and its tie-breaks, sparse fields, and an author's list.

use std::collections::HashMap;

use serde_json::json;

use crate::reads::{id_of, ids, keys, list, publish, set, spawn_app, walk, Params};

#[tokio::test]
async fn every_post_filter_returns_exactly_the_matching_posts() {
    let app = spawn_app().await;
    let (alice_id, alice, _) = app.register("alice@example.com").await;
    let (bob_id, bob, _) = app.register("bob@example.com").await;
    let (_, stranger, _) = app.register("stranger@example.com").await;
    let (_, admin) = app.admin().await;
    let rust = app
        .create_post(
            &alice,
            json!({"title": "Ownership in Rust", "body": "The borrow checker explained",
                   "tags": ["rust"], "status": "published"}),
        )
        .await;
    let go = app
        .create_post(
            &alice,
            json!({"title": "Goroutines", "body": "Channels keep running",
                   "tags": ["go"], "status": "published"}),
        )
        .await;
    let alice_draft = app
        .create_post(
            &alice,
            json!({"title": "Unfinished ownership notes", "body": "Draft", "tags": ["rust"]}),
        )
        .await;
    let web = app
        .create_post(
            &bob,
            json!({"title": "Web servers", "body": "Axum routing and ownership of state",
                   "tags": ["rust", "web"], "status": "published"}),
        )
        .await;
    let bob_draft = app
        .create_post(
            &bob,
            json!({"title": "Bob's draft", "body": "Secret ownership", "tags": ["web"]}),
        )
        .await;
    let [rust, go, alice_draft, web, bob_draft] =
        [&rust, &go, &alice_draft, &web, &bob_draft].map(id_of);
    let created_at: HashMap<String, String> = list(&app, "/api/v1/posts", &[], None).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (id_of(p), p["created_at"].as_str().unwrap().to_owned()))
        .collect();
    let (rust_at, web_at) = (&created_at[&rust], &created_at[&web]);
    let cases: Vec<(Params, Option<&str>, Vec<&String>)> = vec![
        (vec![], None, vec![&web, &go, &rust]),
        (vec![], Some(&alice), vec![&web, &go, &rust]),
        (
            vec![("status", "published")],
            Some(&bob),
            vec![&web, &go, &rust],
        ),
        (vec![("status", "draft")], Some(&alice), vec![&alice_draft]),
        (vec![("status", "draft")], Some(&bob), vec![&bob_draft]),
        (vec![("status", "draft")], Some(&stranger), vec![]),
        (vec![("status", "draft")], Some(&admin), vec![]),
        (vec![("status", "draft")], None, vec![]),
        (vec![("author_id", &alice_id)], None, vec![&go, &rust]),
        (vec![("author_id", &bob_id)], Some(&bob), vec![&web]),
        (
            vec![("author_id", &alice_id), ("status", "draft")],
            Some(&alice),
            vec![&alice_draft],
        ),
        (
            vec![("author_id", &alice_id), ("status", "draft")],
            Some(&bob),
            vec![],
        ),
        (vec![("tag", "rust")], None, vec![&web, &rust]),
        (vec![("tag", "go")], None, vec![&go]),
        (vec![("tag", "web")], Some(&bob), vec![&web]),
        (vec![("tag", "nope")], None, vec![]),
        (
            vec![("tag", "rust"), ("author_id", &bob_id)],
            None,
            vec![&web],
        ),
        (vec![("q", "ownership")], None, vec![&web, &rust]),
        (vec![("q", "OWNERSHIP")], Some(&stranger), vec![&web, &rust]),
        (vec![("q", "run")], None, vec![&go]),
        (vec![("q", "borrow checker")], None, vec![&rust]),
        (vec![("q", "ownership -rust")], None, vec![&web]),
        (
            vec![("q", "ownership"), ("status", "draft")],
            Some(&alice),
            vec![&alice_draft],
        ),
        (vec![("q", "kubernetes")], None, vec![]),
        (vec![("created_after", rust_at)], None, vec![&web, &go]),
        (vec![("created_before", web_at)], None, vec![&go, &rust]),
        (
            vec![("created_after", rust_at), ("created_before", web_at)],
            None,
            vec![&go],
        ),
        (vec![("created_after", web_at)], None, vec![]),
        (
            vec![("created_after", "2000-01-01T00:00:00+00:00")],
            None,
            vec![&web, &go, &rust],
        ),
    ];

    let mut results = Vec::new();
    for (params, token, _) in &cases {
        results.push(ids(&list(&app, "/api/v1/posts", params, *token).await));
    }

    for ((params, token, expected), got) in cases.iter().zip(results) {
        let expected: Vec<String> = expected.iter().map(|s| (*s).clone()).collect();
        assert_eq!(
            got,
            expected,
            "{params:?} as {}",
            if token.is_some() {
                "a user"
            } else {
                "anonymous"
            }
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn every_post_sort_field_orders_both_ways_and_cursors_keep_that_order() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("sorter@example.com").await;
    let a = id_of(
        &app.create_post(&token, json!({"title": "banana", "body": "A"}))
            .await,
    );
    let b = id_of(
        &app.create_post(&token, json!({"title": "cherry", "body": "B"}))
            .await,
    );
    let c = id_of(
        &app.create_post(&token, json!({"title": "apple", "body": "C"}))
            .await,
    );
    for id in [&b, &c, &a] {
        publish(&app, &token, id).await;
    }
    let cases = [
        ("created_at", [&a, &b, &c]),
        ("-created_at", [&c, &b, &a]),
        ("published_at", [&b, &c, &a]),
        ("-published_at", [&a, &c, &b]),
        ("title", [&c, &a, &b]),
        ("-title", [&b, &a, &c]),
    ];

    let mut whole = Vec::new();
    let mut walked = Vec::new();
    for (sort, _) in &cases {
        whole.push(ids(
            &list(&app, "/api/v1/posts", &[("sort", sort)], None).await
        ));
        let items = walk(
            &app,
            "/api/v1/posts",
            &[("sort", sort), ("limit", "1")],
            None,
        )
        .await;
        walked.push(items.iter().map(id_of).collect::<Vec<_>>());
    }

    for (((sort, expected), whole), walked) in cases.iter().zip(whole).zip(walked) {
        let expected: Vec<String> = expected.iter().map(|s| (*s).clone()).collect();
        assert_eq!(whole, expected, "sort={sort}");
        assert_eq!(walked, expected, "sort={sort}, one page at a time");
    }
    app.finish().await;
}

#[tokio::test]
async fn title_ties_break_by_id_in_the_first_keys_direction_or_by_a_second_key_in_its_own() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("multi@example.com").await;
    let mut posts = Vec::new();
    for title in ["same", "alpha", "same", "zeta", "same"] {
        let post = app
            .create_post(
                &token,
                json!({"title": title, "body": "B", "status": "published"}),
            )
            .await;
        posts.push(id_of(&post));
    }
    let [p1, p2, p3, p4, p5] = [0, 1, 2, 3, 4].map(|i| posts[i].clone());
    let cases = [
        ("title", vec![&p2, &p1, &p3, &p5, &p4]),
        ("-title", vec![&p4, &p5, &p3, &p1, &p2]),
        ("title,-created_at", vec![&p2, &p5, &p3, &p1, &p4]),
        ("title,created_at", vec![&p2, &p1, &p3, &p5, &p4]),
        ("-title,created_at", vec![&p4, &p1, &p3, &p5, &p2]),
        ("-title,-created_at", vec![&p4, &p5, &p3, &p1, &p2]),
    ];

    let mut whole = Vec::new();
    let mut walked = Vec::new();
    for (sort, _) in &cases {
        whole.push(ids(
            &list(&app, "/api/v1/posts", &[("sort", sort)], None).await
        ));
        let items = walk(
            &app,
            "/api/v1/posts",
            &[("sort", sort), ("limit", "2")],
            None,
        )
        .await;
        walked.push(items.iter().map(id_of).collect::<Vec<_>>());
    }

    for (((sort, expected), whole), walked) in cases.iter().zip(whole).zip(walked) {
        let expected: Vec<String> = expected.iter().map(|s| (*s).clone()).collect();
        assert_eq!(whole, expected, "sort={sort}");
        assert_eq!(walked, expected, "sort={sort}, two at a time");
    }
    app.finish().await;
}

#[tokio::test]
async fn fields_cuts_every_item_to_the_requested_fields_and_the_id() {
    let app = spawn_app().await;
    let (author_id, token, _) = app.register("fields@example.com").await;
    let (_, admin) = app.admin().await;
    for title in ["One", "Two"] {
        app.create_post(
            &token,
            json!({"title": title, "body": "Body", "tags": ["x"], "status": "published"}),
        )
        .await;
    }

    let id_and_title = list(&app, "/api/v1/posts", &[("fields", "id,title")], None).await;
    let title_only = list(&app, "/api/v1/posts", &[("fields", "title")], None).await;
    let offset = list(
        &app,
        "/api/v1/posts",
        &[("fields", "id,title"), ("page", "1")],
        None,
    )
    .await;
    let by_author = list(
        &app,
        &format!("/api/v1/users/{author_id}/posts"),
        &[("fields", "title,tags")],
        Some(&token),
    )
    .await;
    let users = list(&app, "/api/v1/users", &[("fields", "email")], Some(&admin)).await;
    let everything = list(&app, "/api/v1/posts", &[], None).await;

    for body in [&id_and_title, &title_only, &offset] {
        let items = body["data"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{body}");
        for item in items {
            assert_eq!(keys(item), set(&["id", "title"]), "{item}");
        }
    }
    assert_eq!(id_and_title["data"][0]["title"], "Two");
    for item in by_author["data"].as_array().unwrap() {
        assert_eq!(keys(item), set(&["id", "title", "tags"]), "{item}");
    }
    for item in users["data"].as_array().unwrap() {
        assert_eq!(keys(item), set(&["id", "email"]), "{item}");
    }
    assert_eq!(
        keys(&everything["data"][0]),
        set(&[
            "id",
            "author_id",
            "title",
            "body",
            "tags",
            "status",
            "created_at",
            "updated_at",
            "published_at",
            "version"
        ])
    );
    app.finish().await;
}

#[tokio::test]
async fn an_authors_post_list_shows_drafts_only_to_the_author_and_admins() {
    let app = spawn_app().await;
    let (author_id, author, _) = app.register("writer@example.com").await;
    let (_, stranger, _) = app.register("reader@example.com").await;
    let (_, admin) = app.admin().await;
    let published = id_of(
        &app.create_post(
            &author,
            json!({"title": "Out", "body": "B", "status": "published"}),
        )
        .await,
    );
    let draft = id_of(
        &app.create_post(&author, json!({"title": "In progress", "body": "B"}))
            .await,
    );
    app.create_post(
        &stranger,
        json!({"title": "Someone else's", "body": "B", "status": "published"}),
    )
    .await;
    let path = format!("/api/v1/users/{author_id}/posts");
    let cases: Vec<(Option<&str>, Params, Vec<&String>)> = vec![
        (None, vec![], vec![&published]),
        (None, vec![("status", "draft")], vec![]),
        (Some(&stranger), vec![], vec![&published]),
        (Some(&stranger), vec![("status", "draft")], vec![]),
        (
            Some(&stranger),
            vec![("status", "published")],
            vec![&published],
        ),
        (Some(&author), vec![], vec![&draft, &published]),
        (Some(&author), vec![("status", "draft")], vec![&draft]),
        (
            Some(&author),
            vec![("status", "published")],
            vec![&published],
        ),
        (Some(&admin), vec![], vec![&draft, &published]),
        (Some(&admin), vec![("status", "draft")], vec![&draft]),
        (
            Some(&author),
            vec![("sort", "published_at")],
            vec![&draft, &published],
        ),
        (
            Some(&author),
            vec![("sort", "-published_at")],
            vec![&published, &draft],
        ),
    ];

    let mut results = Vec::new();
    for (token, params, _) in &cases {
        results.push(ids(&list(&app, &path, params, *token).await));
    }
    let walked = walk(
        &app,
        &path,
        &[("sort", "published_at"), ("limit", "1")],
        Some(&author),
    )
    .await;
    let nobody = list(
        &app,
        &format!("/api/v1/users/{}/posts", uuid::Uuid::now_v7()),
        &[],
        Some(&admin),
    )
    .await;

    for ((token, params, expected), got) in cases.iter().zip(results) {
        let expected: Vec<String> = expected.iter().map(|s| (*s).clone()).collect();
        let who = match token {
            None => "anonymous",
            Some(t) if *t == author.as_str() => "the author",
            Some(t) if *t == admin.as_str() => "an admin",
            Some(_) => "a stranger",
        };
        assert_eq!(got, expected, "{params:?} as {who}");
    }
    assert_eq!(
        walked.iter().map(id_of).collect::<Vec<_>>(),
        vec![draft, published],
        "drafts first ascending, one page at a time"
    );
    assert_eq!(ids(&nobody), Vec::<String>::new());
    app.finish().await;
}
