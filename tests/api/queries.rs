//! The read side over HTTP: list filters, sorts, fields, offset and cursor pagination, strict
//! query parameters, history and event endpoints, `/me`, and read-your-writes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::future::join_all;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{problem, TestApp};

/// Query parameters, in order.
type Params<'a> = Vec<(&'a str, &'a str)>;

/// A server whose rate limits stay out of the way of tests that make many requests.
async fn spawn_app() -> TestApp {
    TestApp::spawn_with(&[
        ("RATE_LIMIT_PER_MINUTE", "100000"),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1000"),
    ])
    .await
}

/// Registers a user with a chosen name; returns (user id, access token).
async fn register_as(app: &TestApp, email: &str, name: &str) -> (String, String) {
    let response = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": "correct horse battery", "name": name}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "registering {email}"
    );
    let body: Value = response.json().await.unwrap();
    (
        body["data"]["user"]["id"].as_str().unwrap().to_owned(),
        body["data"]["access_token"].as_str().unwrap().to_owned(),
    )
}

/// Signs in again; returns (access token, the whole response).
async fn login(app: &TestApp, email: &str, user_agent: &str) -> Response {
    app.request(Method::POST, "/api/v1/auth/login", None)
        .header("user-agent", user_agent)
        .json(&json!({"email": email, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
}

/// GET with query parameters (encoded by the client), any status.
async fn get_with(
    app: &TestApp,
    path: &str,
    params: &[(&str, &str)],
    token: Option<&str>,
) -> Response {
    app.request(Method::GET, path, token)
        .query(params)
        .send()
        .await
        .unwrap()
}

/// GET a list that must answer 200; returns the body.
async fn list(app: &TestApp, path: &str, params: &[(&str, &str)], token: Option<&str>) -> Value {
    let response = get_with(app, path, params, token).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "GET {path} {params:?}: {body}");
    body
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {body}"))
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

fn id_of(item: &Value) -> String {
    item["id"].as_str().unwrap().to_owned()
}

/// Follows `next_cursor` from the first page to the last; returns every item in order.
async fn walk(
    app: &TestApp,
    path: &str,
    params: &[(&str, &str)],
    token: Option<&str>,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut query: Vec<(&str, &str)> = params.to_vec();
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let body = list(app, path, &query, token).await;
        items.extend(body["data"].as_array().unwrap().iter().cloned());
        let next = body["pagination"]["next_cursor"]
            .as_str()
            .map(str::to_owned);
        assert_eq!(
            body["pagination"]["has_more"],
            next.is_some(),
            "has_more agrees with next_cursor: {}",
            body["pagination"]
        );
        match next {
            Some(next) => cursor = Some(next),
            None => return items,
        }
    }
    panic!("the walk over {path} {params:?} never ended");
}

async fn publish(app: &TestApp, token: &str, id: &str) {
    let response = app
        .post(
            &format!("/api/v1/posts/{id}/publish"),
            Some(token),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// A position token as its ordered parts.
fn position(token: &str) -> (i64, i64) {
    let (tx, pos) = token
        .split_once('.')
        .unwrap_or_else(|| panic!("a position token: {token:?}"));
    (tx.parse().unwrap(), pos.parse().unwrap())
}

/// A command answer that waited for its read models: a position, no `X-Consistency`.
fn assert_fresh(response: &Response, what: &str) {
    assert!(
        response.status().is_success(),
        "{what}: {}",
        response.status()
    );
    assert_eq!(header(response, "x-consistency"), None, "{what}");
    assert!(
        header(response, "chronicle-position").is_some(),
        "{what} carries Chronicle-Position"
    );
}

/// The session id (`sid` claim) of an access token.
fn session_of(access_token: &str) -> String {
    let payload = access_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

fn keys(item: &Value) -> HashSet<String> {
    item.as_object().unwrap().keys().cloned().collect()
}

fn set(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

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
}

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
}

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
}

#[tokio::test]
async fn admins_list_users_by_role_status_time_and_text_and_users_may_not() {
    let app = spawn_app().await;
    let (admin_id, admin) = app.admin().await;
    let (mia, mia_token) = register_as(&app, "mia@example.com", "Zoe Quill").await;
    let (bob, _) = register_as(&app, "bob@example.com", "Bob Builder").await;
    let (aaron, _) = register_as(&app, "aaron@example.com", "Carol Danvers").await;
    let bio = app
        .patch(
            &format!("/api/v1/users/{mia}"),
            Some(&mia_token),
            json!({"bio": "Loves rabbits and carrots"}),
        )
        .await;
    assert_eq!(bio.status(), StatusCode::OK);
    let promoted = app
        .patch(
            &format!("/api/v1/users/{bob}"),
            Some(&admin),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let deactivated = app
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{aaron}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deactivated.status(), StatusCode::NO_CONTENT);
    let everyone = list(&app, "/api/v1/users", &[], Some(&admin)).await;
    let created: HashMap<String, String> = everyone["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (id_of(u), u["created_at"].as_str().unwrap().to_owned()))
        .collect();
    let cases: Vec<(Params, Vec<&String>)> = vec![
        (vec![], vec![&aaron, &bob, &mia, &admin_id]),
        (vec![("role", "admin")], vec![&bob, &admin_id]),
        (vec![("role", "user")], vec![&aaron, &mia]),
        (vec![("status", "deactivated")], vec![&aaron]),
        (vec![("status", "active")], vec![&bob, &mia, &admin_id]),
        (vec![("role", "user"), ("status", "active")], vec![&mia]),
        (vec![("q", "rabbits")], vec![&mia]),
        (vec![("q", "quill")], vec![&mia]),
        (vec![("q", "bob@example.com")], vec![&bob]),
        (vec![("q", "danvers")], vec![&aaron]),
        (vec![("q", "nobody")], vec![]),
        (vec![("created_after", &created[&mia])], vec![&aaron, &bob]),
        (
            vec![("created_before", &created[&bob])],
            vec![&mia, &admin_id],
        ),
        (vec![("sort", "name")], vec![&admin_id, &bob, &aaron, &mia]),
        (vec![("sort", "-name")], vec![&mia, &aaron, &bob, &admin_id]),
        (vec![("sort", "email")], vec![&aaron, &admin_id, &bob, &mia]),
        (
            vec![("sort", "-email")],
            vec![&mia, &bob, &admin_id, &aaron],
        ),
        (
            vec![("sort", "created_at")],
            vec![&admin_id, &mia, &bob, &aaron],
        ),
    ];

    let mut results = Vec::new();
    for (params, _) in &cases {
        results.push(ids(&list(&app, "/api/v1/users", params, Some(&admin)).await));
    }
    let walked = walk(
        &app,
        "/api/v1/users",
        &[("sort", "-name"), ("limit", "1")],
        Some(&admin),
    )
    .await;
    let by_user = app.get("/api/v1/users", Some(&mia_token)).await;
    let anonymous = app.get("/api/v1/users", None).await;

    for ((params, expected), got) in cases.iter().zip(results) {
        let expected: Vec<String> = expected.iter().map(|s| (*s).clone()).collect();
        assert_eq!(got, expected, "{params:?}");
    }
    assert_eq!(
        walked.iter().map(id_of).collect::<Vec<_>>(),
        vec![mia.clone(), aaron.clone(), bob.clone(), admin_id.clone()]
    );
    let mia_row = everyone["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == mia.as_str())
        .unwrap();
    assert_eq!(mia_row["email"], "mia@example.com");
    assert_eq!(mia_row["bio"], "Loves rabbits and carrots");
    assert!(!everyone.to_string().contains("password"));
    problem(by_user, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
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
}

#[tokio::test]
async fn post_history_lists_the_events_oldest_first_for_the_author_and_admins_only() {
    let app = spawn_app().await;
    let (author_id, author, _) = app.register("historian@example.com").await;
    let (_, stranger, _) = app.register("snoop@example.com").await;
    let (admin_id, admin) = app.admin().await;
    let post = id_of(
        &app.create_post(&author, json!({"title": "First", "body": "B"}))
            .await,
    );
    let path = format!("/api/v1/posts/{post}");
    assert_eq!(
        app.patch(&path, Some(&author), json!({"title": "Second"}))
            .await
            .status(),
        StatusCode::OK
    );
    publish(&app, &author, &post).await;
    assert_eq!(
        app.patch(&path, Some(&admin), json!({"title": "Moderated"}))
            .await
            .status(),
        StatusCode::OK
    );
    let draft = id_of(
        &app.create_post(&author, json!({"title": "Hidden", "body": "B"}))
            .await,
    );
    let history_path = format!("{path}/history");

    let by_author = app.get(&history_path, Some(&author)).await;
    let by_admin = app.get(&history_path, Some(&admin)).await;
    let by_stranger = app.get(&history_path, Some(&stranger)).await;
    let anonymous = app.get(&history_path, None).await;
    let draft_by_stranger = app
        .get(&format!("/api/v1/posts/{draft}/history"), Some(&stranger))
        .await;
    let unknown = app
        .get(
            &format!("/api/v1/posts/{}/history", uuid::Uuid::now_v7()),
            Some(&admin),
        )
        .await;
    let deleted = app.send(Method::DELETE, &path, Some(&author), None).await;
    let after_delete = app.get(&history_path, Some(&author)).await;
    let deleted_by_stranger = app.get(&history_path, Some(&stranger)).await;

    assert_eq!(by_author.status(), StatusCode::OK);
    let body: Value = by_author.json().await.unwrap();
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
    assert_eq!(events[0]["metadata"]["actor_id"], author_id.as_str());
    assert_eq!(events[3]["metadata"]["actor_id"], admin_id.as_str());
    assert_eq!(by_admin.status(), StatusCode::OK);
    let admin_body: Value = by_admin.json().await.unwrap();
    assert_eq!(admin_body, body);
    problem(by_stranger, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    problem(draft_by_stranger, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    problem(unknown, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(after_delete.status(), StatusCode::OK);
    let after: Value = after_delete.json().await.unwrap();
    assert_eq!(after["data"].as_array().unwrap().len(), 5);
    assert_eq!(after["data"][4]["type"], "post.deleted");
    problem(deleted_by_stranger, StatusCode::NOT_FOUND, "NOT_FOUND").await;
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
}

#[tokio::test]
async fn me_is_the_full_user_and_sessions_mark_the_calling_one_as_current() {
    let app = spawn_app().await;
    let (id, first_token, _) = app.register("me@example.com").await;
    let (_, other_token, _) = app.register("someone@example.com").await;
    let second = login(&app, "me@example.com", "queries-test/2").await;
    assert_eq!(second.status(), StatusCode::OK);
    let second_token = second.json::<Value>().await.unwrap()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (first_sid, second_sid) = (session_of(&first_token), session_of(&second_token));

    let me = app.get("/api/v1/me", Some(&first_token)).await;
    let as_first = app.get("/api/v1/me/sessions", Some(&first_token)).await;
    let as_second = app.get("/api/v1/me/sessions", Some(&second_token)).await;
    let anonymous = app.get("/api/v1/me", None).await;

    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(header(&me, "cache-control").as_deref(), Some("no-store"));
    let me: Value = me.json().await.unwrap();
    assert_eq!(
        keys(&me["data"]),
        set(&[
            "id",
            "email",
            "name",
            "bio",
            "role",
            "status",
            "email_verified",
            "created_at",
            "updated_at",
            "version"
        ])
    );
    assert_eq!(me["data"]["id"], id.as_str());
    assert_eq!(me["data"]["email"], "me@example.com");
    assert_eq!(me["data"]["role"], "user");
    assert_eq!(me["data"]["status"], "active");
    assert_eq!(as_first.status(), StatusCode::OK);
    assert_eq!(
        header(&as_first, "cache-control").as_deref(),
        Some("no-store")
    );
    let as_first: Value = as_first.json().await.unwrap();
    let as_second: Value = as_second.json().await.unwrap();
    for (body, current) in [(&as_first, &first_sid), (&as_second, &second_sid)] {
        let sessions = body["data"].as_array().unwrap();
        assert_eq!(
            sessions.iter().map(id_of).collect::<HashSet<_>>(),
            HashSet::from([first_sid.clone(), second_sid.clone()]),
            "only this user's two sessions, not {}",
            session_of(&other_token)
        );
        let currents: Vec<String> = sessions
            .iter()
            .filter(|s| s["current"] == true)
            .map(id_of)
            .collect();
        assert_eq!(currents, std::slice::from_ref(current));
        for session in sessions {
            for key in [
                "id",
                "created_at",
                "last_used_at",
                "ip",
                "user_agent",
                "current",
            ] {
                assert!(session.get(key).is_some(), "{key} in {session}");
            }
        }
    }
    let second_session = as_first["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == second_sid.as_str())
        .unwrap();
    assert_eq!(second_session["user_agent"], "queries-test/2");
    problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

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
}

#[tokio::test]
async fn a_nul_byte_in_a_text_filter_is_a_400_naming_the_parameter_not_a_500() {
    let app = spawn_app().await;
    let (_, admin) = app.admin().await;
    let cases = [
        ("/api/v1/posts", "q"),
        ("/api/v1/posts", "tag"),
        ("/api/v1/users", "q"),
        ("/api/v1/events", "event_type"),
        ("/api/v1/events", "aggregate_type"),
    ];

    let mut responses = Vec::new();
    for (path, name) in cases {
        responses.push(get_with(&app, path, &[(name, "a\0b")], Some(&admin)).await);
    }

    for ((path, name), response) in cases.iter().zip(responses) {
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{path}?{name}=a%00b"
        );
        let body = problem(response, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
        assert_eq!(body["errors"][0]["field"], *name);
    }
}

#[tokio::test]
async fn a_page_number_far_past_the_end_is_an_empty_page_or_past_reach_a_400_never_a_500() {
    let app = spawn_app().await;
    let (_, token, _) = app.register("far@example.com").await;
    app.create_post(
        &token,
        json!({"title": "Only", "body": "B", "status": "published"}),
    )
    .await;

    let response = get_with(
        &app,
        "/api/v1/posts",
        &[("page", "100"), ("limit", "100")],
        None,
    )
    .await;
    let beyond = get_with(
        &app,
        "/api/v1/posts",
        &[("page", "9223372036854775807"), ("limit", "100")],
        None,
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(ids(&body), Vec::<String>::new());
    assert_eq!(body["pagination"]["total"], 1);
    let body = problem(beyond, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    assert_eq!(body["errors"][0]["field"], "page");
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
}
