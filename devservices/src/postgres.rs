//! A throwaway Postgres cluster: initdb in a temporary directory, trust authentication for user
//! `postgres`, listening on 127.0.0.1 only; stopped and deleted on drop.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::tools::{self, TempDir};

/// The newest `/usr/lib/postgresql/<version>/bin` with the server binaries, else the PATH
/// directory holding both `initdb` and `pg_ctl`.
pub fn find_server() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let initdb = tools::which("initdb")?;
    let dir = initdb.parent()?.to_path_buf();
    dir.join("pg_ctl").is_file().then_some(dir)
}

/// The message for a machine without the server binaries.
pub fn missing_server_message(display: &str) -> String {
    format!(
        "postgres: error: nothing answers at {display} and no PostgreSQL server binaries (initdb, pg_ctl) were found.\n\
         postgres:        Install them (sudo apt-get install postgresql) or point DATABASE_URL at a reachable server.{}",
        tools::install_disabled_note()
    )
}

/// How to start a [`Postgres`].
#[derive(Debug, Default)]
pub struct PostgresBuilder {
    port: Option<u16>,
    bin: Option<PathBuf>,
    settings: String,
}

impl PostgresBuilder {
    /// Listen here if the port is free, else on another.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Use the server binaries in this directory.
    pub fn bin_dir(mut self, dir: PathBuf) -> Self {
        self.bin = Some(dir);
        self
    }

    /// A `postgresql.conf` setting; the rest stay at their defaults.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        let _ = writeln!(self.settings, "{name} = {value}");
        self
    }

    pub fn start(self) -> anyhow::Result<Postgres> {
        let bin = match self.bin.or_else(find_server) {
            Some(bin) => bin,
            None if tools::can_install() => {
                tools::apt_install("postgres", "postgresql")?;
                find_server()
                    .context("installed 'postgresql' but still cannot find initdb/pg_ctl")?
            }
            None => bail!(missing_server_message("127.0.0.1")),
        };
        let run_as = run_as_user()?;
        let dir = cluster_dir(run_as.as_deref())?;
        let data = dir.path().join("data");
        let mut pg = Postgres {
            bin,
            data,
            run_as,
            port: 0,
            started: false,
            dir,
        };
        let initdb = pg
            .command("initdb")
            .arg("-D")
            .arg(&pg.data)
            // A throwaway cluster's files need not survive a machine crash.
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .context("running initdb")?;
        if !initdb.status.success() {
            bail!(
                "postgres: initdb failed ({}):\n{}{}",
                pg.bin.join("initdb").display(),
                String::from_utf8_lossy(&initdb.stdout),
                String::from_utf8_lossy(&initdb.stderr)
            );
        }
        let conf = format!(
            "\n# chronicle throwaway cluster\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n{}",
            pg.dir.path().display(),
            self.settings
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(pg.data.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .context("configuring the throwaway cluster")?;
        pg.start_on_some_port(self.port)?;
        Ok(pg)
    }
}

/// A throwaway cluster. Fields drop in order: the server is stopped before its directory goes.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    /// Root may not run initdb or postgres; they run as this user.
    run_as: Option<String>,
    port: u16,
    started: bool,
    dir: TempDir,
}

impl Postgres {
    pub fn builder() -> PostgresBuilder {
        PostgresBuilder::default()
    }

