//! Offset and cursor pagination: totals, pages past the end, and a cursor walk under writes.

use std::collections::HashSet;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::client::NewPost;
use crate::reads::{id_of, ids, list, spawn_app};

#[tokio::test]
async fn offset_pages_report_totals_and_a_page_past_the_end_is_empty() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("pages@example.com").await;
    let mut published = Vec::new();
    for i in 0..5 {
        let tags = if i % 2 == 0 {
            json!(["even"])
        } else {
            json!([])
        };
        let post = app
            .create_post(
                &token,
                json!({"title": format!("P{i}"), "body": "B", "tags": tags, "status": "published"}),
            )
            .await;
        published.push(id_of(&post));
    }
    app.create_post(
        &token,
        json!({"title": "Draft", "body": "B", "tags": ["even"]}),
    )
    .await;
    let newest_first: Vec<String> = published.iter().rev().cloned().collect();

    let mut pages = Vec::new();
    for n in ["1", "2", "3", "4", "999"] {
        pages.push(list(&app, "/api/v1/posts", &[("page", n), ("limit", "2")], None).await);
    }
    let [first, second, third, past, far_past] = <[Value; 5]>::try_from(pages).unwrap();
    let filtered = list(
        &app,
        "/api/v1/posts",
        &[("page", "1"), ("limit", "1"), ("tag", "even")],
        Some(&token),
    )
    .await;
    let empty = list(
        &app,
        "/api/v1/posts",
        &[("page", "1"), ("tag", "missing")],
        None,
    )
    .await;
    let cursor_mode = list(&app, "/api/v1/posts", &[], None).await;

    assert_eq!(
        first["pagination"],
        json!({"page": 1, "limit": 2, "total": 5, "total_pages": 3})
    );
    assert_eq!(
        third["pagination"],
        json!({"page": 3, "limit": 2, "total": 5, "total_pages": 3})
    );
    let mut all = ids(&first);
    all.extend(ids(&second));
    all.extend(ids(&third));
    assert_eq!(all, newest_first);
    assert_eq!(ids(&past), Vec::<String>::new());
    assert_eq!(
        past["pagination"],
        json!({"page": 4, "limit": 2, "total": 5, "total_pages": 3})
    );
    assert_eq!(ids(&far_past), Vec::<String>::new());
    assert_eq!(
        filtered["pagination"],
        json!({"page": 1, "limit": 1, "total": 3, "total_pages": 3}),
        "the draft does not count"
    );
    assert_eq!(ids(&filtered), vec![published[4].clone()]);
    assert_eq!(
        empty["pagination"],
        json!({"page": 1, "limit": 20, "total": 0, "total_pages": 0})
    );
    assert_eq!(
        cursor_mode["pagination"],
        json!({"limit": 20, "next_cursor": null, "has_more": false})
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cursor_walk_sees_each_post_once_while_new_posts_keep_arriving() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("walker@example.com").await;
    let mut originals = Vec::new();
    for chunk in 0..10 {
        let batch = join_all((0..10).map(|i| {
            app.create_post(
                &token,
                json!({"title": format!("Post {chunk}-{i}"), "body": "B", "status": "published"}),
            )
        }))
        .await;
        originals.extend(batch);
    }
    let mut expected: Vec<(String, String)> = originals
        .iter()
        .map(|p| (p["created_at"].as_str().unwrap().to_owned(), id_of(p)))
        .collect();
    let client = app.client.clone();
    let url = app.url("/api/v1/posts");
    let writer_token = token.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let mut created = 0;
        loop {
            let response = client
                .post(&url)
                .bearer_auth(&writer_token)
                .json(&json!({"title": "Late", "body": "B", "status": "published"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            created += 1;
            if stop_rx.try_recv().is_ok() {
                return created;
            }
        }
    });

    let mut walked: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let mut created_between = 0;
    loop {
        let mut params = vec![("limit", "7")];
        if let Some(cursor) = &cursor {
            params.push(("cursor", cursor));
        }
        let body = list(&app, "/api/v1/posts", &params, None).await;
        pages += 1;
        assert!(body["data"].as_array().unwrap().len() <= 7);
        walked.extend(body["data"].as_array().unwrap().iter().cloned());
        // Some posts land between every two page fetches, whatever the writer task is doing.
        join_all((0..2).map(|_| {
            app.create_post(
                &token,
                json!({"title": "Between", "body": "B", "status": "published"}),
            )
        }))
        .await;
        created_between += 2;
        match body["pagination"]["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 100, "the walk does not end");
    }
    stop_tx.send(()).unwrap();
    let created_meanwhile = writer.await.unwrap() + created_between;
    let total_now = list(&app, "/api/v1/posts", &[("page", "1")], None).await["pagination"]
        ["total"]
        .as_i64()
        .unwrap();

    assert!(created_meanwhile > 2, "posts were created during the walk");
    assert_eq!(total_now, 100 + created_meanwhile);
    assert_eq!(pages, 15, "100 posts at 7 a page");
    let walked_ids: Vec<String> = walked.iter().map(id_of).collect();
    let unique: HashSet<&String> = walked_ids.iter().collect();
    assert_eq!(unique.len(), walked_ids.len(), "no post twice");
    let keys: Vec<(chrono::DateTime<chrono::Utc>, String)> = walked
        .iter()
        .map(|p| (p["created_at"].as_str().unwrap().parse().unwrap(), id_of(p)))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first (created_at, then id)"
    );
    expected.sort_by(|x, y| {
        let parse = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        (parse(&y.0), &y.1).cmp(&(parse(&x.0), &x.1))
    });
    let expected_ids: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        walked_ids, expected_ids,
        "exactly the original 100, each once"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_page_number_far_past_the_end_is_an_empty_page_or_past_reach_a_400_never_a_500() {
    let app = spawn_app().await;
    let author = app.signed_up("far").await;
    let anonymous = app.anonymous();
    author
        .create_post(NewPost::published("Only", "B"))
        .await
        .created();

    let response = anonymous
        .get_with("/api/v1/posts", &[("page", "100"), ("limit", "100")])
        .await;
    let beyond = anonymous
        .get_with(
            "/api/v1/posts",
            &[("page", "9223372036854775807"), ("limit", "100")],
        )
        .await;

    let body = response.expect(StatusCode::OK);
    assert_eq!(ids(&body), Vec::<String>::new());
    assert_eq!(body["pagination"]["total"], 1);
    let body = beyond.problem("MALFORMED_REQUEST");
    assert_eq!(body["errors"][0]["field"], "page");
    app.finish().await;
}
