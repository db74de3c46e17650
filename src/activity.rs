//! What this instance saw over the last minutes, for the operator page's charts: events appended,
//! requests and 5xx answers per second, and each projector's and the relay's lag, sampled every
//! `ACTIVITY_SAMPLE_INTERVAL` into a bounded ring.
//!
//! Nothing here asks the database. The event count is the log tail's (it reads every appended
//! event once, whichever instance appended it); requests and errors are two atomic counters that
//! [`Activity::count`] bumps as each answer leaves, the only cost on the request path; lags come
//! from the positions this instance already follows for `/metrics`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use projections::Position;
use serde::Serialize;
use tokio::time::{Instant, MissedTickBehavior};
use utoipa::ToSchema;

use crate::state::AppState;

/// How far back the samples reach.
const KEPT_FOR: Duration = Duration::from_secs(15 * 60);
/// The ring's bound whatever the interval, so a short one (in tests) cannot grow it unbounded.
const MAX_SAMPLES: usize = 1_000;

/// The counters the request path bumps and the samples the sampler keeps.
pub struct Activity {
    requests: AtomicU64,
    errors: AtomicU64,
    interval: Duration,
    capacity: usize,
    samples: Mutex<VecDeque<ActivitySample>>,
}

/// One sample: the rates over the interval that ended `at`, and the lags at `at`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActivitySample {
    pub at: DateTime<Utc>,
    /// Events appended to the log (by any instance) per second, as this instance's log tail
    /// read them.
    pub events_per_second: f64,
    /// HTTP requests this instance answered per second.
    pub requests_per_second: f64,
    /// Of those, answers with a 5xx status per second.
    pub errors_per_second: f64,
    /// Events each projector has still to apply, by projector name.
    pub projection_lag: BTreeMap<String, i64>,
    /// Events not yet acknowledged by JetStream; null unless this instance leads the relay.
    pub relay_lag: Option<i64>,
}

/// `GET /admin/activity`: this instance's samples, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityView {
    /// Seconds between two samples (`ACTIVITY_SAMPLE_INTERVAL`).
    pub interval_seconds: f64,
    /// At most the last 15 minutes (and at most 1,000 samples), oldest first; empty until the
    /// first interval has passed.
    pub samples: Vec<ActivitySample>,
}

impl Activity {
    pub fn new(interval: Duration) -> Self {
        let per_window = KEPT_FOR.as_millis() / interval.as_millis().max(1);
        let capacity = usize::try_from(per_window)
            .unwrap_or(MAX_SAMPLES)
            .clamp(1, MAX_SAMPLES);
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            interval,
            capacity,
            samples: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// Counts one answered request: relaxed increments, since only the sampler reads them and
    /// it needs no ordering with anything else.
    pub fn count(&self, status: StatusCode) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status.is_server_error() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn view(&self) -> ActivityView {
        ActivityView {
            interval_seconds: self.interval.as_secs_f64(),
            samples: self
                .samples
                .lock()
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
        }
    }

    fn push(&self, sample: ActivitySample) {
        if let Ok(mut samples) = self.samples.lock() {
            while samples.len() >= self.capacity {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
    }
}

/// The monotonic counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Totals {
    at: Instant,
    events: u64,
    requests: u64,
    errors: u64,
}

impl Totals {
    fn read(state: &AppState) -> Self {
        Self {
            at: Instant::now(),
            events: state.log_tail.events_read(),
            requests: state.activity.requests.load(Ordering::Relaxed),
            errors: state.activity.errors.load(Ordering::Relaxed),
        }
    }

    /// Events, requests and errors per second from `before` to `self`.
    fn rates_since(&self, before: &Totals) -> (f64, f64, f64) {
        let seconds = self.at.duration_since(before.at).as_secs_f64();
        if seconds <= 0.0 {
            return (0.0, 0.0, 0.0);
        }
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
        (
            rate(self.events, before.events),
            rate(self.requests, before.requests),
            rate(self.errors, before.errors),
        )
    }
}

/// The sampler, a supervised worker: one sample per interval until shutdown. A restarted one
/// keeps the samples (they live in the state) and starts a fresh interval.
pub async fn run(state: AppState) {
    let mut ticker = tokio::time::interval(state.activity.interval);
    // A late tick (a busy runtime) stretches that interval rather than bunching samples up; the
    // rates divide by the time that really passed.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut before = Totals::read(&state);
    loop {
        ticker.tick().await;
        let now = Totals::read(&state);
        state.activity.push(sample(&state, &before, &now));
        before = now;
    }
}

fn sample(state: &AppState, before: &Totals, now: &Totals) -> ActivitySample {
    let (events_per_second, requests_per_second, errors_per_second) = now.rates_since(before);
    let head = state.log_tail.head();
    let lag = |at: Position| crate::recorder::scrape::events_between(at, head) as i64;
    ActivitySample {
        at: crate::commands::now(),
        events_per_second,
        requests_per_second,
        errors_per_second,
        projection_lag: state
            .progress
            .names()
            .map(|name| {
                let at = state.progress.current(name).unwrap_or(Position::START);
                (name.to_owned(), lag(at))
            })
            .collect(),
        relay_lag: state.gauges.relay().map(lag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_at(events_per_second: f64) -> ActivitySample {
        ActivitySample {
            at: crate::commands::now(),
            events_per_second,
            requests_per_second: 0.0,
            errors_per_second: 0.0,
            projection_lag: BTreeMap::new(),
            relay_lag: None,
        }
    }

    #[test]
    fn the_ring_keeps_fifteen_minutes_and_never_more_than_its_bound() {
        let every_five_seconds = Activity::new(Duration::from_secs(5));
        let every_ten_ms = Activity::new(Duration::from_millis(10));

        for n in 0..200 {
            every_five_seconds.push(sample_at(f64::from(n)));
        }

        let kept = every_five_seconds.view().samples;
        assert_eq!(kept.len(), 180);
        assert_eq!(kept[0].events_per_second, 20.0, "the oldest fell off first");
        assert_eq!(kept[179].events_per_second, 199.0);
        assert_eq!(every_ten_ms.capacity, MAX_SAMPLES);
    }

    #[test]
    fn rates_divide_the_counters_growth_by_the_time_that_passed() {
        let then = Instant::now();
        let before = Totals {
            at: then,
            events: 10,
            requests: 100,
            errors: 1,
        };
        let after = Totals {
            at: then + Duration::from_secs(4),
            events: 30,
            requests: 140,
            errors: 3,
        };

        assert_eq!(after.rates_since(&before), (5.0, 10.0, 0.5));
        assert_eq!(before.rates_since(&before), (0.0, 0.0, 0.0));
    }

    #[test]
    fn only_server_errors_count_as_errors() {
        let activity = Activity::new(Duration::from_secs(5));

        for status in [
            StatusCode::OK,
            StatusCode::NOT_FOUND,
            StatusCode::BAD_GATEWAY,
        ] {
            activity.count(status);
        }

        assert_eq!(activity.requests.load(Ordering::Relaxed), 3);
        assert_eq!(activity.errors.load(Ordering::Relaxed), 1);
    }
}
