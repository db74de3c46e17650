//! What traces cost: `GET /posts/{id}` and `POST /posts` on a server that exports every trace
//! and on one that samples 1 %, each against a server with no OTLP endpoint (tracing off), all
//! three on the same database and measured in interleaved runs. The spans go to an OTLP/HTTP
//! receiver in this process that accepts and discards them, so the figure is Chronicle's own
//! cost of making and exporting spans, not a collector's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;

use super::{check, cpu_note, ratios, side, Ctx};
use crate::load::{self, lua_str, Outcome};
use crate::report::{Figure, Target};
use crate::server::{post_body, Api, Server, ServerConfig};
use crate::services::free_port;

/// Accepts OTLP/HTTP exports and counts them.
struct OtlpSink {
    endpoint: String,
    exports: Arc<AtomicU64>,
}

impl OtlpSink {
    async fn start() -> anyhow::Result<Self> {
        let exports = Arc::new(AtomicU64::new(0));
        let counted = exports.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |_body: axum::body::Bytes| {
                counted.fetch_add(1, Ordering::Relaxed);
                // An empty body is an empty ExportTraceServiceResponse: everything accepted.
                async {
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let port = free_port()?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            exports,
        })
    }
}

/// A server exporting to `sink` with the given sampling ratio.
fn traced(config: &ServerConfig, sink: &OtlpSink, ratio: &str) -> ServerConfig {
    let mut config = config.clone();
    config.env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), sink.endpoint.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/protobuf".into()),
        (
            "OTEL_TRACES_SAMPLER".into(),
            "parentbased_traceidratio".into(),
        ),
        ("OTEL_TRACES_SAMPLER_ARG".into(), ratio.into()),
    ];
    config
}

/// One server under test: the only instance on its own database, seeded with posts to read
/// and writers (a second instance on the same database would answer commands only once the
/// first one's projectors had applied them, which is not what is measured here).
struct Mode {
    server: Server,
    get: std::path::PathBuf,
    create: std::path::PathBuf,
}

impl Mode {
    async fn start(
        ctx: &Ctx<'_>,
        name: &str,
        traces: Option<(&OtlpSink, &str)>,
    ) -> anyhow::Result<Self> {
        let s = &ctx.settings;
        let clients = s.concurrency.first().copied().unwrap_or(8);
        let (_, config) = ctx.database(name).await?;
        let config = match traces {
            Some((sink, ratio)) => traced(&config, sink, ratio),
            None => config,
        };
        let server = config.serve(name).await?;
        let api = Api::new(server.base());
        let writers = api.register_many(name, clients).await?;
        let token = writers
            .first()
            .map(|w| w.access.clone())
            .context("no writer")?;
        eprintln!("  {name}: creating {} published posts", s.read_posts);
        let ids = api.published_posts(&token, s.read_posts).await?;
        let work = ctx.work_dir();
        let ids_lua: Vec<String> = ids.iter().map(|id| lua_str(id)).collect();
        let get = load::lua_script(
            &work,
            &format!("{name}-get"),
            &format!("ids = {{{}}}", ids_lua.join(",")),
            load::GET_POST,
        )?;
        let tokens: Vec<String> = writers.iter().map(|u| lua_str(&u.access)).collect();
        let body = serde_json::to_string(&post_body(0))?;
        let create = load::lua_script(
            &work,
            &format!("{name}-create"),
            &format!(
                "tokens = {{{}}}\nbody = {}",
                tokens.join(", "),
                lua_str(&body)
            ),
            load::CREATE_POST,
        )?;
        Ok(Self {
            server,
            get,
            create,
        })
    }
}

pub async fn overhead(ctx: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let s = &ctx.settings;
    let clients = s.concurrency.first().copied().unwrap_or(8);
    let sink = OtlpSink::start().await?;
    let modes = [
        Mode::start(ctx, "tracing_off", None).await?,
        Mode::start(ctx, "tracing_all", Some((&sink, "1.0"))).await?,
        Mode::start(ctx, "tracing_one_percent", Some((&sink, "0.01"))).await?,
    ];

    let mut figures = Vec::new();
    for (what, id) in [("GET /posts/{id}", "reads"), ("POST /posts", "commands")] {
        let script = |mode: &Mode| {
            if id == "reads" {
                mode.get.clone()
            } else {
                mode.create.clone()
            }
        };
        for mode in &modes {
            let server = &mode.server;
            load::wrk(
                server.base(),
                clients,
                s.warmup_secs,
                &script(mode),
                ctx.watch(Some(server)),
            )
            .await?;
        }
        let mut runs: [Vec<Outcome>; 3] = Default::default();
        for run in 1..=s.runs {
            eprintln!("  {what} traced, {clients} clients: run {run}/{}", s.runs);
            for (mode, outcomes) in modes.iter().zip(runs.iter_mut()) {
                let server = &mode.server;
                let outcome = load::wrk(
                    server.base(),
                    clients,
                    s.run_secs,
                    &script(mode),
                    ctx.watch(Some(server)),
                )
                .await?;
                outcomes.push(check(&outcome, what)?);
            }
        }
        let [off, all, one_percent] = runs;
        for (sampled, label, outcomes) in [
            ("all", "every trace", &all),
            ("1pct", "1 % of traces", &one_percent),
        ] {
            let mut figure = ctx.figure(
                &format!("tracing_{id}_{sampled}"),
                &format!(
                    "{what} with traces exported ({label}) against tracing off, {clients} clients"
                ),
                side(&format!("exporting {label}"), "req/s", outcomes),
                Target::ratio_at_least(0.9),
            );
            figure.concurrency = Some(clients);
            figure.baseline = Some(side("tracing off", "req/s", &off));
            figure.ratio = Some(ratios(&rates(outcomes), &rates(&off)));
            figure
                .notes
                .push(cpu_note(&format!("exporting {label}"), outcomes));
            figure.notes.push(cpu_note("tracing off", &off));
            figures.push(figure);
        }
    }
    let exports = sink.exports.load(Ordering::Relaxed);
    anyhow::ensure!(exports > 0, "the traced servers exported no spans");
    if let Some(figure) = figures.last_mut() {
        figure.notes.push(format!(
            "the OTLP receiver accepted {exports} export requests"
        ));
    }
    for mode in modes {
        mode.server.stop().await?;
    }
    Ok(figures)
}

fn rates(outcomes: &[Outcome]) -> Vec<f64> {
    outcomes.iter().map(|o| o.rate).collect()
}
