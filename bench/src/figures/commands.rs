//! Command throughput (`POST /posts`), update throughput (`PATCH /posts/{id}` on posts with a
//! long history) and the server's peak memory under that load, against pgbench running the
//! raw SQL of one event-sourced command at the same concurrency.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{check, cpu_note, ratios, side, Ctx};
use crate::load::{self, lua_str, sql_str, Outcome};
use crate::report::{Figure, Side, Subject, Target};
use crate::seed::{self, PostSeed};
use crate::server::{post_body, Api, User, POST_TEXT};
use crate::stats::{human, Spread};

const EVENT_COLUMNS: &str =
    "aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata";

/// The newest event of a type that the server itself wrote: the baseline inserts rows of
/// exactly its size.
async fn sample_event(url: &str, event_type: &str) -> anyhow::Result<(String, String)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query_as(
        "SELECT payload::text, metadata::text FROM events
          WHERE event_type = $1 AND metadata->>'correlation_id' NOT LIKE 'bench-seed%'
          ORDER BY position DESC LIMIT 1",
    )
    .bind(event_type)
    .fetch_optional(&mut conn)
    .await?
    .with_context(|| format!("the server wrote no {event_type} event to copy"))
}

fn write_script(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

fn tokens_lua(users: &[User]) -> String {
    let tokens: Vec<String> = users.iter().map(|u| lua_str(&u.access)).collect();
    format!("tokens = {{{}}}", tokens.join(", "))
}

pub async fn commands(ctx: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let s = &ctx.settings;
    let clients = s.concurrency.iter().copied().max().unwrap_or(1);
    let (url, config) = ctx.database("commands").await?;
    // Users sign up through a setup server; the measured one starts fresh, so its peak RSS is
    // the command load's and not argon2's.
    let setup = config.serve("commands-setup").await?;
    let users = Api::new(setup.base())
        .register_many("writer", clients)
        .await?;
    setup.stop().await?;
    let server = config.serve("commands").await?;
    ctx.database("commands_baseline").await?;
    let pgbench = ctx.pgbench("commands_baseline");
    let work = ctx.work_dir();
    let body = serde_json::to_string(&post_body(0))?;

    let mut figures = Vec::new();
    let mut sampled: Option<(PathBuf, PathBuf)> = None;
    for &c in &s.concurrency {
        let script = load::lua_script(
            &work,
            &format!("create-{c}"),
            &format!("{}\nbody = {}", tokens_lua(&users[..c]), lua_str(&body)),
            load::CREATE_POST,
        )?;
        let target_url = server.base();
        eprintln!("  POST /posts, {c} clients: warming up");
        load::wrk(
            target_url,
            c,
            s.warmup_secs,
            &script,
            ctx.watch(Some(&server)),
        )
        .await?;
        let (es_script, insert_script) = match &sampled {
            Some(scripts) => scripts.clone(),
            None => {
                let (payload, metadata) = sample_event(&url, "post.created").await?;
                let id = "md5(:client_id::text || '-' || :n::text)::uuid::text";
                let insert = format!(
                    "INSERT INTO events ({EVENT_COLUMNS}) VALUES ('post', {id}, 1, 'post.created', '1.0', {}, {});",
                    sql_str(&payload),
                    sql_str(&metadata)
                );
                let es = write_script(
                    &work,
                    "es-command.sql",
                    &format!(
                        "\\set n random(1, 4000000000000)\n\
                         SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = 'post' AND aggregate_id = {id} ORDER BY sequence;\n\
                         BEGIN;\n{insert}\nCOMMIT;\n"
                    ),
                )?;
                let raw = write_script(
                    &work,
                    "raw-insert.sql",
                    &format!("\\set n random(1, 4000000000000)\n{insert}\n"),
                )?;
                sampled = Some((es.clone(), raw.clone()));
                (es, raw)
            }
        };
        pgbench
            .run(&es_script, c, s.warmup_secs, ctx.watch(None))
            .await?;
        let (mut chronicle, mut es, mut insert) = (Vec::new(), Vec::new(), Vec::new());
        for run in 1..=s.runs {
            eprintln!("  POST /posts, {c} clients: run {run}/{}", s.runs);
            let outcome =
                load::wrk(target_url, c, s.run_secs, &script, ctx.watch(Some(&server))).await?;
            chronicle.push(check(&outcome, "POST /posts")?);
            es.push(
                pgbench
                    .run(&es_script, c, s.run_secs, ctx.watch(None))
                    .await?,
            );
            insert.push(
                pgbench
                    .run(&insert_script, c, s.run_secs, ctx.watch(None))
                    .await?,
            );
        }
        let mut figure = ctx.figure(
            &format!("commands_c{c}"),
            &format!("command throughput: POST /posts, {c} clients, read-your-writes"),
            side("Chronicle", "commands/s", &chronicle),
            Target::ratio_at_least(0.8),
        );
        figure.concurrency = Some(c);
        figure.baseline = Some(side("event-sourced SQL (pgbench)", "tps", &es));
        figure.ratio = Some(ratios(&rates(&chronicle), &rates(&es)));
        let insert_side = side("raw INSERT", "tps", &insert);
        figure.notes.push(format!(
            "raw single-row INSERT (pgbench, same row): {}; the event-sourced SQL is {:.2} of it, Chronicle {:.2}",
            insert_side.render(),
            ratios(&rates(&es), &rates(&insert)).median,
            ratios(&rates(&chronicle), &rates(&insert)).median,
        ));
        figure.notes.push(cpu_note("Chronicle", &chronicle));
        figure.notes.push(cpu_note("event-sourced SQL", &es));
        figures.push(figure);
    }

    let peak = server
        .peak_rss_mib()
        .context("reading the server's VmHWM")?;
    server.stop().await?;
    let mut memory = ctx.figure(
        "memory",
        "memory: peak RSS of the server under the command load",
        Side::new("Chronicle", "MiB", Spread::of(vec![peak])),
        Target {
            subject: Subject::Value,
            at_least: false,
            bound: 150.0,
        },
    );
    memory.notes.push(format!(
        "VmHWM of the `chronicle serve` process after every command run above ({} MiB); one measurement, it is a peak",
        human(peak)
    ));
    figures.push(memory);
    Ok(figures)
}

fn rates(outcomes: &[Outcome]) -> Vec<f64> {
    outcomes.iter().map(|o| o.rate).collect()
}

pub async fn updates(ctx: &Ctx<'_>) -> anyhow::Result<Vec<Figure>> {
    let s = &ctx.settings;
    let clients = s.concurrency.iter().copied().max().unwrap_or(1);
    let (url, config) = ctx.database("updates").await?;
    let setup = config.serve("updates-setup").await?;
    let users = Api::new(setup.base())
        .register_many("editor", clients)
        .await?;
    setup.stop().await?;
    let authors: Vec<uuid::Uuid> = users
        .iter()
        .map(|u| u.id.parse())
        .collect::<Result<_, _>>()?;
    let posts = seed::post_events(
        &url,
        &PostSeed {
            posts: s.update_posts,
            history: s.update_history,
            authors: &authors,
            body: POST_TEXT,
            id_prefix: None,
        },
    )
    .await?;
    seed::mark_relayed(&url, &ctx.services.nats.url(), &config.stream).await?;
    let server = config.serve("updates").await?;

    let (baseline_url, _) = ctx.database("updates_baseline").await?;
    seed::post_events(
        &baseline_url,
        &PostSeed {
            posts: s.update_posts,
            history: s.update_history,
            authors: &[],
            body: POST_TEXT,
            id_prefix: Some("upd-"),
        },
    )
    .await?;
    let pgbench = ctx.pgbench("updates_baseline");
    let work = ctx.work_dir();
    let posts_lua: Vec<String> = posts
        .iter()
        .map(|(id, author)| format!("{{\"{id}\", {}}}", author + 1))
        .collect();
    let data = format!(
        "{}\nposts = {{{}}}",
        tokens_lua(&users),
        posts_lua.join(",\n")
    );
    let script = load::lua_script(&work, "update", &data, load::UPDATE_POST)?;

    let mut figures = Vec::new();
    for &c in &s.concurrency {
        eprintln!("  PATCH /posts/{{id}}, {c} clients: warming up");
        load::wrk(
            server.base(),
            c,
            s.warmup_secs,
            &script,
            ctx.watch(Some(&server)),
        )
        .await?;
        let (payload, metadata) = sample_event(&url, "post.updated").await?;
        // Each client owns every c-th aggregate, so the baseline never conflicts.
        let per_client = (s.update_posts / c as i64).max(1);
        let id = "md5('upd-' || :k::text)::uuid::text";
        let es_script = write_script(
            &work,
            &format!("es-update-{c}.sql"),
            &format!(
                "\\set k :client_id + 1 + {c} * random(0, {})\n\
                 SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = 'post' AND aggregate_id = {id} ORDER BY sequence \\aset\n\
                 BEGIN;\n\
                 INSERT INTO events ({EVENT_COLUMNS}) VALUES ('post', {id}, :sequence + 1, 'post.updated', '1.0', {}, {});\n\
                 COMMIT;\n",
                per_client - 1,
                sql_str(&payload),
                sql_str(&metadata)
            ),
        )?;
        pgbench
            .run(&es_script, c, s.warmup_secs, ctx.watch(None))
            .await?;
        let (mut chronicle, mut es) = (Vec::new(), Vec::new());
        for run in 1..=s.runs {
            eprintln!("  PATCH /posts/{{id}}, {c} clients: run {run}/{}", s.runs);
            let outcome = load::wrk(
                server.base(),
                c,
                s.run_secs,
                &script,
                ctx.watch(Some(&server)),
            )
            .await?;
            chronicle.push(check(&outcome, "PATCH /posts/{id}")?);
            es.push(
                pgbench
                    .run(&es_script, c, s.run_secs, ctx.watch(None))
                    .await?,
            );
        }
        let mut figure = ctx.figure(
            &format!("updates_c{c}"),
            &format!(
                "update throughput: PATCH /posts/{{id}}, {} events of history, {c} clients",
                s.update_history
            ),
            side("Chronicle", "commands/s", &chronicle),
            Target::ratio_at_least(0.8),
        );
        figure.concurrency = Some(c);
        figure.baseline = Some(side(
            "event-sourced SQL over the history (pgbench)",
            "tps",
            &es,
        ));
        figure.ratio = Some(ratios(&rates(&chronicle), &rates(&es)));
        figure.notes.push(format!(
            "{} posts with {} events each at the start; every command adds one",
            s.update_posts, s.update_history
        ));
        figure.notes.push(cpu_note("Chronicle", &chronicle));
        figure.notes.push(cpu_note("event-sourced SQL", &es));
        figures.push(figure);
    }
    server.stop().await?;
    Ok(figures)
}
