//! What a scrape reads rather than counts: the lags behind the log, the pool, the NATS
//! connection and the process. Nothing here queries the database: the lags come from positions
//! this instance already follows in memory (the log's head from the revocation follower,
//! projector positions from progress notifications, the relay's checkpoint from the relay it
//! leads).

use std::sync::OnceLock;

use projections::Position;

use crate::state::AppState;

/// The process collector (CPU, memory, open fds), shared by the description at start and the
/// sample at each scrape.
pub fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Sets every sampled gauge from what this instance knows now.
pub fn sample(state: &AppState) {
    let head = state.revocations.followed_to();
    for projector in state.progress.names() {
        let at = state.progress.current(projector).unwrap_or(Position::START);
        metrics::gauge!("chronicle_projection_lag_events", "projector" => projector)
            .set(events_between(at, head));
    }
    if let Some(relay) = state.gauges.relay() {
        metrics::gauge!("chronicle_relay_lag_events", "stream" => state.config.nats_stream.clone())
            .set(events_between(relay, head));
    }
    metrics::gauge!("chronicle_nats_connected").set(if state.nats.is_connected() {
        1.0
    } else {
        0.0
    });
    super::pool::sample(&state.pool);
    process().collect();
}

/// Events after `from` up to `head`, from the log's global numbering: exact unless an append
/// rolled back (a gap) or transactions committed out of number order.
pub fn events_between(from: Position, head: Position) -> f64 {
    if from >= head {
        return 0.0;
    }
    (head.position - from.position).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_positions_between_a_checkpoint_and_the_head() {
        let head = Position::new(20, 107);

        assert_eq!(events_between(head, head), 0.0);
        assert_eq!(events_between(Position::new(12, 100), head), 7.0);
        assert_eq!(events_between(Position::new(25, 1), head), 0.0);
        assert_eq!(
            events_between(Position::new(19, 200), head),
            1.0,
            "behind, even when numbered later"
        );
    }
}
