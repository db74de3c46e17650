use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{problem, TestApp};

/// Runs the CLI off the test's single-threaded runtime: a blocking wait here would freeze the
/// server's projector mid-transaction while the CLI waits for the lock it holds.
async fn chronicle(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command
        .args(args)
        .env("DATABASE_URL", &app.state.config.database_url)
        .env("CHRONICLE_ENV", "test")
        .env(
            "JWT_SECRET",
            "test-secret-that-is-long-enough-for-hs256-0123",
        )
        .env("RUST_LOG", "warn");
    tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap()
}

async fn published_titles(app: &TestApp) -> Vec<String> {
    let list: Value = app
        .get("/api/v1/posts?limit=100&sort=title", None)
        .await
        .json()
        .await
        .unwrap();
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn admins_see_every_projector_with_its_position_lag_and_state() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let (_, user, _) = app.register("op@example.com").await;
    app.create_post(&user, json!({"title": "t", "body": "b"}))
        .await;

    let response = app.get("/api/v1/admin/projections", Some(&admin)).await;
    let as_user = app.get("/api/v1/admin/projections", Some(&user)).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["users", "posts", "sessions"]);
    let posts = &body["data"][1];
    assert_eq!(posts["status"], "running");
    assert_eq!(
        posts["lag"], 0,
        "the command waited for it, so it is caught up"
    );
    assert_eq!(posts["position"], posts["head_position"]);
    assert!(posts["position"]
        .as_str()
        .unwrap()
        .parse::<projections::Position>()
        .is_ok());
    problem(as_user, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn the_cli_shows_status_and_a_reset_needs_yes_then_replays_the_read_model() {
    let app = TestApp::spawn().await;
    let (_, token, _) = app.register("reset@example.com").await;
    for i in 0..5 {
        app.create_post(
            &token,
            json!({"title": format!("post {i}"), "body": "b", "status": "published"}),
        )
        .await;
    }
    let before = published_titles(&app).await;
    let row_versions = |app: &TestApp| {
        let pool = app.state.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT xmin::text FROM posts_view ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    let versions_before = row_versions(&app).await;

    let status = chronicle(&app, &["projections", "status"]).await;
    let refused = chronicle(&app, &["projections", "reset", "posts"]).await;
    let unknown = chronicle(&app, &["projections", "reset", "nope", "--yes"]).await;
    let reset = chronicle(&app, &["projections", "reset", "posts", "--yes"]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = Vec::new();
    while Instant::now() < deadline {
        after = published_titles(&app).await;
        if after == before {
            break;
        }
        crate::helpers::poll_pause().await;
    }

    let status_out = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success());
    for name in ["users", "posts", "sessions"] {
        assert!(status_out.contains(name), "{status_out}");
    }
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no projector named"));
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    assert_eq!(before.len(), 5);
    assert_eq!(after, before, "the read model was replayed from the log");
    let versions_after = row_versions(&app).await;
    assert_eq!(versions_after.len(), versions_before.len());
    assert!(
        versions_after.iter().all(|v| !versions_before.contains(v)),
        "every row was written anew by the replay"
    );
}

#[tokio::test]
async fn an_api_only_server_and_a_separate_worker_process_still_read_their_writes() {
    let db = crate::helpers::TestDatabase::create().await;
    let options = chronicle::startup::BuildOptions {
        migrate: true,
        workers: false,
    };
    let app = TestApp::spawn_with_options(db, &[], options).await;
    let mut worker = Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .arg("worker")
        .env("DATABASE_URL", &app.state.config.database_url)
        .env("NATS_URL", &app.state.config.nats_url)
        .env("NATS_STREAM", &app.state.config.nats_stream)
        .env("NATS_SUBJECT_PREFIX", &app.state.config.nats_subject_prefix)
        .env("CHRONICLE_ENV", "test")
        .env(
            "JWT_SECRET",
            "test-secret-that-is-long-enough-for-hs256-0123",
        )
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let registered = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "split@example.com", "password": "correct horse battery", "name": "Split"}),
        )
        .await;
    let consistency = registered.headers().get("x-consistency").cloned();
    let token = registered.json::<Value>().await.unwrap()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = app.get("/api/v1/me", Some(&token)).await;
    let stopped = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    let exit = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();

    assert!(
        consistency.is_none(),
        "the worker's projectors answered the wait in time"
    );
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "the API-only server reads what the worker projected"
    );
    assert!(stopped.success());
    assert!(
        exit.success(),
        "the worker stops cleanly on SIGTERM: {exit:?}"
    );
}

/// A projector added to the code has no checkpoint and empty tables on its first start: the
/// server must serve at once and build it from the log in the background.
#[tokio::test]
async fn a_projector_new_to_the_database_is_built_from_the_log_while_the_api_serves() {
    let mut first = TestApp::spawn().await;
    let (_, author, _) = first.register("new-projector@example.com").await;
    for n in 0..30 {
        first
            .create_post(
                &author,
                json!({"title": format!("Post {n:02}"), "body": "b", "status": "published"}),
            )
            .await;
    }
    let database = first
        .take_database()
        .expect("the first app owns its database");
    let config = first.state.config.clone();
    let url = config.database_url.clone();
    drop(first);
    crate::helpers::delete_stream(&config).await;

    // What a new projector looks like to the database: no checkpoint row, nothing projected.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let posts = projections::all_projectors()
        .into_iter()
        .find(|p| p.name() == "posts")
        .expect("the posts projector");
    for table in posts.tables() {
        sqlx::query(&format!("TRUNCATE {table}"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = 'posts'")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let started = Instant::now();
    let app = TestApp::spawn_on(database, &[]).await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status(), StatusCode::OK);
    let (_, reader, _) = app.register("reader@example.com").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the server served without waiting for the new projector"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let titles = published_titles(&app).await;
        if titles.len() == 30 {
            assert_eq!(titles[0], "Post 00");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new projector built {} of 30 posts in 30 s",
            titles.len()
        );
        crate::helpers::poll_pause().await;
    }
    let me = app.get("/api/v1/me", Some(&reader)).await;
    assert_eq!(me.status(), StatusCode::OK);
}
