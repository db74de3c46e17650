//! Background workers under supervision: one `JoinSet` holds them all; a worker that panics or
//! returns when it should not is logged, counted on `/metrics` and restarted after a backoff,
//! and shutdown stops every worker and waits for them within a bound.
//!
//! A worker is registered with a factory rather than a future so that it can be started again.
//! A worker is stopped by dropping its future at its next await point, the way aborting a task
//! would: the long-lived workers are written to be cut anywhere (an interrupted batch rolls back
//! and is redone by whichever instance leads next).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a worker is expected to end, which decides whether its ending is a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Runs until shutdown; returning is a fault, restarted like a panic.
    UntilShutdown,
    /// A one-shot task: returning is its success; only a panic restarts it.
    UntilDone,
}

/// The restart delays: `first` after a quick failure, doubling up to `max`; a worker that ran
/// for `healthy_after` before it failed starts again from `first`, so one fault a day never
/// waits 30 s.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub healthy_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(100),
            max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before the next start, given the previous delay (`None` before the first
    /// restart) and how long the failed run lasted.
    pub fn after(&self, previous: Option<Duration>, ran_for: Duration) -> Duration {
        match previous {
            Some(previous) if ran_for < self.healthy_after => (previous * 2).min(self.max),
            _ => self.first,
        }
    }
}

pub struct Supervisor {
    workers: JoinSet<()>,
    /// This supervisor's own: cancelling it stops its workers and nobody else's.
    stop: CancellationToken,
    backoff: Backoff,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new(Backoff::default())
    }
}

impl Supervisor {
    pub fn new(backoff: Backoff) -> Self {
        metrics::describe_counter!(
            "chronicle_worker_restarts_total",
            "background workers restarted after a panic or an unexpected return, by worker"
        );
        metrics::describe_gauge!(
            "chronicle_workers_running",
            "background workers running in this process, by worker"
        );
        Self {
            workers: JoinSet::new(),
            stop: CancellationToken::new(),
            backoff,
        }
    }

    /// Starts a worker that runs until shutdown, restarting it whenever it ends.
    pub fn spawn<F, Fut>(&mut self, name: impl Into<String>, factory: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_with(name, Lifetime::UntilShutdown, factory);
    }

    pub fn spawn_with<F, Fut>(&mut self, name: impl Into<String>, lifetime: Lifetime, factory: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let worker = Worker {
            name: name.into(),
            lifetime,
            backoff: self.backoff,
        };
        // At zero from the start, so a dashboard sees the worker before its first fault.
        metrics::counter!("chronicle_worker_restarts_total", "worker" => worker.name.clone())
            .increment(0);
        self.workers
            .spawn(worker.supervise(factory, self.stop.clone()));
    }

    /// Stops every worker and waits up to `within` for them to end; what is still running then
    /// is aborted. Returns whether all ended in time.
    pub async fn shutdown(mut self, within: Duration) -> bool {
        self.stop.cancel();
        let all_ended = async { while self.workers.join_next().await.is_some() {} };
        if tokio::time::timeout(within, all_ended).await.is_ok() {
            return true;
        }
        tracing::warn!(
            still_running = self.workers.len(),
            "background workers did not stop in time; aborting them"
        );
        self.workers.abort_all();
        false
    }
}

struct Worker {
    name: String,
    lifetime: Lifetime,
    backoff: Backoff,
}

impl Worker {
    async fn supervise<F, Fut>(self, mut factory: F, stop: CancellationToken)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut delay = None;
        loop {
            let started = Instant::now();
            let ended = {
                let _running = Running::count(&self.name);
                tokio::select! {
                    () = stop.cancelled() => return,
                    ended = AssertUnwindSafe(factory()).catch_unwind() => ended,
                }
            };
            let cause = match ended {
                Ok(()) if self.lifetime == Lifetime::UntilDone => return,
                Ok(()) => "returned".to_owned(),
                Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
            };
            let next = self.backoff.after(delay, started.elapsed());
            delay = Some(next);
            tracing::error!(
                worker = %self.name,
                %cause,
                restart_in_ms = next.as_millis() as u64,
                "background worker stopped; restarting it"
            );
            metrics::counter!("chronicle_worker_restarts_total", "worker" => self.name.clone())
                .increment(1);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(next) => {}
            }
        }
    }
}

/// Counts a worker in `chronicle_workers_running` for as long as it lives, however it ends
/// (returned, panicked, dropped at shutdown or aborted).
struct Running(metrics::Gauge);