    /// A cluster on a free port with default settings.
    pub fn start() -> anyhow::Result<Self> {
        Self::builder().start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of one of its databases, as user `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The directory of the server binaries (`pgbench` is there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The temporary directory holding `data/` and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The postmaster's pid, whose process tree is all of Postgres.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        // A group of its own: a terminal's Ctrl-C reaches whoever started us, who stops the
        // cluster after the app has shut down. pg_ctl also detaches the postmaster itself.
        command
            .current_dir("/")
            .stdin(Stdio::null())
            .process_group(0);
        command
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        self.command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn pg_ctl_start(&mut self) -> anyhow::Result<bool> {
        let log = self.log();
        let log = log
            .to_str()
            .context("the temporary directory's path is not UTF-8")?;
        let options = format!("-p {}", self.port);
        self.started = true;
        Ok(self.pg_ctl(&["-l", log, "-w", "-t", "60", "-o", &options, "start"]))
    }

    fn start_on_some_port(&mut self, preferred: Option<u16>) -> anyhow::Result<()> {
        for attempt in 0..5 {
            self.port = match preferred {
                Some(port) if attempt == 0 && tools::port_is_free(port) => port,
                _ => tools::free_port()?,
            };
            if self.pg_ctl_start()? {
                return Ok(());
            }
            self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
            self.started = false;
            let text = std::fs::read_to_string(self.log()).unwrap_or_default();
            if !text.contains("Address already in use") {
                bail!(
                    "postgres: could not start the throwaway cluster ({})\n{}",
                    self.bin.join("pg_ctl").display(),
                    tools::log_tail(&self.log())
                );
            }
            // Lost a race for the port: try another one.
            let _ = std::fs::write(self.log(), "");
        }
        bail!("postgres: could not start the throwaway cluster: no free port found")
    }

    /// `pg_ctl stop -m fast`: sessions are terminated (57P01), open transactions rolled back.
    pub fn stop_fast(&mut self) -> anyhow::Result<()> {
        if !self.pg_ctl(&["-m", "fast", "-w", "-t", "30", "stop"]) {
            bail!(
                "postgres: pg_ctl stop failed\n{}",
                tools::log_tail(&self.log())
            );
        }
        Ok(())
    }

    /// SIGKILL to the postmaster: no shutdown at all; its backends notice and exit on their own.
    pub fn crash(&mut self) -> anyhow::Result<()> {
        let pid = self
            .postmaster_pid()
            .context("no postmaster.pid: is the cluster running?")?;
        if !tools::send_signal(pid.into(), "KILL") {
            bail!("postgres: could not kill the postmaster ({pid})");
        }
        Ok(())
    }

    /// Starts the stopped or crashed cluster again on its port. After a crash the old
    /// backends must exit before a new postmaster may start, so a refusal is retried.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self.pg_ctl_start()? {
            if std::time::Instant::now() >= deadline {
                bail!(
                    "postgres: the cluster did not start again\n{}",
                    tools::log_tail(&self.log())
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        let pid = self.postmaster_pid();
        if !self.pg_ctl(&["-m", "fast", "-w", "-t", "30", "stop"]) {
            if let Some(pid) = pid {
                tools::send_signal(pid.into(), "QUIT");
            }
        }
        // The postmaster removes its pid file just before it exits: wait for the process.
        if let Some(pid) = pid {
            if !tools::wait_for(Duration::from_secs(10), || !tools::alive(pid)) {
                tools::send_signal(pid.into(), "KILL");
            }
        }
    }
}

/// initdb refuses to run as root: as root, the cluster runs as `postgres` (Debian's package
/// creates it), or as a system user made for the purpose.
fn run_as_user() -> anyhow::Result<Option<String>> {
    if !tools::is_root() {
        return Ok(None);
    }
    let exists = |user: &str| {
        Command::new("id")
            .args(["-u", user])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if exists("postgres") {
        return Ok(Some("postgres".to_owned()));
    }
    if !exists("chronicle-pg") {
        eprintln!("postgres: creating system user 'chronicle-pg' to run the throwaway cluster (initdb refuses to run as root)");
        let created = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
            ])
            .args(["--shell", "/usr/sbin/nologin", "chronicle-pg"])
            .status()
            .is_ok_and(|s| s.success());
        if !created {
            bail!("postgres: could not create a system user to run Postgres as");
        }
    }
    Ok(Some("chronicle-pg".to_owned()))
}

/// A temporary directory the cluster's user can write to: a TMPDIR under /root would not do.
fn cluster_dir(run_as: Option<&str>) -> anyhow::Result<TempDir> {
    let Some(user) = run_as else {
        return TempDir::new("chronicle-pg");
    };
    for base in [std::env::temp_dir(), PathBuf::from("/tmp")] {
        let Ok(dir) = TempDir::new_in(&base, "chronicle-pg") else {
            continue;
        };
        let owned = Command::new("chown")
            .arg(format!("{user}:"))
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        let writable = owned
            && Command::new("runuser")
                .args(["-u", user, "--", "test", "-w"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
        if writable {
            return Ok(dir);
        }
    }
    bail!("postgres: could not create a temporary directory usable by user '{user}'")
}
