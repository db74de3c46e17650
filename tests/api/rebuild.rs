use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use projections::rebuild::{rebuild, RebuildError};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::TestApp;

async fn snapshot(pool: &PgPool) -> String {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT json_agg(p ORDER BY id)::text FROM
           (SELECT id, author_id, title, body, tags, status, created_at, updated_at, published_at, version FROM posts_view) p",
    )
    .fetch_one(pool)
    .await
    .unwrap()
    .unwrap_or_default()
}

async fn count_published(app: &TestApp) -> usize {
    let list: Value = app
        .get("/api/v1/posts?limit=100&fields=id", None)
        .await
        .json()
        .await
        .unwrap();
    list["data"].as_array().map_or(0, Vec::len)
}

/// A from-scratch replay of the posts read model, for comparison.
async fn replayed(app: &TestApp, pool: &PgPool) -> String {
    projections::reset::reset(pool, "posts").await.unwrap();
    let head = projections::log::head(pool).await.unwrap();
    assert!(
        app.state
            .progress
            .wait_for(&["posts"], head, Duration::from_secs(20))
            .await
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let checkpoint: i64 =
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = 'posts'")
                .fetch_one(pool)
                .await
                .unwrap();
        if checkpoint == head.position || Instant::now() > deadline {
            return snapshot(pool).await;
        }
        crate::helpers::poll_pause().await;
    }
}

#[tokio::test]
async fn a_rebuild_under_reads_and_writes_never_serves_an_empty_list_and_loses_nothing() {
    let app = Arc::new(TestApp::spawn().await);
    let (_, token, _) = app.register("rebuild@example.com").await;
    for chunk in 0..6 {
        futures::future::join_all((0..10).map(|i| {
            app.create_post(
                &token,
                json!({"title": format!("seed {chunk}-{i}"), "body": "b", "status": "published"}),
            )
        }))
        .await;
    }
    let pool = PgPool::connect(&app.state.config.database_url)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let smallest_read = Arc::new(AtomicUsize::new(usize::MAX));
    let reader = {
        let (app, stop, smallest) = (app.clone(), stop.clone(), smallest_read.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                smallest.fetch_min(count_published(&app).await, Ordering::SeqCst);
                reads += 1;
            }
            reads
        })
    };
    let writer = {
        let (app, stop, token) = (app.clone(), stop.clone(), token.clone());
        tokio::spawn(async move {
            let mut written = 0;
            while !stop.load(Ordering::SeqCst) {
                let response = app
                    .post(
                        "/api/v1/posts",
                        Some(&token),
                        json!({"title": format!("during {written}"), "body": "b"}),
                    )
                    .await;
                assert_eq!(response.status(), StatusCode::CREATED);
                written += 1;
            }
            written
        })
    };

    let outcome = rebuild(&pool, &app.state.config.database_url, "posts", 7, |_| {})
        .await
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    let reads = reader.await.unwrap();
    let written = writer.await.unwrap();
    let head = projections::log::head(&pool).await.unwrap();
    assert!(
        app.state
            .progress
            .wait_for(&["posts"], head, Duration::from_secs(20))
            .await
    );
    let rebuilt = snapshot(&pool).await;
    let drafts: i64 = sqlx::query_scalar("SELECT count(*) FROM posts_view WHERE status = 'draft'")
        .fetch_one(&pool)
        .await
        .unwrap();

    assert!(
        reads > 0 && written > 0,
        "reads {reads}, writes {written} ran during the rebuild"
    );
    assert_eq!(
        smallest_read.load(Ordering::SeqCst),
        60,
        "every read saw all 60 published posts"
    );
    assert!(outcome.applied >= 120);
    assert_eq!(drafts, written as i64, "no write was lost");
    assert_eq!(
        rebuilt,
        replayed(&app, &pool).await,
        "equal to a from-scratch replay"
    );
}

