//! What both test binaries (`tests/api`, `tests/faults`) share: waiting for a condition with a
//! deadline. Included by each with `#[path = "../common/mod.rs"] mod common;`.

use std::future::Future;
use std::time::{Duration, Instant};

/// The pause between two looks at a condition a test waits for. Looking again at once would
/// spin: on two cores, tests polling flat out starve the servers they are waiting on.
pub const POLL: Duration = Duration::from_millis(10);

/// Sleeps for [`POLL`], for a loop that waits in a way [`eventually`] does not fit.
pub async fn poll_pause() {
    tokio::time::sleep(POLL).await;
}

/// Looks every [`POLL`] until `check` returns `Some`, failing the test after `deadline` with
/// what it waited for.
#[allow(dead_code)] // the fault tests use it; the API tests wait with `eventually_ok`
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait(deadline, what, || {
        let look = check();
        async move { look.await.ok_or(None) }
    })
    .await
}

/// Like [`eventually`], for a check that says why it is not there yet: the last reason is in
/// the failure.
pub async fn eventually_ok<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    wait(deadline, what, || {
        let look = check();
        async move { look.await.map_err(Some) }
    })
    .await
}

/// The one deadline loop.
async fn wait<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Option<String>>>,
{
    let started = Instant::now();
    loop {
        let why = match check().await {
            Ok(value) => return value,
            Err(why) => why,
        };
        if started.elapsed() >= deadline {
            match why {
                Some(why) => panic!("gave up after {deadline:?} waiting for {what}: {why}"),
                None => panic!("gave up after {deadline:?} waiting for {what}"),
            }
        }
        poll_pause().await;
    }
}
