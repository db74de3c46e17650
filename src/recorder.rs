//! The process's metrics recorder and what workers report to it; `http::metrics` renders
//! them for `GET /metrics`.

use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use projections::Position;

/// Every outcome the webhook sender counts (`webhook_deliveries_total{outcome}`).
pub const WEBHOOK_OUTCOMES: &[&str] = &["succeeded", "retrying", "failed", "gone", "refused"];
/// Every outcome of `chronicle_emails_total{outcome}`.
pub const EMAIL_OUTCOMES: &[&str] = &["sent", "failed"];

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide recorder (metrics has one global recorder; every server in this process
/// reports through it).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .ok()?
                .install_recorder()
                .ok()
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
