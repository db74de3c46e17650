//! What the projector runner and rebuilds report to the process's metrics recorder (the
//! server registers and renders the families).

use std::time::Duration;

use crate::rebuild::RebuildProgress;

/// A batch applied and committed with its checkpoint.
pub fn batch_applied(projector: &'static str, events: usize, took: Duration) {
    metrics::histogram!("chronicle_projection_batch_events", "projector" => projector)
        .record(events as f64);
    metrics::histogram!("chronicle_projection_apply_duration_seconds", "projector" => projector)
        .record(took.as_secs_f64());
}

/// A batch failed; the runner retries it with backoff.
pub fn failed(projector: &'static str) {
    metrics::gauge!("chronicle_projection_failed", "projector" => projector).set(1.0);
    metrics::counter!("chronicle_projection_failures_total", "projector" => projector).increment(1);
}

/// A requested rebuild's progress after each batch.
pub fn rebuild_progress(projector: &str, progress: RebuildProgress) {
    let projector = projector.to_owned();
    metrics::gauge!("chronicle_projection_rebuild_running", "projector" => projector.clone())
        .set(1.0);
    metrics::gauge!("chronicle_projection_rebuild_applied_events", "projector" => projector.clone())
        .set(progress.applied as f64);
    metrics::gauge!("chronicle_projection_rebuild_planned_events", "projector" => projector)
        .set(progress.total as f64);
}

/// A requested rebuild ended (swapped in, failed or handed over); its last progress stays.
pub fn rebuild_ended(projector: &str) {
    metrics::gauge!("chronicle_projection_rebuild_running", "projector" => projector.to_owned())
        .set(0.0);
}
