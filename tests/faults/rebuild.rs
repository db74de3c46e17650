//! `kill -9` of the instance running a rebuild of a big log: the rebuild is durable work, so the
//! surviving instance resumes it from the shadow checkpoint and swaps it in with no new request.

use std::time::{Duration, Instant};

use chronicle::startup::BuildOptions;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{TestApp, TestDatabase};
use crate::support::{eventually, free_port, Chronicle, POLL};

const SEEDED: i64 = 150_000;

/// `SEEDED` created posts straight into the log (the shape the server writes), marked as
/// already projected so the live projectors have nothing to catch up on.
async fn seed(pool: &PgPool) {
    // In transactions of 10,000: log readers read only below the cluster's oldest running
    // transaction, so one long insert would stall the other tests on this Postgres meanwhile.
    const CHUNK: i64 = 10_000;
    let mut from = 1;
    while from <= SEEDED {
        let to = (from + CHUNK - 1).min(SEEDED);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT 'post', id::text, 1, 'post.created', '1.0',
                    jsonb_build_object('post.created', jsonb_build_object(
                        'post_id', id, 'author_id', author, 'title', 'Seeded post ' || n, 'body', 'seeded',
                        'tags', jsonb_build_array('seed'), 'created_at', now())),
                    jsonb_build_object('correlation_id', 'rebuild-seed-' || n, 'actor_id', author)
               FROM (SELECT n, gen_random_uuid() AS id, gen_random_uuid() AS author
                       FROM generate_series($1::bigint, $2::bigint) n) seeded",
        )
        .bind(from)
        .bind(to)
        .execute(pool)
        .await
        .expect("seed the log");
        from = to + 1;
    }
    let head = projections::log::head(pool).await.expect("head");
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, transaction_id, position)
         SELECT name, $1, $2 FROM unnest(ARRAY['users', 'posts', 'sessions']) AS name
         ON CONFLICT (name) DO UPDATE SET transaction_id = $1, position = $2",
    )
    .bind(head.transaction_id)
    .bind(head.position)
    .execute(pool)
    .await
    .expect("the history counts as projected");
}

async fn posts_status(instance: &Chronicle, admin: &str) -> Option<Value> {
    let body: Value = reqwest::Client::new()
        .get(instance.url("/api/v1/admin/projections"))
        .bearer_auth(admin)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(body)
}

fn posts_of(body: &Value) -> Value {
    body["data"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "posts").cloned())
        .unwrap_or(Value::Null)
}

fn leads_posts(body: &Value) -> bool {
    body["leadership"].as_array().is_some_and(|terms| {
        terms
            .iter()
            .any(|t| t["role"] == "projector:posts" && t["until"].is_null())
    })
}

#[tokio::test]
async fn a_rebuild_whose_instance_is_killed_is_finished_by_the_survivor_without_a_new_request() {
    let app = TestApp::spawn_with_options(
        TestDatabase::create().await,
        &[],
        BuildOptions {
            migrate: true,
            workers: false,
        },
    )
    .await;
    let pool = &app.state.pool;
    seed(pool).await;
    let (_, admin) = app.admin().await;
    // A NATS nobody listens on: the relay would otherwise stream the whole seeded log.
    let nats = format!("nats://127.0.0.1:{}", free_port());
    let config = &app.state.config;
    let url = config.database_url.as_str();
    let (stream, prefix) = (&config.nats_stream, &config.nats_subject_prefix);
    let mut instances = [
        Chronicle::start_on(url, &nats, stream, prefix).await,
        Chronicle::start_on(url, &nats, stream, prefix).await,
    ];
    let leader = eventually(Duration::from_secs(20), "a leader of posts", || {
        let (instances, admin) = (&instances, &admin);
        async move {
            for (i, instance) in instances.iter().enumerate() {
                if leads_posts(&posts_status(instance, admin).await?) {
                    return Some(i);
                }
            }
            None
        }
    })
    .await;

    let accepted = reqwest::Client::new()
        .post(instances[leader].url("/api/v1/admin/projections/posts/rebuild"))
        .bearer_auth(&admin)
        .json(&json!({}))
        .send()
        .await
        .expect("rebuild request");
    let again = reqwest::Client::new()
        .post(instances[leader].url("/api/v1/admin/projections/posts/rebuild"))
        .bearer_auth(&admin)
        .json(&json!({}))
        .send()
        .await
        .expect("second rebuild request");
    let progress = || async move {
        sqlx::query_as::<_, (i64, i64)>("SELECT applied, total FROM projection_rebuilds")
            .fetch_optional(pool)
            .await
            .ok()
            .flatten()
    };
    eventually(
        Duration::from_secs(60),
        "the rebuild to get a fifth of the way",
        || async move {
            progress()
                .await
                .filter(|(applied, _)| *applied >= SEEDED / 5)
        },
    )
    .await;
    instances[leader].kill9().await;
    let killed = Instant::now();
    let (frozen, total) = progress().await.expect("the rebuild is recorded");
    let survivor = &instances[1 - leader];
    let meanwhile = posts_status(survivor, &admin).await.expect("status");
    // Resuming from the shadow checkpoint never goes below it; starting over would.
    let mut lowest = frozen;
    let resumed = loop {
        if let Some((applied, _)) = progress().await {
            lowest = lowest.min(applied);
            if applied > frozen {
                break applied;
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the survivor did not resume the rebuild within 30 s"
        );
        tokio::time::sleep(POLL).await;
    };
    let takeover = killed.elapsed();
    let admin = admin.as_str();
    let finished = eventually(
        Duration::from_secs(90),
        "the rebuild to finish",
        || async move {
            let status = posts_of(&posts_status(survivor, admin).await?);
            (status["rebuild"].is_null() && !status["last_rebuild"].is_null()).then_some(status)
        },
    )
    .await;
    let done = killed.elapsed();
    let projected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM posts_view WHERE title LIKE 'Seeded post %'")
            .fetch_one(pool)
            .await
            .unwrap();
    eprintln!(
        "rebuild: {total} events, killed at {frozen} applied, resumed {takeover:?} after the kill \
         (at {resumed} applied), swapped in {done:?} after the kill"
    );

    assert_eq!(accepted.status(), reqwest::StatusCode::ACCEPTED);
    assert_eq!(
        again.status(),
        reqwest::StatusCode::CONFLICT,
        "one request at a time"
    );
    let meanwhile = posts_of(&meanwhile);
    assert_eq!(
        meanwhile["status"], "rebuilding",
        "the status tells the truth: {meanwhile}"
    );
    assert_eq!(
        lowest, frozen,
        "the survivor resumed from the shadow checkpoint, it did not start over"
    );
    assert!(finished["last_rebuild"]["applied"].as_i64().unwrap() >= SEEDED);
    assert_eq!(
        projected, SEEDED,
        "every seeded post is in the rebuilt read model"
    );
    assert!(
        takeover < Duration::from_secs(10),
        "the survivor took {takeover:?} to resume"
    );
}
