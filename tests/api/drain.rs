//! Driving an app's background work to idle: the projectors, the NATS relay and its consumers,
//! and the webhook and email senders. Tests wait on this instead of on each worker by hand.

use std::time::Duration;

use async_nats::jetstream;
use projections::Position;
use sqlx::Row;

use crate::common::eventually_ok;
use crate::helpers::TestApp;

/// How long [`TestApp::drain`] waits for the background work to end.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// The log readers every app with workers runs, each with a checkpoint row.
const PROJECTORS: [&str; 4] = ["users", "posts", "sessions", "email_outbox"];

/// The durable JetStream consumers every app with workers runs on its stream.
const CONSUMERS: [&str; 2] = ["chronicle-webhooks", "chronicle-analytics"];

impl TestApp {
    /// Waits until the background work has caught up with the log as it is when called: every
    /// projector has applied the log's head, the relay has published it, the NATS consumers
    /// have nothing pending or unacknowledged, and neither the webhook deliveries nor (when
    /// SMTP is configured) the email outbox have a row due. Fails the test, saying what is
    /// still busy, after [`DRAIN_DEADLINE`].
    ///
    /// A delivery or email being sent right now is leased into the future, so it counts as not
    /// due; one that failed waits for its retry the same way. For an app with workers only.
    pub async fn drain(&self) {
        let head = projections::log::head(&self.state.pool)
            .await
            .expect("the log's head");
        let stream = self.own_stream().await;
        let stream = &stream;
        eventually_ok(
            DRAIN_DEADLINE,
            "the background work to be idle",
            || async move {
                let busy = self.busy(head, stream).await;
                if busy.is_empty() {
                    Ok(())
                } else {
                    Err(busy.join("; "))
                }
            },
        )
        .await;
    }

    /// What is still behind `head` or has work due, in words; empty when idle.
    async fn busy(&self, head: Position, stream: &jetstream::stream::Stream) -> Vec<String> {
        let pool = &self.state.pool;
        let mut busy = Vec::new();
        let rows = sqlx::query(
            "SELECT name, transaction_id, position FROM projection_checkpoints WHERE name = ANY($1)",
        )
        .bind(PROJECTORS.as_slice())
        .fetch_all(pool)
        .await
        .expect("read the projection checkpoints");
        for name in PROJECTORS {
            let at = rows
                .iter()
                .find(|row| row.get::<String, _>("name") == name)
                .map_or(Position::START, |row| {
                    Position::new(row.get("transaction_id"), row.get("position"))
                });
            if at < head {
                busy.push(format!("projector {name} at {at}, the log at {head}"));
            }
        }
        let relayed: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id, position FROM relay_checkpoints WHERE stream = $1",
        )
        .bind(&self.state.config.nats_stream)
        .fetch_optional(pool)
        .await
        .expect("read the relay checkpoint");
        let relayed = relayed.map_or(Position::START, |(tx, pos)| Position::new(tx, pos));
        if relayed < head {
            busy.push(format!("relay at {relayed}, the log at {head}"));
        }
        busy.extend(busy_consumers(stream).await);
        let due_deliveries: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now()",
        )
        .fetch_one(pool)
        .await
        .expect("count due webhook deliveries");
        if due_deliveries > 0 {
            busy.push(format!("{due_deliveries} webhook deliveries due"));
        }
        if self.state.config.email.smtp_url.is_some() {
            let due_emails: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM email_outbox WHERE status = 'pending' AND next_attempt_at <= now()",
            )
            .fetch_one(pool)
            .await
            .expect("count due emails");
            if due_emails > 0 {
                busy.push(format!("{due_emails} emails due"));
            }
        }
        busy
    }

    /// This app's JetStream stream, which its relay made when it started.
    async fn own_stream(&self) -> jetstream::stream::Stream {
        let config = &self.state.config;
        let client = async_nats::connect(config.nats_url.as_str())
            .await
            .expect("connect to NATS");
        jetstream::new(client)
            .get_stream(&config.nats_stream)
            .await
            .expect("the app's stream exists")
    }
}

/// The consumers that have messages not yet delivered or not yet acknowledged.
async fn busy_consumers(stream: &jetstream::stream::Stream) -> Vec<String> {
    let mut busy = Vec::new();
    for name in CONSUMERS {
        match stream.consumer_info(name).await {
            Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => {}
            Ok(info) => busy.push(format!(
                "consumer {name}: {} pending, {} unacknowledged",
                info.num_pending, info.num_ack_pending
            )),
            Err(e) => busy.push(format!("consumer {name}: {e}")),
        }
    }
    busy
}

#[cfg(test)]
mod tests {
    use crate::client::{App, NewPost};
    use crate::helpers::stream_messages;

    #[tokio::test]
    async fn after_a_drain_every_event_is_on_nats_and_every_read_model_has_it() {
        let app = App::spawn().await;
        let author = app.signed_up("drained").await;
        for title in ["One", "Two", "Three"] {
            author
                .create_post(NewPost::published(title, "B"))
                .await
                .created();
        }

        app.drain().await;

        let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
        let config = &app.state.config;
        let relayed = stream_messages(&config.nats_url, &config.nats_stream).await;
        assert_eq!(relayed.len() as i64, logged);
        let listed = app.anonymous().get("/api/v1/posts").await.ok();
        assert_eq!(listed.as_array().unwrap().len(), 3);
        app.finish().await;
    }

    #[tokio::test]
    #[should_panic(expected = "without `app.finish().await`")]
    async fn an_app_dropped_without_finishing_fails_the_test() {
        let app = App::spawn().await;

        app.signed_up("forgetful").await;
    }
}
