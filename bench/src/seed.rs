//! Loading history straight into the tables: a million events or read-model rows cannot be
//! made through the API in a benchmark's time. The rows have exactly the shape the server
//! writes (checked by deserialising them with the domain's own event type), and history that
//! is seeded is marked as already projected and relayed, so the figures measure new work only.

use std::time::Instant;

use anyhow::Context;
use async_nats::HeaderMap;
use projections::Position;
use sqlx::{Connection, PgConnection};

/// Events per INSERT statement (and transaction) while seeding.
const CHUNK_EVENTS: i64 = 100_000;

pub struct PostSeed<'a> {
    pub posts: i64,
    /// Events per post: `post.created`, then `post.updated` up to this many.
    pub history: i64,
    /// Authors taken in turn; random ids when empty.
    pub authors: &'a [uuid::Uuid],
    pub body: &'a str,
    /// Post ids become `md5(prefix || n)`, so a pgbench script can name them; random when
    /// `None`.
    pub id_prefix: Option<&'a str>,
}

pub const TAGS: [&str; 2] = ["bench", "rust"];

/// Appends the seeded posts' events; returns the post ids with their author's index.
pub async fn post_events(
    url: &str,
    seed: &PostSeed<'_>,
) -> anyhow::Result<Vec<(uuid::Uuid, usize)>> {
    let started = Instant::now();
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query(
        "CREATE TEMP TABLE seed_posts AS
         SELECT n, CASE WHEN $3::text IS NULL THEN gen_random_uuid() ELSE md5($3 || n)::uuid END AS id,
                CASE WHEN cardinality($1::uuid[]) = 0 THEN gen_random_uuid()
                     ELSE ($1::uuid[])[1 + n % greatest(cardinality($1::uuid[]), 1)] END AS author,
                (n % greatest(cardinality($1::uuid[]), 1))::int AS author_index,
                now() - ($2 - n) * interval '1 second' AS ts
           FROM generate_series(1, $2) n",
    )
    .bind(seed.authors)
    .bind(seed.posts)
    .bind(seed.id_prefix)
    .execute(&mut conn)
    .await
    .context("choosing the seeded posts")?;
    let per_chunk = (CHUNK_EVENTS / seed.history.max(1)).max(1);
    let mut low = 0;
    while low < seed.posts {
        let high = (low + per_chunk).min(seed.posts);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT 'post', p.id::text, s,
                    CASE WHEN s = 1 THEN 'post.created' ELSE 'post.updated' END, '1.0',
                    CASE WHEN s = 1 THEN jsonb_build_object('post.created', jsonb_build_object(
                           'post_id', p.id, 'author_id', p.author, 'title', 'Seeded post ' || p.n,
                           'body', $3::text, 'tags', to_jsonb($4::text[]), 'created_at', p.ts))
                         ELSE jsonb_build_object('post.updated', jsonb_build_object(
                           'title', 'Seeded post ' || p.n || ' v' || s, 'body', $3::text,
                           'tags', to_jsonb($4::text[]),
                           'updated_at', p.ts + s * interval '1 millisecond')) END,
                    jsonb_build_object('correlation_id', 'bench-seed-' || p.n, 'actor_id', p.author)
               FROM seed_posts p CROSS JOIN generate_series(1, $5) s
              WHERE p.n > $1 AND p.n <= $2
              ORDER BY p.n, s",
        )
        .bind(low)
        .bind(high)
        .bind(seed.body)
        .bind(TAGS.as_slice())
        .bind(seed.history)
        .execute(&mut conn)
        .await
        .context("seeding events")?;
        low = high;
    }
    sqlx::query("ANALYZE events").execute(&mut conn).await?;
    check_shapes(&mut conn).await?;
    let ids: Vec<(uuid::Uuid, i32)> =
        sqlx::query_as("SELECT id, author_index FROM seed_posts ORDER BY n")
            .fetch_all(&mut conn)
            .await?;
    eprintln!(
        "  seeded {} events ({} posts x {}) in {:.1} s",
        seed.posts * seed.history,
        seed.posts,
        seed.history,
        started.elapsed().as_secs_f64()
    );
    if seed.history > 0 && !seed.authors.is_empty() {
        // The read model as the projector would have left it.
        sqlx::query(
            "INSERT INTO posts_view (id, author_id, title, body, tags, status, created_at, updated_at, version)
             SELECT id, author,
                    CASE WHEN $1 = 1 THEN 'Seeded post ' || n ELSE 'Seeded post ' || n || ' v' || $1 END,
                    $2, $3, 'draft', ts, ts + $1 * interval '1 millisecond', $1
               FROM seed_posts",
        )
        .bind(seed.history)
        .bind(seed.body)
        .bind(TAGS.as_slice())
        .execute(&mut conn)
        .await
        .context("seeding posts_view")?;
    }
    Ok(ids
        .into_iter()
        .map(|(id, author)| (id, author.max(0) as usize))
        .collect())
}

