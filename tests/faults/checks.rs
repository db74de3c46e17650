//! The checks after a fault: the log, the posts read model and the stream, compared.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;

use crate::support::{eventually, POLL};

/// The event ids of the log in commit order.
pub async fn log_ids(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id::text FROM events ORDER BY transaction_id, position")
        .fetch_all(pool)
        .await
        .expect("read the log")
}

/// How many messages the stream holds now (`None` while it cannot be asked).
pub async fn stream_len(nats_url: &str, stream: &str) -> Option<u64> {
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(1))
        .connect(nats_url);
    let client = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .ok()?
        .ok()?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream).await.ok()?;
    Some(stream.info().await.ok()?.state.messages)
}

/// Waits (up to `deadline`) until the stream holds as many messages as the log has events, then
/// reads them all; the assertions that follow say what is missing if it never got there.
pub async fn stream_caught_up(
    pool: &PgPool,
    nats_url: &str,
    stream: &str,
    deadline: Duration,
) -> Vec<Value> {
    let expected = log_ids(pool).await.len() as u64;
    let started = Instant::now();
    while started.elapsed() < deadline {
        if stream_len(nats_url, stream)
            .await
            .is_some_and(|n| n >= expected)
        {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    crate::helpers::stream_messages(nats_url, stream).await
}

/// Waits until the relay has published the whole log and saved its checkpoint at the head.
pub async fn relayed(pool: &PgPool, nats_url: &str, stream: &str) -> u64 {
    let head = projections::log::head(pool).await.expect("log head");
    let events = log_ids(pool).await.len() as u64;
    eventually(
        Duration::from_secs(30),
        "the relay to publish the log and checkpoint it",
        || async move {
            let checkpoint: (i64, i64) = sqlx::query_as(
                "SELECT transaction_id, position FROM relay_checkpoints WHERE stream = $1",
            )
            .bind(stream)
            .fetch_optional(pool)
            .await
            .ok()??;
            let in_stream = stream_len(nats_url, stream).await?;
            (checkpoint == (head.transaction_id, head.position) && in_stream == events)
                .then_some(in_stream)
        },
    )
    .await
}

pub fn assert_exactly_once_in_order(messages: &[Value], log: &[String]) {
    let ids: Vec<&str> = messages
        .iter()
        .map(|m| m["id"].as_str().expect("CloudEvent id"))
        .collect();
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "an event is in the stream twice ({} messages, {} distinct)",
        ids.len(),
        unique.len()
    );
    let missing = log
        .iter()
        .filter(|id| !unique.contains(&id.as_str()))
        .count();
    assert_eq!(
        missing, 0,
        "{missing} events of the log are not in the stream"
    );
    assert_eq!(
        ids,
        log.iter().map(String::as_str).collect::<Vec<_>>(),
        "the stream holds the log in commit order"
    );
}

/// Every acknowledged post has its two events in the log and exactly once in the stream.
pub async fn assert_acked_in_log_and_stream(pool: &PgPool, acked: &[String], messages: &[Value]) {
    let logged: Vec<(String, String)> = sqlx::query_as(
        "SELECT aggregate_id, event_id::text FROM events
          WHERE aggregate_type = 'post' AND aggregate_id = ANY($1)",
    )
    .bind(acked)
    .fetch_all(pool)
    .await
    .expect("acknowledged events");
    let mut per_post = std::collections::HashMap::<&str, usize>::new();
    for (post, _) in &logged {
        *per_post.entry(post.as_str()).or_default() += 1;
    }
    let incomplete: Vec<&String> = acked
        .iter()
        .filter(|id| per_post.get(id.as_str()) != Some(&2))
        .collect();
    assert!(
        incomplete.is_empty(),
        "{} acknowledged posts lack their created and published events in the log: {:?}",
        incomplete.len(),
        &incomplete[..incomplete.len().min(5)]
    );
    let mut in_stream = std::collections::HashMap::<&str, usize>::new();
    for message in messages {
        if let Some(id) = message["id"].as_str() {
            *in_stream.entry(id).or_default() += 1;
        }
    }
    let not_once = logged
        .iter()
        .filter(|(_, event)| in_stream.get(event.as_str()) != Some(&1))
        .count();
    assert_eq!(
        not_once, 0,
        "{not_once} events of acknowledged commands are not exactly once in the stream"
    );
}

/// Waits until the posts read model holds every acknowledged post, published.
pub async fn read_model_has(pool: &PgPool, acked: &[String], deadline: Duration) {
    let ids: Vec<uuid::Uuid> = acked
        .iter()
        .map(|id| id.parse().expect("post ids are UUIDs"))
        .collect();
    let expected = ids.len() as i64;
    let ids = &ids;
    eventually(
        deadline,
        "the posts read model to catch up",
        || async move {
            let projected: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM posts_view WHERE id = ANY($1) AND status = 'published'",
            )
            .bind(ids)
            .fetch_one(pool)
            .await
            .ok()?;
            (projected == expected).then_some(())
        },
    )
    .await;
}
