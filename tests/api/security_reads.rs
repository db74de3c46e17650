//! Attacks on the read side (issue 12, findings 6 and 9, items 14c and 14d): forged cursors,
//! drafts that leak through status codes, and queries whose cost a caller could blow up.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{Duration, Utc};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{problem, TestApp};

/// An app whose rate limit leaves room for the 256 guesses below.
async fn spawn_app() -> TestApp {
    TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "1000000")]).await
}

async fn get_query(app: &TestApp, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .query(query)
        .send()
        .await
        .unwrap()
}

/// Asserts a 400 whose `errors` name `field`, and returns its message.
async fn refused(response: reqwest::Response, field: &str) -> String {
    let body = problem(response, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    assert_eq!(body["errors"][0]["field"], field, "{body}");
    body["errors"][0]["message"].as_str().unwrap().to_owned()
}

/// Two published posts, so that a page of one has a next cursor.
async fn next_cursor(app: &TestApp) -> String {
    let (_, token, _) = app.register("cursors@example.com").await;
    for title in ["One", "Two"] {
        app.create_post(
            &token,
            json!({"title": title, "body": "B", "status": "published"}),
        )
        .await;
    }
    let first: Value = get_query(app, "/api/v1/posts", &[("limit", "1")])
        .await
        .json()
        .await
        .unwrap();
    first["pagination"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A cursor signed with the server's own key: what someone holding the key, or a bug that
/// signed bad values, would produce.
fn signed(app: &TestApp, payload: &Value) -> String {
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(&app.state.cursor_key).unwrap();
    mac.update(payload.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{payload}.{tag}")
}

#[tokio::test]
async fn truncated_one_byte_and_bit_flipped_cursor_tags_are_400_naming_the_cursor() {
    let app = spawn_app().await;
    let cursor = next_cursor(&app).await;
    let (payload, tag) = cursor.split_once('.').unwrap();
    let tag = URL_SAFE_NO_PAD.decode(tag).unwrap();
    let with_tag = |tag: &[u8]| format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag));
    let mut flipped = tag.clone();
    flipped[tag.len() - 1] ^= 1;

    let genuine = get_query(
        &app,
        "/api/v1/posts",
        &[("limit", "1"), ("cursor", &cursor)],
    )
    .await;
    assert_eq!(
        genuine.status(),
        StatusCode::OK,
        "the untouched cursor works"
    );
    assert_eq!(tag.len(), 32, "the whole HMAC-SHA256 tag");
    for (what, forged) in [
        ("one byte", with_tag(&tag[..1])),
        ("half", with_tag(&tag[..16])),
        ("all but one byte", with_tag(&tag[..31])),
        ("a flipped bit", with_tag(&flipped)),
        ("no tag", format!("{payload}.")),
        ("a tag too long", with_tag(&[tag.as_slice(), &[0]].concat())),
    ] {
        let response = get_query(
            &app,
            "/api/v1/posts",
            &[("limit", "1"), ("cursor", &forged)],
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        refused(response, "cursor").await;
    }
}

#[tokio::test]
async fn guessing_a_short_tag_for_a_forged_cursor_with_a_garbage_timestamp_never_reaches_sql() {
    let app = spawn_app().await;
    next_cursor(&app).await;
    let forged = URL_SAFE_NO_PAD.encode(
        json!({"s": "posts:-created_at", "v": ["garbage", "0190b3c2-7a4e-7c3d-8e2f-1a2b3c4d5e6f"]})
            .to_string(),
    );

    // With a one-byte tag accepted, one of these 256 guesses is "signed" and its garbage
    // timestamp would reach the query.
    let mut statuses = std::collections::BTreeMap::new();
    for byte in 0..=255u8 {
        let cursor = format!("{forged}.{}", URL_SAFE_NO_PAD.encode([byte]));
        let response = get_query(
            &app,
            "/api/v1/posts",
            &[("limit", "1"), ("cursor", &cursor)],
        )
        .await;
        *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
    }

    assert_eq!(statuses, [(400, 256)].into_iter().collect());
}

#[tokio::test]
async fn a_correctly_signed_cursor_carrying_values_of_the_wrong_type_is_400_not_500() {
    let app = spawn_app().await;
    next_cursor(&app).await;
    let id = "0190b3c2-7a4e-7c3d-8e2f-1a2b3c4d5e6f";
    let cases = [
        ("-created_at", json!(["garbage", id])),
        ("-created_at", json!(["2026-13-45 99:00:00+00", id])),
        (
            "-created_at",
            json!(["2026-01-01 00:00:00+00", "not-a-uuid"]),
        ),
        ("-created_at", json!([12345, id])),
        ("-created_at", json!([null, id])),
        ("-created_at", json!(["2026-01-01 00:00:00+00"])),
        ("-created_at", json!("not a list")),
        ("title", json!(["nul \u{0} inside", id])),
        ("-published_at", json!(["yesterday-ish", id])),
    ];

    for (sort, values) in cases {
        let cursor = signed(&app, &json!({"s": format!("posts:{sort}"), "v": values}));
        let response = get_query(
            &app,
            "/api/v1/posts",
            &[("limit", "1"), ("sort", sort), ("cursor", &cursor)],
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "sort={sort} values={values}"
        );
        refused(response, "cursor").await;
    }

    // The same signing, with values of the right types, is a working cursor: the refusals
    // above are about the values, not the way the test signs.
    let fine = signed(
        &app,
        &json!({"s": "posts:-created_at", "v": [Utc::now().to_rfc3339(), id]}),
    );
    let response = get_query(&app, "/api/v1/posts", &[("cursor", &fine)]).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// Sends one write (or history read) as `token`, returning the status and the problem body.
async fn attempt(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let response = app.send(method, path, Some(token), body).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn every_route_on_someone_elses_draft_is_the_same_404_as_an_id_that_does_not_exist() {
    let app = spawn_app().await;
    let (_, author, _) = app.register("author@example.com").await;
    let (_, stranger, _) = app.register("stranger@example.com").await;
    let draft = app
        .create_post(&author, json!({"title": "Secret", "body": "B"}))
        .await;
    let draft = draft["id"].as_str().unwrap().to_owned();
    let missing = uuid::Uuid::now_v7().to_string();
    let routes = |id: &str| {
        vec![
            (
                Method::PATCH,
                format!("/api/v1/posts/{id}"),
                Some(json!({"title": "Mine now"})),
            ),
            (
                Method::PUT,
                format!("/api/v1/posts/{id}"),
                Some(json!({"title": "Mine", "body": "now", "tags": []})),
            ),
            (
                Method::POST,
                format!("/api/v1/posts/{id}/publish"),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("/api/v1/posts/{id}/unpublish"),
                Some(json!({})),
            ),
            (Method::GET, format!("/api/v1/posts/{id}/history"), None),
            (Method::GET, format!("/api/v1/posts/{id}"), None),
            (Method::DELETE, format!("/api/v1/posts/{id}"), None),
        ]
    };

    for ((method, draft_path, body), (_, missing_path, _)) in
        routes(&draft).into_iter().zip(routes(&missing))
    {
        let (draft_status, draft_body) =
            attempt(&app, &stranger, method.clone(), &draft_path, body.clone()).await;
        let (missing_status, missing_body) =
            attempt(&app, &stranger, method.clone(), &missing_path, body).await;
        assert_eq!(draft_status, StatusCode::NOT_FOUND, "{method} {draft_path}");
        assert_eq!(
            missing_status,
            StatusCode::NOT_FOUND,
            "{method} {missing_path}"
        );
        for field in ["type", "title", "status", "detail", "code"] {
            assert_eq!(
                draft_body[field], missing_body[field],
                "{method}: {field} tells the draft apart"
            );
        }
    }

    assert_eq!(app.count_events(&draft).await, 1, "nothing was appended");
    let still = app
        .get(&format!("/api/v1/posts/{draft}"), Some(&author))
        .await;
    let still: Value = still.json().await.unwrap();
    assert_eq!(still["data"]["title"], "Secret");
    assert_eq!(still["data"]["status"], "draft");
}

#[tokio::test]
async fn writes_on_someone_elses_published_post_stay_403() {
    let app = spawn_app().await;
    let (_, author, _) = app.register("author@example.com").await;
    let (_, stranger, _) = app.register("stranger@example.com").await;
    let post = app
        .create_post(
            &author,
            json!({"title": "Public", "body": "B", "status": "published"}),
        )
        .await;
    let id = post["id"].as_str().unwrap();

    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/api/v1/posts/{id}"),
            Some(json!({"title": "Mine now"})),
        ),
        (
            Method::PUT,
            format!("/api/v1/posts/{id}"),
            Some(json!({"title": "Mine", "body": "now", "tags": []})),
        ),
        (
            Method::POST,
            format!("/api/v1/posts/{id}/publish"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/v1/posts/{id}/unpublish"),
            Some(json!({})),
        ),
        (Method::GET, format!("/api/v1/posts/{id}/history"), None),
        (Method::DELETE, format!("/api/v1/posts/{id}"), None),
    ] {
        let (status, body) = attempt(&app, &stranger, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["code"], "FORBIDDEN");
    }
    assert_eq!(app.count_events(id).await, 2, "created and published only");
}

#[tokio::test]
async fn an_analytics_range_longer_than_its_cap_is_400_naming_from() {
    let app = spawn_app().await;
    let (_, admin) = app.admin().await;
    let to = Utc::now();
    let days_back = |days: i64| (to - Duration::days(days)).to_rfc3339();
    let to = to.to_rfc3339();
    let ask = |path: &'static str, interval: Option<&'static str>, days: i64| {
        let mut query = vec![("from", days_back(days)), ("to", to.clone())];
        if let Some(interval) = interval {
            query.push(("metric", "events".to_owned()));
            query.push(("interval", interval.to_owned()));
        }
        app.request(Method::GET, path, Some(&admin)).query(&query)
    };
    let summary = "/api/v1/analytics/summary";
    let series = "/api/v1/analytics/timeseries";

    for (path, interval, days) in [
        (summary, None, 31),
        (series, Some("hour"), 31),
        (series, Some("day"), 366),
    ] {
        let response = ask(path, interval, days).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{path} {interval:?} {days}"
        );
    }
    for (path, interval, days) in [
        (summary, None, 32),
        (series, Some("hour"), 32),
        (series, Some("day"), 367),
        (series, Some("day"), 365 * 50),
    ] {
        let response = ask(path, interval, days).send().await.unwrap();
        let message = refused(response, "from").await;
        assert!(message.contains("days"), "{message}");
    }
}

#[tokio::test]
async fn a_page_that_starts_past_the_first_10000_rows_is_400_pointing_to_cursors() {
    let app = spawn_app().await;

    for (page, limit) in [("100", "100"), ("500", "20"), ("334", "30"), ("10000", "1")] {
        let response = get_query(&app, "/api/v1/posts", &[("page", page), ("limit", limit)]).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "page={page} limit={limit}"
        );
    }
    for (page, limit) in [
        ("101", "100"),
        ("501", "20"),
        ("335", "30"),
        ("10001", "1"),
        ("9223372036854775807", "100"),
    ] {
        let response = get_query(&app, "/api/v1/posts", &[("page", page), ("limit", limit)]).await;
        let message = refused(response, "page").await;
        assert!(message.contains("10000"), "{message}");
        assert!(message.contains("cursor"), "{message}");
    }
}

#[tokio::test]
async fn the_offset_total_stops_counting_at_the_10000_rows_pages_reach() {
    let app = spawn_app().await;
    let (author, _, _) = app.register("prolific@example.com").await;
    // The read model filled directly: ten thousand posts through the API would take minutes.
    // In short transactions: log readers read only below the cluster's oldest running
    // transaction, so one long insert would stall the other tests' readers meanwhile.
    for chunk in 0..10 {
        sqlx::query(
            "INSERT INTO posts_view (id, author_id, title, body, status, created_at, updated_at,
                                     published_at, version)
             SELECT gen_random_uuid(), $1, 'Post ' || n, 'Body', 'published',
                    now() - n * interval '1 second', now(), now(), 2
               FROM generate_series($2 * 1005 + 1, ($2 + 1) * 1005) AS n",
        )
        .bind(uuid::Uuid::parse_str(&author).unwrap())
        .bind(chunk)
        .execute(&app.state.pool)
        .await
        .unwrap();
    }

    let first: Value = get_query(&app, "/api/v1/posts", &[("page", "1"), ("limit", "100")])
        .await
        .json()
        .await
        .unwrap();
    let last: Value = get_query(&app, "/api/v1/posts", &[("page", "100"), ("limit", "100")])
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(
        first["pagination"],
        json!({"page": 1, "limit": 100, "total": 10000, "total_pages": 100})
    );
    assert_eq!(last["data"].as_array().unwrap().len(), 100);
    assert_eq!(last["data"][99]["title"], "Post 10000");
}

#[tokio::test]
async fn an_overlong_query_value_is_400_naming_the_parameter_before_any_query_runs() {
    let app = spawn_app().await;
    let (_, admin) = app.admin().await;
    let long = "a".repeat(2049);
    let just_fits = "a".repeat(2048);

    for (path, name) in [
        ("/api/v1/posts", "q"),
        ("/api/v1/posts", "cursor"),
        ("/api/v1/users", "q"),
        ("/api/v1/events", "event_type"),
        ("/api/v1/analytics/summary", "from"),
    ] {
        let response = app
            .request(Method::GET, path, Some(&admin))
            .query(&[(name, long.as_str())])
            .send()
            .await
            .unwrap();
        let body = problem(response, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
        assert_eq!(body["errors"][0]["field"], name, "{path}: {body}");
        assert_eq!(body["errors"][0]["code"], "LENGTH", "{path}: {body}");
    }
    let fits = get_query(&app, "/api/v1/posts", &[("q", just_fits.as_str())]).await;
    assert_eq!(fits.status(), StatusCode::OK);
}