/// The seeded payloads must be what the server itself would store.
async fn check_shapes(conn: &mut PgConnection) -> anyhow::Result<()> {
    let payloads: Vec<serde_json::Value> = sqlx::query_scalar(
        "(SELECT payload FROM events WHERE event_type = 'post.created' LIMIT 1)
         UNION ALL (SELECT payload FROM events WHERE event_type = 'post.updated' LIMIT 1)",
    )
    .fetch_all(&mut *conn)
    .await?;
    for payload in payloads {
        serde_json::from_value::<aggregates::post::PostEvent>(payload.clone())
            .with_context(|| format!("a seeded event does not deserialise: {payload}"))?;
    }
    Ok(())
}

/// Published posts straight into `posts_view` (the list endpoint reads nothing else).
pub async fn published_rows(url: &str, rows: i64, body: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = PgConnection::connect(url).await?;
    let author = uuid::Uuid::now_v7();
    let mut low = 0;
    while low < rows {
        let high = (low + CHUNK_EVENTS).min(rows);
        sqlx::query(
            "INSERT INTO posts_view (id, author_id, title, body, tags, status, created_at, updated_at, published_at, version)
             SELECT gen_random_uuid(), $3, 'Seeded post ' || g, $4, $5, 'published', ts, ts, ts, 2
               FROM (SELECT g, now() - ($6 - g) * interval '1 second' AS ts
                       FROM generate_series($1 + 1, $2) g) s",
        )
        .bind(low)
        .bind(high)
        .bind(author)
        .bind(body)
        .bind(TAGS.as_slice())
        .bind(rows)
        .execute(&mut conn)
        .await
        .context("seeding posts_view")?;
        low = high;
    }
    sqlx::query("VACUUM ANALYZE posts_view")
        .execute(&mut conn)
        .await?;
    eprintln!(
        "  seeded {rows} published posts in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Marks everything up to the head as projected: the projectors start from there.
pub async fn mark_projected(url: &str) -> anyhow::Result<Position> {
    let mut conn = PgConnection::connect(url).await?;
    let head = projections::log::head(&mut conn).await?;
    for projector in projections::all_projectors() {
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, transaction_id, position) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET transaction_id = $2, position = $3",
        )
        .bind(projector.name())
        .bind(head.transaction_id)
        .bind(head.position)
        .execute(&mut conn)
        .await?;
    }
    Ok(head)
}

/// Marks everything up to the head as relayed. The relay checks its checkpoint against the
/// stream's last message on connect (and re-publishes a tail the stream lacks), so the head
/// event is published as the stream's last message, exactly as the relay would have left it.
pub async fn mark_relayed(url: &str, nats_url: &str, stream: &str) -> anyhow::Result<()> {
    use chronicle::fanout::cloudevents::{cloud_event, subject};
    use chronicle::fanout::relay::ensure_stream;

    let head = mark_projected(url).await?;
    let mut conn = PgConnection::connect(url).await?;
    let events = projections::log::read_after(
        &mut conn,
        Position::new(head.transaction_id, head.position - 1),
        1,
    )
    .await?;
    let event = events.first().context("the log is empty")?;
    let settings = relay_settings(nats_url, stream);
    let client = async_nats::connect(nats_url).await?;
    let js = async_nats::jetstream::new(client);
    ensure_stream(&js, &settings)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
    js.publish_with_headers(
        subject(&settings.subject_prefix, event),
        headers,
        serde_json::to_vec(&cloud_event(event))?.into(),
    )
    .await?
    .await?;
    sqlx::query(
        "INSERT INTO relay_checkpoints (stream, transaction_id, position) VALUES ($1, $2, $3)
         ON CONFLICT (stream) DO UPDATE SET transaction_id = $2, position = $3",
    )
    .bind(stream)
    .bind(head.transaction_id)
    .bind(head.position)
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// The relay settings a server started by [`crate::server::ServerConfig`] uses.
pub fn relay_settings(nats_url: &str, stream: &str) -> chronicle::fanout::relay::RelaySettings {
    chronicle::fanout::relay::RelaySettings {
        nats_url: nats_url.to_owned(),
        nats_creds_file: None,
        stream: stream.to_owned(),
        subject_prefix: crate::server::subject_prefix(stream),
        duplicate_window: std::time::Duration::from_secs(2 * 3600),
    }
}
