//! The throwaway Postgres cluster and NATS server every benchmark runs against (the
//! `devservices` crate's): on free ports, with default durability, and torn down (processes
//! stopped, directories removed) when dropped, including on error or Ctrl-C.

use std::path::PathBuf;

pub use devservices::{ensure_tool, free_port, Nats, Postgres, TempDir};

/// Both services, and a scratch directory for the figures; fields drop in order.
pub struct Services {
    pub nats: Nats,
    pub pg: Postgres,
    pub dir: TempDir,
}

impl Services {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = TempDir::new("chronicle-bench")?;
        // Defaults everywhere (fsync, synchronous_commit, shared_buffers) except how many
        // connections the servers, pools and 32-client runs need.
        let pg = Postgres::builder()
            .setting("max_connections", "300")
            .start()?;
        let nats = Nats::start()?;
        Ok(Self { nats, pg, dir })
    }

    pub fn pgbench(&self) -> PathBuf {
        self.pg.bin_dir().join("pgbench")
    }

    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.pg.url("postgres")).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        Ok(self.pg.url(name))
    }
}
