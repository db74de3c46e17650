//! What traces cost: `GET /posts/{id}` and `POST /posts` on a server that exports every trace
//! and on one that samples 1 %, each against a server with no OTLP endpoint (tracing off), all
//! three on the same database and measured in interleaved runs. The spans go to an OTLP/HTTP
//! receiver in this process that accepts and discards them, so the figure is Chronicle's own
//! cost of making and exporting spans, not a collector's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};

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

struct Modes {
    off: Server,
    all: Server,
    one_percent: Server,
}

impl Modes {
    fn each(&self) -> [&Server; 3] {
        [&self.off, &self.all, &self.one_percent]
    }
}

pub async fn overhead(ctx: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let s = &ctx.settings;
    let clients = s.concurrency.first().copied().unwrap_or(8);
    let sink = OtlpSink::start().await?;
    let (_, config) = ctx.database("tracing").await?;
    let modes = Modes {
        off: config.serve("tracing-off").await?,
        all: traced(&config, &sink, "1.0").serve("tracing-all").await?,
        one_percent: traced(&config, &sink, "0.01")
            .serve("tracing-one-percent")
            .await?,
    };
    let api = Api::new(modes.off.base());
    let writers = api.register_many("traced", clients).await?;
    eprintln!("  creating {} published posts", s.read_posts);
    let token = writers
        .first()
        .map(|w| w.access.clone())
        .context("no writer")?;
    let ids: Vec<String> = futures::stream::iter(0..s.read_posts)
        .map(|n| {
            let (api, token) = (api.clone(), token.clone());
            async move {
                let mut post = post_body(n);
                post["status"] = "published".into();
                let created = api.create_post(&token, &post).await?;
                created["id"]
                    .as_str()
                    .map(str::to_owned)
                    .context("a created post without an id")
            }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let work = ctx.work_dir();
    let ids_lua: Vec<String> = ids.iter().map(|id| lua_str(id)).collect();
    let get = load::lua_script(
        &work,
        "traced-get",
        &format!("ids = {{{}}}", ids_lua.join(",")),
        load::GET_POST,
    )?;
    let tokens: Vec<String> = writers.iter().map(|u| lua_str(&u.access)).collect();
    let body = serde_json::to_string(&post_body(0))?;
    let create = load::lua_script(
        &work,
        "traced-create",
        &format!(
            "tokens = {{{}}}\nbody = {}",
            tokens.join(", "),
            lua_str(&body)
        ),
        load::CREATE_POST,
    )?;

    let mut figures = Vec::new();
    for (what, script, id) in [
        ("GET /posts/{id}", &get, "reads"),
        ("POST /posts", &create, "commands"),
    ] {
        for server in modes.each() {
            load::wrk(
                server.base(),
                clients,
                s.warmup_secs,
                script,
                ctx.watch(Some(server)),
            )
            .await?;
        }
        let mut runs: [Vec<Outcome>; 3] = Default::default();
        for run in 1..=s.runs {
            eprintln!("  {what} traced, {clients} clients: run {run}/{}", s.runs);
            for (server, outcomes) in modes.each().into_iter().zip(runs.iter_mut()) {
                let outcome = load::wrk(
                    server.base(),
                    clients,
                    s.run_secs,
                    script,
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
    for server in [modes.off, modes.all, modes.one_percent] {
        server.stop().await?;
    }
    Ok(figures)
}

fn rates(outcomes: &[Outcome]) -> Vec<f64> {
    outcomes.iter().map(|o| o.rate).collect()
}
