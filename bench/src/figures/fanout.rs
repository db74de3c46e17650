//! Fan-out latency: commands at a fixed rate, each event's webhook received by a receiver in
//! this process; latency is the receipt time minus the event's `recorded_at` (the time its
//! transaction started, just before commit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::Ctx;
use crate::report::{Figure, Side, Subject, Target};
use crate::server::{post_body, Api};
use crate::stats::{percentile, Spread};

/// Aggregate id -> (recorded_at, received at).
type Receipts = Arc<Mutex<HashMap<String, (DateTime<Utc>, DateTime<Utc>)>>>;

async fn receive(State(receipts): State<Receipts>, Json(body): Json<Value>) -> StatusCode {
    let received = Utc::now();
    let recorded = body["timestamp"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let aggregate = body["metadata"]["aggregate_id"].as_str();
    if let (Some(recorded), Some(aggregate)) = (recorded, aggregate) {
        if let Ok(mut map) = receipts.lock() {
            map.insert(aggregate.to_owned(), (recorded, received));
        }
    }
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> anyhow::Result<(u16, Receipts)> {
    let receipts: Receipts = Arc::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receipts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((port, receipts))
}

/// Waits until every id has been received; returns the latencies in ms and how many are
/// missing at the deadline.
async fn collect(receipts: &Receipts, ids: &[String], wait: Duration) -> (Vec<f64>, usize) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (latencies, missing) = {
            let map = receipts.lock().map(|m| m.clone()).unwrap_or_default();
            let latencies: Vec<f64> = ids
                .iter()
                .filter_map(|id| map.get(id))
                .map(|(recorded, received)| {
                    (*received - *recorded).num_microseconds().unwrap_or(0) as f64 / 1000.0
                })
                .collect();
            let missing = ids.len() - latencies.len();
            (latencies, missing)
        };
        if missing == 0 || tokio::time::Instant::now() > deadline {
            return (latencies, missing);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `count` commands at `rate` per second (open loop: a slow answer does not delay the
/// next command); returns the created posts' ids.
async fn send(api: &Api, token: &str, rate: u32, count: usize) -> anyhow::Result<Vec<String>> {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        ticks.tick().await;
        let (api, token) = (api.clone(), token.to_owned());
        tasks.spawn(async move { api.create_post(&token, &post_body(n)).await });
    }
    let mut ids = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        let created = done??;
        ids.push(
            created["id"]
                .as_str()
                .context("a post without an id")?
                .to_owned(),
        );
    }
    Ok(ids)
}

pub async fn fanout(ctx: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let s = &ctx.settings;
    let (_, config) = ctx.database("fanout").await?;
    config.create_admin("admin@bench.example").await?;
    let server = config.serve("fanout").await?;
    let api = Api::new(server.base());
    let admin = api.login("admin@bench.example").await?;
    let author = api.register("poster@bench.example").await?;
    let (port, receipts) = start_receiver().await?;
    api.post_json(
        &admin.access,
        "/api/v1/webhooks",
        &json!({"url": format!("http://127.0.0.1:{port}/hook"), "event_types": ["post.created"]}),
    )
    .await?;
    eprintln!("  fan-out: warming up");
    let warm = send(&api, &author.access, s.fanout_rate, s.fanout_rate as usize).await?;
    let (_, missing) = collect(&receipts, &warm, Duration::from_secs(60)).await;
    if missing > 0 {
        bail!("{missing} warm-up webhooks never arrived");
    }
    let count = (u64::from(s.fanout_rate) * s.fanout_secs) as usize;
    let (mut p50, mut p99, mut max, mut lost) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let mut costs = Vec::new();
    for run in 1..=s.runs {
        eprintln!("  fan-out at {}/s: run {run}/{}", s.fanout_rate, s.runs);
        let watch = ctx.watch(Some(&server));
        let meter = crate::procs::CpuMeter::start(watch.server, watch.postmaster);
        let transactions = crate::load::cluster_transactions(watch.pg_port).await;
        let ids = send(&api, &author.access, s.fanout_rate, count).await?;
        let (mut latencies, missing) = collect(&receipts, &ids, Duration::from_secs(30)).await;
        // Everything a command causes, up to its webhook: the command, the projectors, the
        // relay, the consumers and the delivery.
        costs.push(crate::load::Outcome {
            rate: f64::NAN,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            ops: ids.len() as u64,
            errors: 0,
            cpu: meter.stop(),
            pg_transactions: crate::load::cluster_transactions(watch.pg_port).await - transactions,
        });
        latencies.sort_by(f64::total_cmp);
        lost += missing;
        p50.push(percentile(&latencies, 50.0));
        p99.push(percentile(&latencies, 99.0));
        max.push(latencies.last().copied().unwrap_or(f64::NAN));
    }
    server.stop().await?;
    let mut figure = ctx.figure(
        "fanout",
        &format!(
            "fan-out latency: commit to webhook received, at {} commands/s",
            s.fanout_rate
        ),
        Side::new("Chronicle", "ms p50", Spread::of(p50.clone()))
            .latencies(Spread::of(p50), Spread::of(p99)),
        Target {
            subject: Subject::P99,
            at_least: false,
            bound: 100.0,
        },
    );
    figure.notes.push(format!(
        "{count} POST /posts per run at {}/s (open loop), one webhook endpoint for post.created on 127.0.0.1; latency = receipt - recorded_at; max {:.1} ms; {lost} webhooks missing after 30 s",
        s.fanout_rate,
        Spread::of(max).median
    ));
    figure
        .notes
        .push(super::cpu_note("Chronicle, command to webhook", &costs));
    Ok(vec![figure])
}