#[tokio::test]
async fn an_interrupted_rebuild_resumes_where_it_stopped() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("resume@example.com").await;
    for i in 0..30 {
        app.create_post(&token, json!({"title": format!("post {i}"), "body": "b"}))
            .await;
    }
    let pool = PgPool::connect(&app.state.config.database_url)
        .await
        .unwrap();
    let url = app.state.config.database_url.clone();

    // A crash: the rebuild task dies after its second batch.
    let crashed = {
        let (pool, url) = (pool.clone(), url.clone());
        tokio::spawn(async move {
            let mut batches = 0;
            rebuild(&pool, &url, "posts", 5, |_| {
                batches += 1;
                assert!(batches < 2, "simulated crash");
            })
            .await
        })
        .await
    };
    let status: Value = {
        let (_, admin) = app.admin().await;
        app.get("/api/v1/admin/projections", Some(&admin))
            .await
            .json()
            .await
            .unwrap()
    };
    let mut first_report = None;
    let finished = rebuild(&pool, &url, "posts", 5, |p| {
        first_report.get_or_insert(p.applied);
    })
    .await
    .unwrap();

    assert!(crashed.is_err(), "the first attempt died");
    assert_eq!(status["data"][1]["status"], "rebuilding");
    assert!(
        first_report.unwrap() > 5,
        "the second run started after the first one's batches"
    );
    assert_eq!(finished.applied, finished.total);
    assert_eq!(snapshot(&pool).await, replayed(&app, &pool).await);
}

#[tokio::test]
async fn a_second_rebuild_of_the_same_projector_is_refused_while_one_runs() {
    let app = TestApp::spawn().await;
    let pool = PgPool::connect(&app.state.config.database_url)
        .await
        .unwrap();
    let mut holder =
        <sqlx::PgConnection as sqlx::Connection>::connect(&app.state.config.database_url)
            .await
            .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(projections::leader::advisory_key("rebuild:posts"))
        .execute(&mut holder)
        .await
        .unwrap();

    let second = rebuild(&pool, &app.state.config.database_url, "posts", 100, |_| {}).await;
    let unknown = rebuild(&pool, &app.state.config.database_url, "nope", 100, |_| {}).await;

    assert!(matches!(second, Err(RebuildError::AlreadyRunning(_))));
    assert!(matches!(unknown, Err(RebuildError::Unknown(_))));
}

#[tokio::test]
async fn operators_rebuild_over_http_and_from_the_cli() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    for i in 0..12 {
        app.create_post(
            &admin,
            json!({"title": format!("p{i}"), "body": "b", "status": "published"}),
        )
        .await;
    }
    let pool = PgPool::connect(&app.state.config.database_url)
        .await
        .unwrap();
    let before = snapshot(&pool).await;

    let started = app
        .post(
            "/api/v1/admin/projections/posts/rebuild",
            Some(&admin),
            json!({}),
        )
        .await;
    let unknown = app
        .post(
            "/api/v1/admin/projections/nope/rebuild",
            Some(&admin),
            json!({}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = Value::Null;
    while Instant::now() < deadline {
        status = app
            .get("/api/v1/admin/projections", Some(&admin))
            .await
            .json()
            .await
            .unwrap();
        let rebuilding = status["data"][1]["status"] == "rebuilding";
        let remaining: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_rebuilds")
            .fetch_one(&pool)
            .await
            .unwrap();
        // The lock is released just after the swap commits.
        let lock_free: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1) AND pg_advisory_unlock($1)")
                .bind(projections::leader::advisory_key("rebuild:posts"))
                .fetch_one(&pool)
                .await
                .unwrap();
        if !rebuilding && remaining == 0 && lock_free {
            break;
        }
        crate::helpers::poll_pause().await;
    }
    // Off the runtime: a blocking wait would freeze this test's server while the CLI
    // may wait for a lock its projector holds.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .args(["projections", "rebuild", "posts"])
        .env("DATABASE_URL", &app.state.config.database_url)
        .env("CHRONICLE_ENV", "test")
        .env(
            "JWT_SECRET",
            "test-secret-that-is-long-enough-for-hs256-0123",
        )
        .env("RUST_LOG", "warn");
    let cli = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();

    assert_eq!(started.status(), StatusCode::ACCEPTED);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(status["data"][1]["status"], "running");
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(String::from_utf8_lossy(&cli.stdout).contains("posts: "));
    assert_eq!(
        snapshot(&pool).await,
        before,
        "two rebuilds later, the same read model"
    );
}
