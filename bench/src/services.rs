//! The throwaway Postgres cluster and NATS server every benchmark runs against: started in a
//! temporary directory on free ports, with default durability, and torn down (processes
//! stopped, directory removed) when dropped, including on error or Ctrl-C.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "{prefix}.{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Makes sure `binary` exists, installing Debian's `package` when we are root.
pub fn ensure_tool(binary: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = which(binary) {
        return Ok(path);
    }
    if !is_root() {
        bail!("{binary} is missing: install it with `sudo apt-get install {package}`");
    }
    eprintln!("installing {package} (for {binary})");
    let status = std::process::Command::new("apt-get")
        .args(["install", "-y", "-q", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        // The package lists may be missing on a fresh machine.
        let _ = std::process::Command::new("apt-get")
            .args(["update", "-q"])
            .status();
        std::process::Command::new("apt-get")
            .args(["install", "-y", "-q", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
    }
    which(binary).with_context(|| format!("{binary} still missing after installing {package}"))
}

fn which(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        return Path::new(binary).exists().then(|| PathBuf::from(binary));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|dir| dir.join(binary))
            .find(|candidate| candidate.is_file())
    })
}

/// The newest /usr/lib/postgresql/<version>/bin with initdb, pg_ctl and pgbench.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            ["initdb", "pg_ctl", "pgbench", "postgres"]
                .iter()
                .all(|b| bin.join(b).is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    /// Root may not run initdb or postgres; they run as this user.
    run_as: Option<String>,
    pub port: u16,
    started: bool,
}

impl Postgres {
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let bin = match postgres_bin() {
            Some(bin) => bin,
            None => {
                ensure_tool("/usr/lib/postgresql", "postgresql")?;
                postgres_bin().context("no /usr/lib/postgresql/*/bin with initdb and pgbench")?
            }
        };
        let run_as = is_root().then(|| "postgres".to_owned());
        let pg_dir = dir.join("pg");
        std::fs::create_dir_all(&pg_dir)?;
        if let Some(user) = &run_as {
            let (uid, gid) = user_ids(user)?;
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&pg_dir, Some(uid), Some(gid))?;
        }
        let data = pg_dir.join("data");
        let mut pg = Self {
            bin,
            data,
            run_as,
            port: free_port()?,
            started: false,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                path_str(&pg.data)?,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )
        .context("initdb")?;
        // Defaults everywhere (fsync, synchronous_commit, shared_buffers) except where it
        // listens and how many connections the servers, pools and 32-client runs need.
        let extra = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nmax_connections = 300\n",
            pg.port,
            pg_dir.display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(pg.data.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, extra.as_bytes()))
            .context("configuring the cluster")?;
        let log = pg_dir.join("postgres.log");
        pg.started = true;
        pg.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&pg.data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .with_context(|| format!("starting Postgres (log: {})", log.display()))?;
        Ok(pg)
    }

    fn command(&self, tool: &str) -> std::process::Command {
        let program = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => std::process::Command::new(program),
        };
        // pg_ctl start detaches the postmaster into its own session, so a terminal's Ctrl-C
        // reaches only us and we stop it in order.
        command.current_dir("/").stdin(Stdio::null());
        command
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let output = self
            .command(tool)
            .args(args)
            .output()
            .with_context(|| format!("running {tool}"))?;
        if !output.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn pgbench(&self) -> PathBuf {
        self.bin.join("pgbench")
    }

    /// The postmaster's pid, whose tree is Postgres's CPU.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        let Ok(data) = path_str(&self.data).map(str::to_owned) else {
            return;
        };
        let fast = self.run(
            "pg_ctl",
            &["-D", &data, "-m", "fast", "-w", "-t", "30", "stop"],
        );
        if fast.is_err() {
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

fn user_ids(user: &str) -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = std::process::Command::new("id")
            .args([flag, user])
            .output()?;
        if !out.status.success() {
            bail!("no system user {user} to run Postgres as (install the postgresql package)");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

pub struct Nats {
    // Killed on drop.
    _child: tokio::process::Child,
    pub port: u16,
}

impl Nats {
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let binary = ensure_tool("nats-server", "nats-server")?;
        let port = free_port()?;
        let store = dir.join("nats");
        std::fs::create_dir_all(&store)?;
        let log = std::fs::File::create(dir.join("nats.log"))?;
        let child = tokio::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting nats-server")?;
        let nats = Self {
            _child: child,
            port,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            // nats-server enables JetStream before it accepts clients.
            if let Ok(client) = async_nats::connect(nats.url()).await {
                if client.flush().await.is_ok() {
                    return Ok(nats);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "nats-server did not become ready (log: {})",
                    dir.join("nats.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// Both services in one temporary directory; fields drop in order, the directory last.
pub struct Services {
    pub nats: Nats,
    pub pg: Postgres,
    pub dir: TempDir,
}

impl Services {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = TempDir::new("chronicle-bench")?;
        let pg = Postgres::start(dir.path())?;
        let nats = Nats::start(dir.path()).await?;
        Ok(Self { nats, pg, dir })
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
