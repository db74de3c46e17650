use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use projections::log::{read_after, StoredEvent};
use projections::progress::Progress;
use projections::projector::{ProjectionError, Projector};
use projections::runner::Runner;
use projections::tail::LogTail;
use projections::Position;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};

use crate::helpers::{TestApp, TestDatabase};

async fn insert_event(conn: &mut PgConnection, aggregate_id: &str) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('probe', $1, 1, 'probe.happened', '1.0', '{}', '{}')",
    )
    .bind(aggregate_id)
    .execute(conn)
    .await
    .unwrap();
}

/// Reads everything readable after `checkpoint`, advancing it like a projector would.
async fn drain(pool: &PgPool, checkpoint: &mut Position, seen: &mut Vec<String>) {
    loop {
        let batch = read_after(pool, *checkpoint, 2).await.unwrap();
        let Some(last) = batch.last() else { return };
        *checkpoint = last.position;
        seen.extend(batch.into_iter().map(|e| e.aggregate_id));
    }
}

/// Drains until `count` events have been seen. Other tests share the cluster, and any open
/// transaction anywhere holds back what is readable, so readability is awaited, not assumed.
async fn drain_until(
    pool: &PgPool,
    checkpoint: &mut Position,
    seen: &mut Vec<String>,
    count: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < count && Instant::now() < deadline {
        drain(pool, checkpoint, seen).await;
        crate::helpers::poll_pause().await;
    }
}

#[tokio::test]
async fn a_transaction_that_commits_late_is_read_exactly_once_and_in_commit_order() {
    let db = TestDatabase::create().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let mut late = PgConnection::connect(&db.url).await.unwrap();
    let mut early = PgConnection::connect(&db.url).await.unwrap();
    let mut checkpoint = Position::START;
    let mut seen = Vec::new();
    insert_event(&mut early, "before").await;
    drain_until(&pool, &mut checkpoint, &mut seen, 1).await;

    // `late` takes its position number first but commits after two other transactions.
    sqlx::query("BEGIN").execute(&mut late).await.unwrap();
    insert_event(&mut late, "late").await;
    insert_event(&mut early, "first-after").await;
    insert_event(&mut early, "second-after").await;
    drain(&pool, &mut checkpoint, &mut seen).await;
    let seen_while_open = seen.clone();
    sqlx::query("COMMIT").execute(&mut late).await.unwrap();
    drain_until(&pool, &mut checkpoint, &mut seen, 4).await;

    assert_eq!(
        seen_while_open,
        ["before"],
        "nothing past the open transaction is readable yet"
    );
    assert_eq!(seen, ["before", "late", "first-after", "second-after"]);
    let positions: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM events ORDER BY aggregate_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(positions.len(), 4);
}

/// A projector that dies after applying a number of events: its transaction is rolled back,
/// exactly as if the process had been killed mid-batch.
struct CrashingProjector {
    inner: projections::posts::PostsProjector,
    budget: AtomicUsize,
}

#[async_trait]
impl Projector for CrashingProjector {
    fn name(&self) -> &'static str {
        "posts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["posts_view"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            if self.budget.fetch_sub(1, Ordering::SeqCst) == 0 {
                return Err(ProjectionError::bad_event(event, "simulated crash"));
            }
            self.inner.apply(conn, std::slice::from_ref(event)).await?;
        }
        Ok(())
    }
}

async fn snapshot_of_posts(pool: &PgPool) -> String {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT json_agg(p ORDER BY id)::text FROM
           (SELECT id, author_id, title, body, tags, status, created_at, updated_at, published_at, version FROM posts_view) p",
    )
    .fetch_one(pool)
    .await
    .unwrap()
    .unwrap_or_default()
}

fn runner(pool: &PgPool, url: &str, projector: Arc<dyn Projector>) -> Runner {
    let progress = Arc::new(Progress::new(&["posts"]));
    // A tail that is not running: the runner reads the database, as a lagging one does.
    let tail = Arc::new(LogTail::new(pool.clone()));
    Runner::new(pool.clone(), url.to_owned(), projector, progress, &tail)
}

