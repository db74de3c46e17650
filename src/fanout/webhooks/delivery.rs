//! Sending deliveries: due rows are leased (so several instances share the work and a crashed
//! one's lease expires), signed, posted with a 15 s timeout, and rescheduled on failure along
//! `WEBHOOK_RETRY_SCHEDULE`. Everything about a delivery lives in its row, so a restart in the
//! middle of a schedule loses nothing.
//!
//! Endpoints are isolated: each has at most `WEBHOOK_MAX_IN_FLIGHT` deliveries in flight, only
//! what can be sent at once is leased, and nothing waits for another endpoint's sends to end, so
//! a slow or failing endpoint delays only itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::Notify;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::secrets::SecretBox;
use crate::fanout::webhooks::signing::signature_header;
use crate::fanout::webhooks::store::{self, Endpoint};
use crate::fanout::webhooks::targets;
use crate::telemetry::{propagation, spans};

const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// A leased delivery becomes due again after this, should its instance die mid-send.
const LEASE_SECS: i64 = 60;
/// Due rows looked at per lease, past the endpoints that are full.
const BATCH: i64 = 200;
/// Deliveries in flight on this instance, over all endpoints.
const MAX_IN_FLIGHT: usize = 256;
const IDLE_POLL: Duration = Duration::from_millis(500);

pub struct Sender {
    pool: PgPool,
    /// `None` only if the TLS stack could not start; every delivery then fails, none goes out
    /// through a client without the target filter.
    client: Option<reqwest::Client>,
    schedule: Vec<Duration>,
    allow_private: bool,
    per_endpoint: usize,
    /// Opens the endpoints' sealed signing secrets.
    secrets: Arc<SecretBox>,
    pub wake: Arc<Notify>,
    /// Deliveries being sent, per endpoint.
    in_flight: std::sync::Mutex<HashMap<Uuid, usize>>,
}

#[derive(sqlx::FromRow)]
struct Due {
    id: Uuid,
    endpoint_id: Uuid,
    event_id: Uuid,
    payload: Value,
    attempts: i32,
    /// The context of the command that appended the event, when it was traced.
    traceparent: Option<String>,
}

enum Outcome {
    Delivered(u16),
    Gone,
    Failed {
        status: Option<u16>,
        error: String,
    },
    /// The target is not public: failed at once, since retrying would call it again.
    Refused(String),
}

impl Sender {
    pub fn new(
        pool: PgPool,
        schedule: Vec<Duration>,
        allow_private: bool,
        per_endpoint: usize,
        secrets: Arc<SecretBox>,
    ) -> Self {
        let client = targets::client(allow_private, SEND_TIMEOUT)
            .inspect_err(|e| tracing::error!(error = %e, "cannot build the webhook HTTP client"))
            .ok();
        Self {
            pool,
            client,
            schedule,
            allow_private,
            per_endpoint: per_endpoint.max(1),
            secrets,
            wake: Arc::new(Notify::new()),
            in_flight: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn busy(&self) -> HashMap<Uuid, usize> {
        self.in_flight.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn started(&self, endpoint: Uuid) {
        if let Ok(mut m) = self.in_flight.lock() {
            *m.entry(endpoint).or_default() += 1;
        }
    }

    fn ended(&self, endpoint: Uuid) {
        if let Ok(mut m) = self.in_flight.lock() {
            if let Some(n) = m.get_mut(&endpoint) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&endpoint);
                }
            }
        }
    }

    /// Leases due deliveries that can be sent now: up to the free slots of each endpoint, at
    /// most `room` in all, oldest first. A lease is only taken for a send that starts at once, so
    /// a queue behind a slow endpoint waits unleased (and is free for other instances).
    async fn lease(
        &self,
        busy: &HashMap<Uuid, usize>,
        room: usize,
    ) -> Result<Vec<Due>, sqlx::Error> {
        let full: Vec<Uuid> = busy
            .iter()
            .filter(|(_, n)| **n >= self.per_endpoint)
            .map(|(id, _)| *id)
            .collect();
        let (busy_ids, busy_counts): (Vec<Uuid>, Vec<i32>) = busy
            .iter()
            .map(|(id, n)| (*id, i32::try_from(*n).unwrap_or(i32::MAX)))
            .unzip();
        sqlx::query_as(
            "WITH due AS (
                 SELECT id, endpoint_id, next_attempt_at FROM webhook_deliveries
                  WHERE status = 'pending' AND next_attempt_at <= now() AND endpoint_id <> ALL($3)
                  ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED),
             ranked AS (
                 SELECT id, endpoint_id, next_attempt_at,
                        row_number() OVER (PARTITION BY endpoint_id ORDER BY next_attempt_at, id) AS rank
                   FROM due),
             chosen AS (
                 SELECT r.id FROM ranked r
                   LEFT JOIN unnest($5::uuid[], $6::int[]) AS b(endpoint_id, sending)
                          ON b.endpoint_id = r.endpoint_id
                  WHERE r.rank <= $4 - coalesce(b.sending, 0)
                  ORDER BY r.next_attempt_at LIMIT $7)
             UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
               FROM chosen WHERE d.id = chosen.id
             RETURNING d.id, d.endpoint_id, d.event_id, d.payload, d.attempts,
                       (SELECT e.metadata->>'traceparent' FROM events e WHERE e.event_id = d.event_id) AS traceparent",
        )
        .bind(BATCH)
        .bind(LEASE_SECS as f64)
        .bind(&full)
        .bind(i64::try_from(self.per_endpoint).unwrap_or(i64::MAX))
        .bind(&busy_ids)
        .bind(&busy_counts)
        .bind(i64::try_from(room).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
    }

