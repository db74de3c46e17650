//! Postgres unreachable under load: quick 503 problems instead of hangs or 500s, and recovery
//! without a restart, with the projectors and the relay going on where they stopped.

use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};

use crate::checks::{
    assert_acked_in_log_and_stream, assert_exactly_once_in_order, log_ids, read_model_has,
    stream_caught_up,
};
use crate::helpers::{TestApp, TestDatabase};
use crate::load::{acked_ids, sign_up, Load};
use crate::support::{eventually, ChaosProxy};

/// The longest a request may take while the database is away: the pool's acquire timeout
/// (3 s) and a margin for this shared 2-core machine.
const BOUND: Duration = Duration::from_secs(5);

#[tokio::test]
async fn with_postgres_unreachable_for_ten_seconds_under_load_requests_get_quick_503s_and_service_resumes_by_itself(
) {
    let db = TestDatabase::create().await;
    let options: PgConnectOptions = db.url.parse().expect("database URL");
    let proxy = ChaosProxy::start(format!("{}:{}", options.get_host(), options.get_port())).await;
    let proxied = options
        .clone()
        .host("127.0.0.1")
        .port(proxy.port)
        .to_url_lossy()
        .to_string();
    // The test's own view of the database goes around the proxy.
    let direct = PgPool::connect(&db.url).await.expect("direct pool");
    let app = TestApp::spawn_on(db, &[("DATABASE_URL", proxied.as_str())]).await;
    let token = sign_up(&app.address, "outage@example.com").await;
    let load = Load::start(&app.address, &token, 8);
    load.wait_for_acked(0, 20, Duration::from_secs(20)).await;

    proxy.cut();
    let cut = Instant::now();
    let read_during = app.get("/api/v1/posts", Some(&token)).await;
    let read_during = (
        read_during.status().as_u16(),
        read_during
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    );
    tokio::time::sleep_until((cut + Duration::from_secs(10)).into()).await;
    proxy.restore();
    let restored = Instant::now();
    load.wait_for_acked(load.acked(), 20, Duration::from_secs(20))
        .await;
    let outcomes = load.stop().await;
    let acked = acked_ids(&outcomes);
    read_model_has(&direct, &acked, Duration::from_secs(30)).await;
    let config = &app.state.config;
    let messages = stream_caught_up(
        &direct,
        &config.nats_url,
        &config.nats_stream,
        Duration::from_secs(30),
    )
    .await;
    let statuses: Vec<(String, String)> = eventually(
        Duration::from_secs(10),
        "the projectors to run again",
        || {
            let direct = &direct;
            async move {
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT name, status FROM projection_checkpoints")
                        .fetch_all(direct)
                        .await
                        .ok()?;
                rows.iter().all(|(_, s)| s == "running").then_some(rows)
            }
        },
    )
    .await;

    // Sent while the database was away (answered before or after it came back).
    let during: Vec<_> = outcomes
        .iter()
        .filter(|o| o.sent >= cut && o.sent < restored)
        .collect();
    let refused = during
        .iter()
        .filter(|o| {
            o.status == Some(503)
                && o.content_type == "application/problem+json"
                && o.code.as_deref() == Some("SERVICE_UNAVAILABLE")
        })
        .count();
    assert!(
        refused >= 8,
        "only {refused} commands got a 503 during the outage"
    );
    let wrong: Vec<_> = during
        .iter()
        .filter(|o| !(o.acked() || (o.status == Some(503) && o.content_type.contains("problem"))))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} answers during the outage were neither 2xx nor a 503 problem, e.g. {:?}",
        wrong.len(),
        wrong.first()
    );
    let slowest = during.iter().map(|o| o.latency).max().unwrap_or_default();
    assert!(
        slowest <= BOUND,
        "a request took {slowest:?} while the database was away"
    );
    let unanswered = outcomes.iter().filter(|o| o.status.is_none()).count();
    assert_eq!(unanswered, 0, "every request got an HTTP answer");
    assert_eq!(
        read_during,
        (503, "application/problem+json".to_owned()),
        "reads are 503 problems too"
    );
    let back = outcomes
        .iter()
        .filter(|o| o.acked() && o.sent + o.latency >= restored)
        .map(|o| o.sent + o.latency - restored)
        .min()
        .expect("commands succeeded after the outage");
    assert!(
        back <= Duration::from_secs(5),
        "the first 2xx came {back:?} after Postgres returned"
    );
    assert!(!statuses.is_empty());
    assert_acked_in_log_and_stream(&direct, &acked, &messages).await;
    assert_exactly_once_in_order(&messages, &log_ids(&direct).await);
}