#[tokio::test]
async fn a_crash_mid_batch_repeats_nothing_and_loses_nothing() {
    let app = TestApp::spawn_with(&[]).await;
    let (_, token, _) = app.register("crash@example.com").await;
    for i in 0..30 {
        let post = app
            .create_post(&token, json!({"title": format!("post {i}"), "body": "b"}))
            .await;
        let path = format!("/api/v1/posts/{}", post["id"].as_str().unwrap());
        app.patch(&path, Some(&token), json!({"body": format!("edited {i}")}))
            .await;
        if i % 3 == 0 {
            app.post(&format!("{path}/publish"), Some(&token), json!({}))
                .await;
        }
    }
    let pool = PgPool::connect(&app.state.config.database_url)
        .await
        .unwrap();
    let live = snapshot_of_posts(&pool).await;
    // A second copy of the read model, built by projectors that crash.
    sqlx::query("TRUNCATE posts_view")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE projection_checkpoints SET transaction_id = 0, position = 0 WHERE name = 'posts'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let url = app.state.config.database_url.clone();

    let mut crashes = 0;
    for budget in [7usize, 13, 1, 25] {
        let crashing = runner(
            &pool,
            &url,
            Arc::new(CrashingProjector {
                inner: projections::posts::PostsProjector,
                budget: AtomicUsize::new(budget),
            }),
        );
        if crashing.run_to_idle().await.is_err() {
            crashes += 1;
        }
    }
    runner(&pool, &url, Arc::new(projections::posts::PostsProjector))
        .run_to_idle()
        .await
        .unwrap();

    assert!(crashes >= 3, "the crashes happened");
    assert_eq!(
        snapshot_of_posts(&pool).await,
        live,
        "equal to the read model built without crashes"
    );
}

struct BrokenProjector;

#[async_trait]
impl Projector for BrokenProjector {
    fn name(&self) -> &'static str {
        "broken"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(
        &self,
        _conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        Err(ProjectionError::bad_event(&events[0], "cannot handle this"))
    }
}

#[tokio::test]
async fn a_projector_that_hits_a_bad_event_records_the_error_shows_failed_and_does_not_spin() {
    let app = TestApp::spawn().await;
    app.register("bad@example.com").await;
    let pool = PgPool::connect(&app.state.config.database_url)
        .await
        .unwrap();
    let progress = Arc::new(Progress::new(&["broken"]));
    let broken = Runner::new(
        pool.clone(),
        app.state.config.database_url.clone(),
        Arc::new(BrokenProjector),
        progress,
        &app.state.log_tail,
    );

    let task = tokio::spawn(broken.run());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut row: Option<(String, Option<String>, chrono::DateTime<chrono::Utc>)> = None;
    while Instant::now() < deadline {
        row = sqlx::query_as("SELECT status, last_error, updated_at FROM projection_checkpoints WHERE name = 'broken'")
            .fetch_optional(&pool)
            .await
            .unwrap();
        if row.as_ref().is_some_and(|r| r.0 == "failed") {
            break;
        }
        crate::helpers::poll_pause().await;
    }
    let first_failure = row.clone().unwrap().2;
    // Give a spinning runner plenty of chances to retry; a backing-off one retries once, at 2 s.
    let wait_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < wait_until {
        crate::helpers::poll_pause().await;
    }
    let later: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT updated_at FROM projection_checkpoints WHERE name = 'broken'")
            .fetch_one(&pool)
            .await
            .unwrap();
    task.abort();

    let (status, error, _) = row.unwrap();
    assert_eq!(status, "failed");
    assert!(error.unwrap().contains("cannot handle this"));
    assert_eq!(later, first_failure, "no retry within the backoff");
    let position: i64 =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = 'broken'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        position, 0,
        "the checkpoint did not move past the bad event"
    );
}

async fn advisory_lock_holders(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks
          WHERE locktype = 'advisory' AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY pid",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn two_instances_run_each_projector_once_and_the_survivor_takes_over() {
    let mut first = TestApp::spawn().await;
    let _database = first.take_database();
    let pool = PgPool::connect(&first.state.config.database_url)
        .await
        .unwrap();
    let (_, token, _) = first.register("two@example.com").await;
    let second = first.another_instance().await;

    let post = second
        .create_post(
            &token,
            json!({"title": "via second", "body": "b", "status": "published"}),
        )
        .await;
    let holders_before = advisory_lock_holders(&pool).await;
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut holders_after = holders_before.clone();
    while Instant::now() < deadline {
        holders_after = advisory_lock_holders(&pool).await;
        if holders_after.len() == 5
            && holders_after
                .iter()
                .all(|pid| !holders_before.contains(pid))
        {
            break;
        }
        crate::helpers::poll_pause().await;
    }
    let created = second
        .post(
            "/api/v1/posts",
            Some(&token),
            json!({"title": "after takeover", "body": "b", "status": "published"}),
        )
        .await;
    let consistency = created.headers().get("x-consistency").cloned();
    let created: serde_json::Value = created.json().await.unwrap();
    let fetched = second
        .get(
            &format!("/api/v1/posts/{}", created["data"]["id"].as_str().unwrap()),
            None,
        )
        .await;

    assert_eq!(
        holders_before.len(),
        5,
        "one leader lock per projector, one for the relay and one for the email outbox writer: {holders_before:?}"
    );
    assert_eq!(
        holders_after.len(),
        5,
        "the second instance leads all five: {holders_after:?}"
    );
    assert!(holders_after
        .iter()
        .all(|pid| !holders_before.contains(pid)));
    assert_eq!(post["title"], "via second");
    assert!(
        consistency.is_none(),
        "the new leader projected the command in time"
    );
    assert_eq!(fetched.status(), StatusCode::OK);
}
