//! Point reads (`GET /posts/{id}`) against a minimal axum + sqlx server reading the same row,
//! and a cursor page deep in a million posts against the first page, both over HTTP with the
//! same load generator.

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use base64::Engine;
use serde_json::Value;

use super::{check, cpu_note, ratios, side, Ctx};
use crate::load::{self, lua_str, Outcome};
use crate::report::{Figure, Side, Subject, Target};
use crate::seed;
use crate::server::Api;
use crate::services::free_port;
use crate::stats::Spread;

/// The baseline server, a child process of this harness (killed on drop).
struct Baseline {
    child: tokio::process::Child,
    base: String,
}

impl Baseline {
    async fn start(ctx: &Ctx<'_>, database_url: &str) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = tokio::process::Command::new(&ctx.harness)
            .args(["baseline-server", "--database-url", database_url, "--port"])
            .arg(port.to_string())
            .kill_on_drop(true)
            .spawn()
            .context("starting the baseline server")?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(format!("{base}/healthz")).send().await.is_ok() {
                return Ok(Self { child, base });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the baseline server did not start")
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

pub async fn point_reads(ctx: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let s = &ctx.settings;
    let (url, config) = ctx.database("reads").await?;
    let server = config.serve("reads").await?;
    let api = Api::new(server.base());
    let author = api.register("reader@bench.example").await?;
    eprintln!("  creating {} published posts", s.read_posts);
    let ids = api.published_posts(&author.access, s.read_posts).await?;
    let baseline = Baseline::start(ctx, &url).await?;
    let ids_lua: Vec<String> = ids.iter().map(|id| lua_str(id)).collect();
    let script = load::lua_script(
        &ctx.work_dir(),
        "get",
        &format!("ids = {{{}}}", ids_lua.join(",")),
        load::GET_POST,
    )?;
    let chronicle_watch = ctx.watch(Some(&server));
    let baseline_watch = load::Watch {
        server: baseline.pid(),
        ..chronicle_watch
    };

    let mut figures = Vec::new();
    for &c in &s.concurrency {
        eprintln!("  GET /posts/{{id}}, {c} clients: warming up");
        load::wrk(server.base(), c, s.warmup_secs, &script, chronicle_watch).await?;
        load::wrk(&baseline.base, c, s.warmup_secs, &script, baseline_watch).await?;
        let (mut chronicle, mut minimal) = (Vec::new(), Vec::new());
        for run in 1..=s.runs {
            eprintln!("  GET /posts/{{id}}, {c} clients: run {run}/{}", s.runs);
            let outcome = load::wrk(server.base(), c, s.run_secs, &script, chronicle_watch).await?;
            chronicle.push(check(&outcome, "GET /posts/{id}")?);
            let outcome = load::wrk(&baseline.base, c, s.run_secs, &script, baseline_watch).await?;
            minimal.push(check(&outcome, "baseline GET")?);
        }
        let mut figure = ctx.figure(
            &format!("reads_c{c}"),
            &format!("point read: GET /posts/{{id}}, {c} clients"),
            side("Chronicle", "req/s", &chronicle),
            Target::ratio_at_least(0.8),
        );
        figure.concurrency = Some(c);
        figure.baseline = Some(side("minimal axum + sqlx", "req/s", &minimal));
        figure.ratio = Some(ratios(&rates(&chronicle), &rates(&minimal)));
        figure.notes.push(cpu_note("Chronicle", &chronicle));
        figure.notes.push(cpu_note("minimal axum + sqlx", &minimal));
        figures.push(figure);
    }
    drop(baseline);
    server.stop().await?;
    Ok(figures)
}

fn rates(outcomes: &[Outcome]) -> Vec<f64> {
    outcomes.iter().map(|o| o.rate).collect()
}

/// Posts here are short (the list's cost is the index walk, not the body).
const SHORT_BODY: &str = "A seeded post for the deep-page benchmark.";
const LIMIT: i64 = 20;

pub async fn deep_page(ctx: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let s = &ctx.settings;
    let (url, config) = ctx.database("deep").await?;
    seed::published_rows(&url, s.deep_rows, SHORT_BODY).await?;
    let server = config.serve("deep").await?;
    let api = Api::new(server.base());
    let first_path = format!("/api/v1/posts?limit={LIMIT}");
    let cursor = deep_cursor(&url, &api, &first_path, s.deep_page).await?;
    let deep_path = format!("{first_path}&cursor={cursor}");
    let deep = api.get_json(&deep_path).await?;
    ensure!(
        deep["data"]
            .as_array()
            .is_some_and(|items| !items.is_empty()),
        "page {} is empty",
        s.deep_page
    );
    let script = load::lua_script(&ctx.work_dir(), "page", "", "")?;
    let watch = ctx.watch(Some(&server));
    let first_url = api.url(&first_path);
    let deep_url = api.url(&deep_path);
    eprintln!("  first page and page {}: warming up", s.deep_page);
    load::wrk(&first_url, 1, s.warmup_secs, &script, watch).await?;
    load::wrk(&deep_url, 1, s.warmup_secs, &script, watch).await?;
    let (mut first, mut deep) = (Vec::new(), Vec::new());
    for run in 1..=s.runs {
        eprintln!(
            "  first page and page {}: run {run}/{}",
            s.deep_page, s.runs
        );
        first.push(check(
            &load::wrk(&first_url, 1, s.run_secs, &script, watch).await?,
            "first page",
        )?);
        deep.push(check(
            &load::wrk(&deep_url, 1, s.run_secs, &script, watch).await?,
            "deep page",
        )?);
    }
    server.stop().await?;
    let p50 = |runs: &[Outcome]| Spread::of(runs.iter().map(|o| o.p50_ms).collect());
    let p99 = |runs: &[Outcome]| Spread::of(runs.iter().map(|o| o.p99_ms).collect());
    let mut figure = ctx.figure(
        "deep_page",
        &format!(
            "deep page: cursor page {} vs the first, {} posts, 1 client",
            s.deep_page, s.deep_rows
        ),
        Side::new("Chronicle page deep", "ms p50", p50(&deep)).latencies(p50(&deep), p99(&deep)),
        Target {
            subject: Subject::Ratio,
            at_least: false,
            bound: 1.3,
        },
    );
    figure.baseline =
        Some(Side::new("first page", "ms p50", p50(&first)).latencies(p50(&first), p99(&first)));
    figure.ratio = Some(ratios(
        &deep.iter().map(|o| o.p50_ms).collect::<Vec<_>>(),
        &first.iter().map(|o| o.p50_ms).collect::<Vec<_>>(),
    ));
    figure.notes.push(format!(
        "posts_view seeded by SQL with {} published posts (the list reads nothing else); GET /api/v1/posts?limit={LIMIT} with and without the cursor of page {}, by wrk with one connection",
        s.deep_rows, s.deep_page
    ));
    figure.notes.push(cpu_note("deep page", &deep));
    Ok(vec![figure])
}

/// The signed cursor that starts page `page`. Walking 50,000 pages to get it would take the
/// whole run, so it is signed here with the server's own key and encoding, after checking
/// that they reproduce the first page's `next_cursor` exactly.
async fn deep_cursor(url: &str, api: &Api, first_path: &str, page: i64) -> anyhow::Result<String> {
    use sqlx::Connection;
    let config = chronicle::config::Config::from_lookup(|name| match name {
        "JWT_SECRET" => Some(crate::server::JWT_SECRET.into()),
        "DATABASE_URL" => Some(url.into()),
        _ => None,
    })?;
    let state = chronicle::state::AppState::new(config, sqlx::PgPool::connect_lazy(url)?);
    let first = api.get_json(first_path).await?;
    let issued = first["pagination"]["next_cursor"]
        .as_str()
        .context("the first page has no next_cursor")?;
    let payload = issued.split('.').next().unwrap_or_default();
    let decoded: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    let sort = decoded["s"].as_str().context("a cursor without its sort")?;
    let values: Vec<String> = serde_json::from_value(decoded["v"].clone())?;
    let reissued = chronicle::http::listing::encode_cursor(sort, &values, &state.cursor_key);
    ensure!(
        reissued == issued,
        "the harness cannot reproduce the server's cursors; the cursor format changed"
    );
    let mut conn = sqlx::PgConnection::connect(url).await?;
    // The row that ends page `n - 1`, with the values rendered as the list endpoint does.
    let mut last_row_of = async |n: i64| -> anyhow::Result<Vec<String>> {
        let (created, id): (String, String) = sqlx::query_as(
            "SELECT created_at::text, id::text FROM posts_view WHERE status = 'published'
              ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
        )
        .bind(n * LIMIT - 1)
        .fetch_one(&mut conn)
        .await?;
        Ok(vec![created, id])
    };
    ensure!(
        last_row_of(1).await? == values,
        "the first page's cursor holds {values:?}, not the values the harness computes; the list's sort changed"
    );
    let deep = last_row_of(page - 1).await?;
    Ok(chronicle::http::listing::encode_cursor(
        sort,
        &deep,
        &state.cursor_key,
    ))
}
