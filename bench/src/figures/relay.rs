//! Relay throughput: a backlog of events published to JetStream by `chronicle worker`, timed
//! by the relay's checkpoint, against pipelined JetStream publishing (1,000 in flight) of
//! messages of the same size to a stream with the same settings.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::HeaderMap;
use sqlx::postgres::PgPoolOptions;

use super::{cpu_note, ratios, side, Ctx};
use crate::load::Outcome;
use crate::procs::CpuMeter;
use crate::report::{Figure, Target};
use crate::seed::{self, relay_settings, PostSeed};
use crate::server::{ServerConfig, POST_TEXT};

pub async fn relay(ctx: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let s = &ctx.settings;
    let (url, config) = ctx.database("relay").await?;
    seed::post_events(
        &url,
        &PostSeed {
            posts: s.relay_events,
            history: 1,
            authors: &[],
            body: POST_TEXT,
            id_prefix: None,
        },
    )
    .await?;
    // Only the relay has work: the projectors start at the head.
    let head = seed::mark_projected(&url).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await?;
    let nats_url = ctx.services.nats.url();
    let js = async_nats::jetstream::new(async_nats::connect(&nats_url).await?);
    let postmaster = ctx.services.pg.postmaster_pid();

    let (mut chronicle, mut baseline) = (Vec::new(), Vec::new());
    let mut message_size = 0;
    for run in 1..=s.runs {
        eprintln!("  relay of {} events: run {run}/{}", s.relay_events, s.runs);
        // A new stream per run: the relay starts from the beginning of the log each time.
        let config = ServerConfig {
            stream: format!("RELAY{run}"),
            ..config.clone()
        };
        let worker = config.worker(&format!("relay-{run}"))?;
        let meter = CpuMeter::start(Some(worker.pid), postmaster);
        let transactions = crate::load::cluster_transactions(Some(ctx.services.pg.port())).await;
        // The harness's own looks at the checkpoint, taken off the count below.
        let mut looks = 0.0;
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut first: Option<(Instant, i64)> = None;
        let finished = loop {
            looks += 1.0;
            let checkpoint: Option<(i64, i64)> = sqlx::query_as(
                "SELECT transaction_id, position FROM relay_checkpoints WHERE stream = $1",
            )
            .bind(&config.stream)
            .fetch_optional(&pool)
            .await?;
            let now = Instant::now();
            if let Some((tx, pos)) = checkpoint.filter(|c| c.1 > 0) {
                if first.is_none() {
                    looks += 1.0;
                    let done: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM events WHERE (transaction_id, position) <= ($1::bigint::text::xid8, $2)",
                    )
                    .bind(tx)
                    .bind(pos)
                    .fetch_one(&pool)
                    .await?;
                    first = Some((now, done));
                }
                if (tx, pos) == (head.transaction_id, head.position) {
                    break now;
                }
            }
            if now > deadline {
                bail!("the relay did not reach the head in time");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let cpu = meter.stop();
        let pg_transactions = crate::load::cluster_transactions(Some(ctx.services.pg.port())).await
            - transactions
            - looks;
        worker.stop().await?;
        let (started, done) = first.context("the relay never checkpointed")?;
        let relayed = (s.relay_events - done).max(1);
        chronicle.push(Outcome {
            rate: relayed as f64 / finished.duration_since(started).as_secs_f64().max(1e-3),
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            ops: relayed as u64,
            errors: 0,
            cpu,
            pg_transactions: pg_transactions.max(0.0),
        });
        let mut stream = js.get_stream(&config.stream).await?;
        let info = stream.info().await?.clone();
        let last = stream.get_raw_message(info.state.last_sequence).await?;
        message_size = last.payload.len();
        js.delete_stream(&config.stream).await?;

        eprintln!(
            "  pipelined publishing of {} messages: run {run}/{}",
            s.relay_events, s.runs
        );
        baseline.push(publish_raw(ctx, &js, run, message_size).await?);
    }
    let rate = |runs: &[Outcome]| runs.iter().map(|o| o.rate).collect::<Vec<_>>();
    let mut figure = ctx.figure(
        "relay",
        &format!(
            "relay throughput: events published to JetStream from a backlog of {}",
            s.relay_events
        ),
        side("Chronicle", "events/s", &chronicle),
        Target::ratio_at_least(0.5),
    );
    figure.chronicle.p50_ms = None;
    figure.chronicle.p99_ms = None;
    let mut raw = side(
        &format!("pipelined publish ({} in flight)", s.relay_in_flight),
        "msgs/s",
        &baseline,
    );
    raw.p50_ms = None;
    raw.p99_ms = None;
    figure.baseline = Some(raw);
    figure.ratio = Some(ratios(&rate(&chronicle), &rate(&baseline)));
    figure.notes.push(format!(
        "`chronicle worker` (relay, plus the analytics and webhook consumers reading the same stream) from checkpoint zero to the head; CloudEvent payloads of {message_size} bytes, the baseline sends the same size with a Nats-Msg-Id each"
    ));
    figure.notes.push(cpu_note("chronicle worker", &chronicle));
    figure
        .notes
        .push(cpu_note("pipelined publisher (the harness)", &baseline));
    Ok(vec![figure])
}

async fn publish_raw(
    ctx: &Ctx<'_>,
    js: &async_nats::jetstream::Context,
    run: usize,
    size: usize,
) -> anyhow::Result<Outcome> {
    let s = &ctx.settings;
    let settings = relay_settings(&ctx.services.nats.url(), &format!("RAWPUB{run}"));
    chronicle::fanout::relay::ensure_stream(js, &settings)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let subject = format!("{}.post.created", settings.subject_prefix);
    let payload = bytes_of(size);
    let meter = CpuMeter::start(Some(std::process::id()), None);
    let started = Instant::now();
    let mut in_flight = VecDeque::with_capacity(s.relay_in_flight);
    for _ in 0..s.relay_events {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string().as_str());
        let ack = js
            .publish_with_headers(subject.clone(), headers, payload.clone())
            .await?;
        in_flight.push_back(ack);
        if in_flight.len() >= s.relay_in_flight {
            if let Some(oldest) = in_flight.pop_front() {
                oldest.await?;
            }
        }
    }
    for ack in in_flight {
        ack.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = meter.stop();
    js.delete_stream(&settings.stream).await?;
    Ok(Outcome {
        rate: s.relay_events as f64 / secs,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        ops: s.relay_events as u64,
        errors: 0,
        cpu,
        pg_transactions: 0.0,
    })
}

fn bytes_of(size: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![b'x'; size])
}