impl Running {
    fn count(name: &str) -> Self {
        let gauge = metrics::gauge!("chronicle_workers_running", "worker" => name.to_owned());
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::*;

    /// The value of one series in this process's `/metrics` text.
    fn series(name: &str, worker: &str) -> Option<f64> {
        let text = crate::recorder::handle()?.render();
        let prefix = format!("{name}{{worker=\"{worker}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
    }

    /// A worker that reports each start, fails its first `failures` runs (by `fail`), then runs
    /// until dropped, which it reports too.
    fn flaky(
        failures: usize,
        fail: fn(),
    ) -> (
        impl FnMut() -> futures::future::BoxFuture<'static, ()> + Send + 'static,
        mpsc::UnboundedReceiver<Instant>,
        Arc<AtomicBool>,
    ) {
        let (started, starts) = mpsc::unbounded_channel();
        let dropped = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicUsize::new(0));
        let flag = dropped.clone();
        let factory = move || {
            let (started, runs, flag) = (started.clone(), runs.clone(), flag.clone());
            async move {
                let _ = started.send(Instant::now());
                if runs.fetch_add(1, Ordering::SeqCst) < failures {
                    fail();
                    return;
                }
                let _dropped = DropFlag(flag);
                std::future::pending::<()>().await;
            }
            .boxed()
        };
        (factory, starts, dropped)
    }

    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    async fn next_start(starts: &mut mpsc::UnboundedReceiver<Instant>) -> Instant {
        tokio::time::timeout(Duration::from_secs(600), starts.recv())
            .await
            .expect("the worker was not started again in time")
            .expect("the worker's factory is gone")
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_worker_is_restarted_with_doubling_delays_counted_and_stopped_at_shutdown()
    {
        let _ = crate::recorder::handle();
        let worker = "test-panics-three-times";
        let (factory, mut starts, dropped) = flaky(3, || panic!("failing on purpose"));
        let mut supervisor = Supervisor::default();

        supervisor.spawn(worker, factory);
        let mut at = vec![next_start(&mut starts).await];
        for _ in 0..3 {
            at.push(next_start(&mut starts).await);
        }

        let delays: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        for (delay, expected) in delays.iter().zip([100, 200, 400]) {
            let expected = Duration::from_millis(expected);
            assert!(
                *delay >= expected && *delay < expected + Duration::from_millis(10),
                "restart delays {delays:?}"
            );
        }
        assert_eq!(series("chronicle_worker_restarts_total", worker), Some(3.0));
        assert_eq!(series("chronicle_workers_running", worker), Some(1.0));

        let asked = Instant::now();
        let in_time = supervisor.shutdown(Duration::from_secs(5)).await;

        assert!(in_time);
        assert!(asked.elapsed() < Duration::from_secs(5));
        assert!(dropped.load(Ordering::SeqCst), "the worker still runs");
        assert_eq!(series("chronicle_workers_running", worker), Some(0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_returns_is_restarted_but_a_one_shot_task_is_not() {
        let _ = crate::recorder::handle();
        let (returns, mut returns_starts, _) = flaky(1, || {});
        let (once_started, mut once_starts) = mpsc::unbounded_channel();
        let once = move || {
            let started = once_started.clone();
            async move {
                let _ = started.send(Instant::now());
            }
        };
        let mut supervisor = Supervisor::default();

        supervisor.spawn("test-returns-once", returns);
        supervisor.spawn_with("test-one-shot", Lifetime::UntilDone, once);
        next_start(&mut returns_starts).await;
        next_start(&mut returns_starts).await;
        next_start(&mut once_starts).await;
        // `None` once the supervisor dropped the one-shot task's factory.
        let again = tokio::time::timeout(Duration::from_secs(60), once_starts.recv()).await;

        assert!(
            again.ok().flatten().is_none(),
            "a finished one-shot task was started again"
        );
        assert_eq!(
            series("chronicle_worker_restarts_total", "test-returns-once"),
            Some(1.0)
        );
        assert_eq!(
            series("chronicle_worker_restarts_total", "test-one-shot"),
            Some(0.0)
        );
        assert_eq!(
            series("chronicle_workers_running", "test-one-shot"),
            Some(0.0)
        );
        assert!(supervisor.shutdown(Duration::from_secs(5)).await);
    }

    #[test]
    fn restart_delays_double_up_to_the_cap_and_start_over_after_a_healthy_run() {
        let backoff = Backoff::default();
        let quick = Duration::from_millis(5);
        let mut delays = vec![backoff.after(None, quick)];
        for _ in 0..10 {
            delays.push(backoff.after(delays.last().copied(), quick));
        }

        let millis: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(
            millis,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        assert_eq!(
            backoff.after(Some(Duration::from_secs(30)), Duration::from_secs(61)),
            Duration::from_millis(100)
        );
    }
}
