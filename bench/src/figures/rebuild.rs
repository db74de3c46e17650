//! Rebuilding the `posts` read model from a million events with `chronicle projections
//! rebuild posts`, against raw batched upserts (1,000 a statement) of the same rows into a
//! table with the same columns and indexes.

use std::time::Instant;

use anyhow::{ensure, Context};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;

use super::{cpu_note, ratios, side, Ctx};
use crate::load::Outcome;
use crate::procs::{self, CpuMeter};
use crate::report::{Figure, Target};
use crate::seed::{self, PostSeed, TAGS};

/// Rebuild posts carry a short body: the figure is about the projector, and a million
/// 500-byte bodies would spend the run in the full-text index.
const BODY: &str =
    "A seeded post for the rebuild benchmark, with a body of about a hundred bytes of text.";
const BATCH: usize = 1_000;

type Row = (uuid::Uuid, uuid::Uuid, String, DateTime<Utc>);

pub async fn rebuild(ctx: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let s = &ctx.settings;
    let (url, config) = ctx.database("rebuild").await?;
    seed::post_events(
        &url,
        &PostSeed {
            posts: s.rebuild_events,
            history: 1,
            authors: &[],
            body: BODY,
            id_prefix: None,
        },
    )
    .await?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    sqlx::query("CREATE TABLE bench_posts (LIKE posts_view INCLUDING ALL)")
        .execute(&pool)
        .await?;
    // Warm-up: the log is read once, so the first rebuild does not pay for a cold cache.
    sqlx::query("SELECT count(*) FROM events")
        .execute(&pool)
        .await?;
    let postmaster = ctx.services.pg.postmaster_pid();
    let events = s.rebuild_events as f64;
    let mut rows: Vec<Row> = Vec::new();
    let (mut chronicle, mut baseline) = (Vec::new(), Vec::new());
    for run in 1..=s.runs {
        eprintln!(
            "  rebuild of {} events: run {run}/{}",
            s.rebuild_events, s.runs
        );
        let meter = CpuMeter::start(None, postmaster);
        let port = Some(ctx.services.pg.port());
        let transactions = crate::load::cluster_transactions(port).await;
        // The CLI's CPU lands in ours once it has been waited for.
        let cli_cpu = procs::reaped_children_cpu_seconds();
        let started = Instant::now();
        let output = config
            .cli(&["projections", "rebuild", "posts"], None)
            .await?;
        let secs = started.elapsed().as_secs_f64();
        let mut cpu = meter.stop();
        let pg_transactions = crate::load::cluster_transactions(port).await - transactions;
        cpu.server_secs = procs::reaped_children_cpu_seconds() - cli_cpu;
        ensure!(
            output.contains(&format!("{} events applied", s.rebuild_events)),
            "the rebuild applied another number of events: {output}"
        );
        chronicle.push(Outcome {
            rate: events / secs,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            ops: s.rebuild_events as u64,
            errors: 0,
            cpu,
            pg_transactions,
        });
        if rows.is_empty() {
            rows = sqlx::query_as("SELECT id, author_id, title, created_at FROM posts_view")
                .fetch_all(&pool)
                .await?;
            ensure!(
                rows.len() as i64 == s.rebuild_events,
                "the rebuild made {} rows",
                rows.len()
            );
        }

        eprintln!(
            "  batched upserts of {} rows: run {run}/{}",
            rows.len(),
            s.runs
        );
        sqlx::query("TRUNCATE bench_posts").execute(&pool).await?;
        let meter = CpuMeter::start(None, postmaster);
        let transactions = crate::load::cluster_transactions(port).await;
        let started = Instant::now();
        for batch in rows.chunks(BATCH) {
            upsert(&pool, batch).await?;
        }
        let secs = started.elapsed().as_secs_f64();
        let pg_transactions = crate::load::cluster_transactions(port).await - transactions;
        baseline.push(Outcome {
            rate: rows.len() as f64 / secs,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            ops: rows.len() as u64,
            errors: 0,
            cpu: meter.stop(),
            pg_transactions,
        });
    }
    let rate = |runs: &[Outcome]| runs.iter().map(|o| o.rate).collect::<Vec<_>>();
    let mut figure = ctx.figure(
        "rebuild",
        &format!("projection rebuild of {} events (posts)", s.rebuild_events),
        side("Chronicle", "events/s", &chronicle),
        Target::ratio_at_least(0.8),
    );
    figure.chronicle.p50_ms = None;
    figure.chronicle.p99_ms = None;
    let mut raw = side("batched upserts (sqlx, 1,000 a batch)", "rows/s", &baseline);
    raw.p50_ms = None;
    raw.p99_ms = None;
    figure.baseline = Some(raw);
    figure.ratio = Some(ratios(&rate(&chronicle), &rate(&baseline)));
    figure.notes.push(format!(
        "{} post.created events seeded by SQL; wall time of `chronicle projections rebuild posts` (shadow tables with every index, swap) vs upserts of the resulting rows into a `LIKE posts_view INCLUDING ALL` table",
        s.rebuild_events
    ));
    figure
        .notes
        .push(cpu_note("rebuild (Postgres side)", &chronicle));
    figure
        .notes
        .push(cpu_note("batched upserts (Postgres side)", &baseline));
    Ok(vec![figure])
}

async fn upsert(pool: &sqlx::PgPool, batch: &[Row]) -> anyhow::Result<()> {
    let ids: Vec<uuid::Uuid> = batch.iter().map(|r| r.0).collect();
    let authors: Vec<uuid::Uuid> = batch.iter().map(|r| r.1).collect();
    let titles: Vec<&str> = batch.iter().map(|r| r.2.as_str()).collect();
    let created: Vec<DateTime<Utc>> = batch.iter().map(|r| r.3).collect();
    sqlx::query(
        "INSERT INTO bench_posts (id, author_id, title, body, tags, status, created_at, updated_at, version)
         SELECT r.id, r.author_id, r.title, $4, $5, 'draft', r.created_at, r.created_at, 1
           FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $6::timestamptz[]) AS r(id, author_id, title, created_at)
         ON CONFLICT (id) DO UPDATE SET author_id = EXCLUDED.author_id, title = EXCLUDED.title,
             body = EXCLUDED.body, tags = EXCLUDED.tags, status = EXCLUDED.status,
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, version = EXCLUDED.version",
    )
    .bind(&ids)
    .bind(&authors)
    .bind(&titles)
    .bind(BODY)
    .bind(TAGS.as_slice())
    .bind(&created)
    .execute(pool)
    .await
    .context("upserting a batch")?;
    Ok(())
}
