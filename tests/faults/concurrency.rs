//! Many writers on few aggregates: no lost update, contiguous versions, and a read model equal
//! to a from-scratch replay of the log.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::join_all;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::TestApp;

const COMMANDS: usize = 1000;
const CLIENTS: usize = 32;
const POSTS: usize = 10;

#[derive(Debug)]
struct Answer {
    i: usize,
    status: u16,
    etag: Option<String>,
    version: Option<i64>,
    title: Option<String>,
}

/// The posts read model, every column a reader sees, in a stable order.
async fn posts_view(pool: &PgPool) -> String {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT json_agg(p ORDER BY id)::text FROM
           (SELECT id, author_id, title, body, tags, status, created_at, updated_at, published_at,
                   version FROM posts_view) p",
    )
    .fetch_one(pool)
    .await
    .unwrap()
    .unwrap_or_default()
}

#[tokio::test]
async fn a_thousand_updates_from_32_clients_on_10_posts_lose_nothing_and_match_a_replay() {
    let app = Arc::new(TestApp::spawn().await);
    let (_, token, _) = app.register("writers@example.com").await;
    let mut posts = Vec::new();
    for i in 0..POSTS {
        let post = app
            .create_post(&token, json!({"title": format!("post {i}"), "body": "b"}))
            .await;
        posts.push(post["id"].as_str().unwrap().to_owned());
    }
    let posts = Arc::new(posts);
    let next = Arc::new(AtomicUsize::new(0));

    let clients = (0..CLIENTS).map(|_| {
        let (app, token, posts, next) = (app.clone(), token.clone(), posts.clone(), next.clone());
        async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= COMMANDS {
                    return answers;
                }
                let post = &posts[i % POSTS];
                let response = app
                    .patch(
                        &format!("/api/v1/posts/{post}"),
                        Some(&token),
                        json!({"title": format!("update {i}")}),
                    )
                    .await;
                let status = response.status().as_u16();
                let etag = response
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim_matches('"').to_owned());
                let body: Value = response.json().await.unwrap_or_default();
                answers.push(Answer {
                    i,
                    status,
                    etag,
                    version: body["data"]["version"].as_i64(),
                    title: body["data"]["title"].as_str().map(str::to_owned),
                });
            }
        }
    });
    let answers: Vec<Answer> = join_all(clients).await.into_iter().flatten().collect();
    let pool = &app.state.pool;
    let live = posts_view(pool).await;
    let rebuilt =
        projections::rebuild::rebuild(pool, &app.state.config.database_url, "posts", 200, |_| {})
            .await
            .expect("the posts read model rebuilds from the log");
    let replayed = posts_view(pool).await;

    let failed: Vec<_> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} updates failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(answers.len(), COMMANDS);
    let per_post = COMMANDS / POSTS;
    for (n, post) in posts.iter().enumerate() {
        let events: Vec<(i64, String, Value)> = sqlx::query_as(
            "SELECT sequence, event_type, payload FROM events WHERE aggregate_id = $1 ORDER BY sequence",
        )
        .bind(post)
        .fetch_all(pool)
        .await
        .unwrap();
        let sequences: Vec<i64> = events.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(
            sequences,
            (1..=1 + per_post as i64).collect::<Vec<_>>(),
            "post {n}: versions 1..n without a gap"
        );
        let stored: BTreeSet<String> = events
            .iter()
            .filter(|(_, t, _)| t == "post.updated")
            .map(|(_, _, p)| title_of(p))
            .collect();
        let sent: BTreeSet<String> = (0..COMMANDS)
            .filter(|i| i % POSTS == n)
            .map(|i| format!("update {i}"))
            .collect();
        assert_eq!(stored, sent, "post {n}: every update is in the log once");
        let sequence_of: HashMap<String, i64> = events
            .iter()
            .map(|(sequence, _, payload)| (title_of(payload), *sequence))
            .collect();
        for answer in answers.iter().filter(|a| a.i % POSTS == n) {
            let own = format!("update {}", answer.i);
            assert_eq!(
                (answer.version, answer.title.as_deref()),
                (sequence_of.get(&own).copied(), Some(own.as_str())),
                "post {n}: the answer shows the update's own result"
            );
            assert_eq!(
                answer.etag,
                answer.version.map(|v| v.to_string()),
                "post {n}: the ETag names the version in the body"
            );
        }
    }
    let view: HashMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT id::text, version FROM posts_view")
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert!(posts
        .iter()
        .all(|p| view.get(p) == Some(&(1 + per_post as i64))));
    assert!(rebuilt.applied > COMMANDS as i64);
    assert_eq!(live, replayed, "the read model equals a replay of the log");
}

/// The title an update event sets, whatever the payload's envelope looks like.
fn title_of(payload: &Value) -> String {
    fn find(value: &Value) -> Option<String> {
        match value {
            Value::Object(map) => map
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| map.values().find_map(find)),
            _ => None,
        }
    }
    find(payload).unwrap_or_default()
}
