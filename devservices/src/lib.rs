//! Throwaway Postgres and NATS for development, tests and benchmarks, in one place: finding or
//! installing the server binaries, starting a cluster or a `nats-server -js` in a temporary
//! directory on a free port (stopped and deleted on drop), probing the configured ones, reading
//! `.env`, and [`ensure_services`], which `chronicle-dev` (behind `scripts/serve` and
//! `scripts/test`) runs before the app or the tests.

pub mod dotenv;
pub mod endpoint;
mod ensure;
pub mod nats;
pub mod postgres;
mod probe;
pub mod test_tools;
mod tools;

pub use endpoint::Endpoint;
pub use ensure::{ensure_services, Services};
pub use nats::Nats;
pub use postgres::Postgres;
pub use probe::{has_jetstream, nats_info, probe_postgres, probe_postgres_settled, PgProbe};
pub use tools::{
    apt_install, can_install, ensure_tool, free_port, port_is_free, port_open, which, TempDir,
};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/chronicle";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// `DATABASE_URL`, or the default when it is unset or empty.
pub fn database_url() -> String {
    env_or("DATABASE_URL", DEFAULT_DATABASE_URL)
}

/// `NATS_URL`, or the default when it is unset or empty.
pub fn nats_url() -> String {
    env_or("NATS_URL", DEFAULT_NATS_URL)
}

/// [`database_url`] naming the `postgres` database, which always exists (the configured one may
/// not yet): where databases are created and dropped.
pub fn admin_database_url() -> anyhow::Result<String> {
    with_database(&database_url(), "postgres")
}

/// A Postgres URL naming another database, everything else kept.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    Ok(Endpoint::parse(url, 5432)?.with_database(database))
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}
