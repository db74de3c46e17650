//! The database pool as the OpenTelemetry database-client conventions name it
//! (`db_client_connections_*`).
//!
//! sqlx has no hook around a pool's own acquisitions, so the wait is timed where the code
//! acquires explicitly: the append of every command ([`acquire`]), the path where a saturated
//! pool costs the most. Other queries borrow a connection inside sqlx and are not timed; the
//! usage gauges (`used` at `max`) show that saturation for them.

use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use super::POOL_NAME;

/// A connection from `pool`, its wait recorded (and counted as a timeout when it ran out).
pub async fn acquire(pool: &PgPool) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    let started = Instant::now();
    let acquired = pool.acquire().await;
    metrics::histogram!("db_client_connections_wait_time_seconds", "pool_name" => POOL_NAME)
        .record(started.elapsed().as_secs_f64());
    if matches!(acquired, Err(sqlx::Error::PoolTimedOut)) {
        metrics::counter!("db_client_connections_timeouts_total", "pool_name" => POOL_NAME)
            .increment(1);
    }
    acquired
}

/// The pool's connections in use and idle, and its limit, as they are now.
pub fn sample(pool: &PgPool) {
    let open = f64::from(pool.size());
    let idle = pool.num_idle() as f64;
    metrics::gauge!("db_client_connections_usage", "pool_name" => POOL_NAME, "state" => "idle")
        .set(idle);
    metrics::gauge!("db_client_connections_usage", "pool_name" => POOL_NAME, "state" => "used")
        .set((open - idle).max(0.0));
    metrics::gauge!("db_client_connections_max", "pool_name" => POOL_NAME)
        .set(f64::from(pool.options().get_max_connections()));
}