    async fn send(&self, endpoint: &Endpoint, due: &Due) -> Outcome {
        // Names are checked by the client's resolver as it connects; addresses are not
        // resolved, so they are checked here.
        let url = match targets::parse(&endpoint.url) {
            Ok(url) if self.allow_private => url,
            Ok(url) => match targets::check_literal(&url) {
                Ok(()) => url,
                Err(e) => return Outcome::Refused(format!("target refused: {e}")),
            },
            Err(e) => return Outcome::Refused(format!("target refused: {e}")),
        };
        let Some(client) = &self.client else {
            return Outcome::Failed {
                status: None,
                error: "the webhook HTTP client could not start".into(),
            };
        };
        let body = match serde_json::to_vec(&due.payload) {
            Ok(body) => body,
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    error: e.to_string(),
                }
            }
        };
        let timestamp = Utc::now().timestamp();
        let id = due.event_id.to_string();
        let secrets = endpoint.signing_secrets(Utc::now(), &self.secrets);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let signature = signature_header(&secrets, &id, timestamp, &body);
        let mut request = client.post(url);
        // The receiver continues the trace from this attempt.
        if let Some(traceparent) = propagation::traceparent(&tracing::Span::current()) {
            request = request.header(propagation::TRACEPARENT, traceparent);
        }
        let sent = request
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                Outcome::Delivered(response.status().as_u16())
            }
            Ok(response) if response.status() == reqwest::StatusCode::GONE => Outcome::Gone,
            Ok(response) => Outcome::Failed {
                status: Some(response.status().as_u16()),
                error: format!("answered {}", response.status()),
            },
            Err(e) => match targets::refusal(&e) {
                Some(refused) => Outcome::Refused(format!("target refused: {refused}")),
                None => Outcome::Failed {
                    status: None,
                    error: if e.is_timeout() {
                        "timed out".into()
                    } else {
                        format!("not reachable: {e}")
                    },
                },
            },
        }
    }

    /// Records an attempt's outcome, unless the row was reset meanwhile (a replay sets
    /// `attempts` back to 0): then the replay's own attempt is still to come and must not be
    /// marked done by this earlier one.
    async fn record(&self, due: &Due, outcome: Outcome) -> Result<(), sqlx::Error> {
        let attempts = due.attempts + 1;
        let label = match &outcome {
            Outcome::Delivered(status) => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'succeeded', attempts = $2, last_status_code = $3,
                            last_error = NULL, delivered_at = now() WHERE id = $1 AND attempts = $2 - 1",
                )
                .bind(due.id)
                .bind(attempts)
                .bind(i32::from(*status))
                .execute(&self.pool)
                .await?;
                "succeeded"
            }
            Outcome::Gone => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'failed', attempts = $2, last_status_code = 410,
                            last_error = 'the endpoint answered 410 Gone and was disabled' WHERE id = $1 AND attempts = $2 - 1",
                )
                .bind(due.id)
                .bind(attempts)
                .execute(&self.pool)
                .await?;
                store::disable(&self.pool, due.endpoint_id, "answered 410 Gone").await?;
                metrics::counter!("chronicle_webhook_endpoints_disabled_total").increment(1);
                "gone"
            }
            Outcome::Refused(error) => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'failed', attempts = $2, last_status_code = NULL,
                            last_error = $3 WHERE id = $1 AND attempts = $2 - 1",
                )
                .bind(due.id)
                .bind(attempts)
                .bind(error)
                .execute(&self.pool)
                .await?;
                "refused"
            }
            Outcome::Failed { status, error } => {
                // Attempt n failed: wait schedule[n-1]; past the schedule the delivery is failed.
                let retry_in = self.schedule.get(attempts as usize - 1);
                sqlx::query(
                    "UPDATE webhook_deliveries
                        SET status = CASE WHEN $5::float8 IS NULL THEN 'failed' ELSE 'pending' END,
                            attempts = $2, last_status_code = $3, last_error = $4,
                            next_attempt_at = now() + make_interval(secs => coalesce($5, 0))
                      WHERE id = $1 AND attempts = $2 - 1",
                )
                .bind(due.id)
                .bind(attempts)
                .bind(status.map(i32::from))
                .bind(error)
                .bind(retry_in.map(Duration::as_secs_f64))
                .execute(&self.pool)
                .await?;
                if retry_in.is_some() {
                    "retrying"
                } else {
                    "failed"
                }
            }
        };
        metrics::counter!("chronicle_webhook_deliveries_total", "outcome" => label).increment(1);
        Ok(())
    }

    /// Leases what can be sent now and starts sending it, each delivery on its own; returns
    /// how many it started. A finished send wakes the loop, so its endpoint's next delivery
    /// goes out at once.
    pub async fn dispatch(self: &Arc<Self>) -> Result<usize, sqlx::Error> {
        let busy = self.busy();
        let room = MAX_IN_FLIGHT.saturating_sub(busy.values().sum());
        if room == 0 {
            return Ok(0);
        }
        let due = self.lease(&busy, room).await?;
        let count = due.len();
        let mut endpoints: HashMap<Uuid, Option<Endpoint>> = HashMap::new();
        for delivery in due {
            let endpoint = match endpoints.get(&delivery.endpoint_id) {
                Some(found) => found.clone(),
                None => {
                    let found = store::find(&self.pool, delivery.endpoint_id).await?;
                    endpoints.insert(delivery.endpoint_id, found.clone());
                    found
                }
            };
            self.started(delivery.endpoint_id);
            let sender = Arc::clone(self);
            let span = spans::webhook_attempt(
                delivery.traceparent.as_deref(),
                delivery.endpoint_id,
                delivery.id,
                delivery.attempts + 1,
            );
            tokio::spawn(async move {
                let outcome = match &endpoint {
                    Some(endpoint) if endpoint.enabled => {
                        let started = std::time::Instant::now();
                        let outcome = sender
                            .send(endpoint, &delivery)
                            .instrument(span.clone())
                            .await;
                        metrics::histogram!("chronicle_webhook_delivery_duration_seconds")
                            .record(started.elapsed().as_secs_f64());
                        outcome
                    }
                    _ => Outcome::Failed {
                        status: None,
                        error: "the endpoint is disabled".into(),
                    },
                };
                record_on_span(&span, &outcome);
                if let Err(e) = sender.record(&delivery, outcome).await {
                    // The lease runs out and the delivery is sent again.
                    tracing::warn!(error = %e, "could not record a webhook delivery");
                }
                sender.ended(delivery.endpoint_id);
                sender.wake.notify_one();
            });
        }
        Ok(count)
    }

    pub async fn run(self: Arc<Self>) {
        loop {
            match self.dispatch().await {
                Ok(0) => {
                    let _ = tokio::time::timeout(IDLE_POLL, self.wake.notified()).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "webhook sender cannot reach the database");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// The body a subscriber receives for an event, from its CloudEvent on NATS.
/// The attempt's result on its span (a no-op unless traces are exported).
fn record_on_span(span: &tracing::Span, outcome: &Outcome) {
    if !propagation::enabled() {
        return;
    }
    match outcome {
        Outcome::Delivered(status) => {
            span.record("http.response.status_code", status);
        }
        Outcome::Failed { status, .. } => {
            if let Some(status) = status {
                span.record("http.response.status_code", status);
            }
            span.record("otel.status_code", "error");
        }
        Outcome::Gone | Outcome::Refused(_) => {
            span.record("otel.status_code", "error");
        }
    }
}

pub fn body_from_cloud_event(event: &Value) -> Value {
    serde_json::json!({
        "type": event["type"],
        "timestamp": event["time"],
        "data": event["data"],
        "metadata": {
            "event_id": event["id"],
            "position": event["position"],
            "aggregate_id": event["aggregateid"],
            "aggregate_version": event["aggregateversion"].as_str().and_then(|v| v.parse::<i64>().ok()),
            "correlation_id": event["correlationid"],
        },
    })
}
