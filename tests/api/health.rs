use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{problem, TestApp, TestDatabase};

#[tokio::test]
async fn healthz_and_readyz_answer_when_everything_is_up() {
    let app = TestApp::spawn().await;

    let health = app.get("/healthz", None).await;
    let ready = app.get("/readyz", None).await;

    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["postgres"], "up");
    assert_eq!(body["checks"]["migrations"], "applied");
}

#[tokio::test]
async fn readyz_reports_nats_down_without_failing() {
    let app = TestApp::spawn_with(&[("NATS_URL", "nats://127.0.0.1:1")]).await;

    let ready = app.get("/readyz", None).await;

    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["nats"], "down");
}

/// A TCP proxy the test controls: cutting it drops live connections and refuses new ones,
/// which to the server looks exactly like Postgres going away.
struct ChaosProxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl ChaosProxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, watcher) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut state = watcher.clone();
                if !*state.borrow() {
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up }
    }

    fn cut(&self) {
        let _ = self.up.send(false);
    }

    fn restore(&self) {
        let _ = self.up.send(true);
    }
}

async fn wait_for_status(
    app: &TestApp,
    path: &str,
    expected: StatusCode,
    deadline: Duration,
) -> StatusCode {
    let started = Instant::now();
    loop {
        let status = app.get(path, None).await.status();
        if status == expected || started.elapsed() > deadline {
            return status;
        }
        crate::helpers::poll_pause().await;
    }
}

#[tokio::test]
async fn readyz_is_503_while_postgres_is_unreachable_and_recovers_by_itself() {
    let db = TestDatabase::create().await;
    let upstream = {
        let options: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
        format!("{}:{}", options.get_host(), options.get_port())
    };
    let proxy = ChaosProxy::start(upstream).await;
    let proxied_url = {
        let options: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
        let options = options.host("127.0.0.1").port(proxy.port);
        use sqlx::ConnectOptions;
        options.to_url_lossy().to_string()
    };
    let app = TestApp::spawn_on(db, &[("DATABASE_URL", proxied_url.as_str())]).await;
    let (_, token, _) = app.register("outage@example.com").await;

    proxy.cut();
    let during = wait_for_status(
        &app,
        "/readyz",
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    let command = app
        .post(
            "/api/v1/posts",
            Some(&token),
            serde_json::json!({"title": "t", "body": "b"}),
        )
        .await;
    proxy.restore();
    let after = wait_for_status(&app, "/readyz", StatusCode::OK, Duration::from_secs(10)).await;
    let command_after = app
        .post(
            "/api/v1/posts",
            Some(&token),
            serde_json::json!({"title": "t", "body": "b"}),
        )
        .await;

    assert_eq!(during, StatusCode::SERVICE_UNAVAILABLE);
    problem(
        command,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    assert_eq!(after, StatusCode::OK);
    assert_eq!(command_after.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn readyz_answers_503_with_its_own_report_while_postgres_is_down() {
    let db = TestDatabase::create().await;
    let upstream = {
        let options: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
        format!("{}:{}", options.get_host(), options.get_port())
    };
    let proxy = ChaosProxy::start(upstream).await;
    let proxied_url = {
        use sqlx::ConnectOptions;
        let options: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
        options
            .host("127.0.0.1")
            .port(proxy.port)
            .to_url_lossy()
            .to_string()
    };
    let app = TestApp::spawn_on(db, &[("DATABASE_URL", proxied_url.as_str())]).await;

    proxy.cut();
    let status = wait_for_status(
        &app,
        "/readyz",
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    let response = app.get("/readyz", None).await;
    proxy.restore();

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["postgres"], "down");
}
