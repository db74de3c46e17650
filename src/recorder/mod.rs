//! The process's metrics recorder, the families it holds and what fills them; `http::metrics`
//! renders them for `GET /metrics`.
//!
//! Names follow the OpenTelemetry semantic conventions where one exists (HTTP server, database
//! client pool, process), with units in the name; Chronicle's own families are `chronicle_*`.
//! [`families`] describes every family and creates it at zero at start, [`scrape`] samples
//! what is read rather than counted (lags, pool, NATS, process) when `/metrics` is scraped.

pub mod commands;
pub mod families;
pub mod pool;
pub mod scrape;

use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use projections::Position;

/// Every outcome of `chronicle_webhook_deliveries_total{outcome}`.
pub const WEBHOOK_OUTCOMES: &[&str] = &["succeeded", "retrying", "failed", "gone", "refused"];
/// Every outcome of `chronicle_emails_total{outcome}`.
pub const EMAIL_OUTCOMES: &[&str] = &["sent", "failed"];
/// The budgets of `chronicle_rate_limit_rejections_total{group}`.
pub const RATE_LIMIT_GROUPS: &[&str] = &["api", "auth"];
/// The pool's name in the `db_client_connections_*` families (there is one pool).
pub const POOL_NAME: &str = "chronicle";

/// Seconds, from a millisecond to the longest a request may take.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Counts of events or commands: a command's few events up to a projector's 500-event batch.
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// The size histograms; every other histogram is a latency in seconds.
const SIZE_HISTOGRAMS: &[&str] = &[
    "chronicle_append_events",
    "chronicle_append_group_commands",
    "chronicle_projection_batch_events",
];

/// The process-wide recorder (metrics has one global recorder; every server in this process
/// reports through it).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Without buckets the exporter renders a histogram as a summary; every one gets
            // buckets, so rates and quantiles aggregate across instances.
            let mut builder = PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS).ok()?;
            for name in SIZE_HISTOGRAMS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full((*name).into()), SIZE_BUCKETS)
                    .ok()?;
            }
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// Positions only a worker of this instance knows, kept for the next scrape.
#[derive(Default)]
pub struct Gauges {
    relay: Mutex<Option<Position>>,
}

impl Gauges {
    /// The relay's checkpoint, when this instance leads the relay.
    pub fn relay_at(&self, position: Position) {
        if let Ok(mut relay) = self.relay.lock() {
            *relay = Some(position);
        }
    }

    pub fn relay(&self) -> Option<Position> {
        self.relay.lock().ok().and_then(|r| *r)
    }
}

/// A read-your-writes wait: how long it took, and whether the read models caught up in time.
pub fn consistency_waited(took: std::time::Duration, applied: bool) {
    let outcome = if applied { "applied" } else { "timeout" };
    metrics::histogram!("chronicle_read_your_writes_wait_seconds", "outcome" => outcome)
        .record(took.as_secs_f64());
    if !applied {
        metrics::counter!("chronicle_read_your_writes_timeouts_total").increment(1);
    }
}
