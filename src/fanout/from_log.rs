//! Vouches for messages consumed from NATS against the event log: Chronicle's consumers act
//! only on events that are in it, never on what a stranger publishes on its subjects.
//!
//! Anyone who may publish on `<prefix>.>` can put a message in the stream. Each batch of
//! consumed messages is looked up by id in the log's tail in memory, or in `events` for those
//! the tail no longer holds (one query on its unique index); a message
//! whose id is not there, or that is not exactly the CloudEvent the relay makes of that event
//! (another type, aggregate, version, time or data), is dropped with a warning and a count in
//! `chronicle_nats_foreign_messages_total`. What a consumer then acts on is the CloudEvent
//! rebuilt from the log. An exact copy of a relayed message is let through: it is the same
//! event, which every consumer already handles at most once.
//!
//! (Signing messages in the relay would spare the query, but would put a key shared by every
//! instance on the message path, and the log already is the authority.)

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use projections::tail::LogTail;
use serde_json::Value;
use uuid::Uuid;

use crate::fanout::cloudevents::cloud_event;
use crate::fanout::relay::{ensure_stream, RelaySettings};
use crate::telemetry::{propagation, spans};

/// Connects and opens (creating it the first time) the durable pull consumer `name` on the
/// relay's stream. Messages are acked one by one, after the consumer has acted on them.
pub async fn durable_consumer(
    settings: &RelaySettings,
    name: &'static str,
) -> Result<consumer::PullConsumer, String> {
    let client = settings.connect(async_nats::ConnectOptions::new()).await?;
    let js = jetstream::new(client);
    let stream = ensure_stream(&js, settings)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .get_or_create_consumer(
            name,
            consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())
}

/// Runs consumer sessions one after another for good: a session that ends (NATS went away,
/// the database failed) is logged and started again after a backoff of up to 5 s.
pub async fn keep_consuming<F, Fut>(what: &str, mut session: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match session().await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, consumer = what, "consumer interrupted; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn event_id(message: &Value) -> Option<Uuid> {
    message["id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// For each message payload, the CloudEvent of the logged event it announces, or `None` when it
/// is not one of Chronicle's (already counted and logged).
pub async fn vouch(
    tail: &LogTail,
    consumer: &'static str,
    subjects_and_payloads: &[(&str, &[u8])],
) -> Result<Vec<Option<Value>>, sqlx::Error> {
    let messages: Vec<Value> = subjects_and_payloads
        .iter()
        .map(|(_, payload)| serde_json::from_slice(payload).unwrap_or(Value::Null))
        .collect();
    let ids: Vec<Uuid> = messages.iter().filter_map(event_id).collect();
    let logged: HashMap<Uuid, Value> = if ids.is_empty() {
        HashMap::new()
    } else {
        tail.events_by_id(&ids)
            .await?
            .iter()
            .map(|event| (event.event_id, cloud_event(event)))
            .collect()
    };
    Ok(messages
        .iter()
        .zip(subjects_and_payloads)
        .map(|(message, (subject, _))| {
            let found = event_id(message).and_then(|id| logged.get(&id));
            match found {
                Some(event) if event == message => Some(event.clone()),
                _ => {
                    tracing::warn!(
                        consumer,
                        subject,
                        id = %message["id"],
                        "a message on the event subjects is not an event of the log; dropped"
                    );
                    metrics::counter!("chronicle_nats_foreign_messages_total", "consumer" => consumer)
                        .increment(1);
                    None
                }
            }
        })
        .collect())
}

/// Most messages checked against the log in one query.
const BATCH: usize = 100;

/// Runs a pull consumer: each batch of messages that are ready is vouched for, `act` gets the
/// logged CloudEvents of Chronicle's among them, in order, and every message is acked after (a
/// stranger's too, so it is not redelivered). Returns on the first error; what was not acked is
/// redelivered.
pub async fn consume<F, Fut>(
    tail: &LogTail,
    consumer: &'static str,
    pull: async_nats::jetstream::consumer::PullConsumer,
    mut act: F,
    after_batch: impl Fn(),
) -> Result<(), String>
where
    F: FnMut(Vec<Value>) -> Fut,
    Fut: std::future::Future<Output = Result<(), sqlx::Error>>,
{
    // Present from the first scrape, before any stranger shows up.
    metrics::counter!("chronicle_nats_foreign_messages_total", "consumer" => consumer).increment(0);
    let mut messages = pull
        .messages()
        .await
        .map_err(|e| e.to_string())?
        .ready_chunks(BATCH);
    while let Some(batch) = messages.next().await {
        let batch = batch
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let contents: Vec<(&str, &[u8])> = batch
            .iter()
            .map(|m| (m.subject.as_str(), m.payload.as_ref()))
            .collect();
        let events: Vec<Value> = vouch(tail, consumer, &contents)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .flatten()
            .collect();
        if !events.is_empty() {
            let _spans = consume_spans(consumer, &events);
            act(events).await.map_err(|e| e.to_string())?;
        }
        for message in &batch {
            message.ack().await.map_err(|e| e.to_string())?;
        }
        after_batch();
    }
    Ok(())
}

/// One span per event a consumer acts on, in the event's trace, open while the batch is handled.
fn consume_spans(consumer: &'static str, events: &[Value]) -> Vec<tracing::Span> {
    if !propagation::enabled() {
        return Vec::new();
    }
    events
        .iter()
        .map(|event| {
            spans::consume(
                consumer,
                event[propagation::TRACEPARENT].as_str(),
                event["type"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}
