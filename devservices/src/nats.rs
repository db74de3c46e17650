//! A throwaway `nats-server -js`: its own port and store directory, stopped, killed and started
//! again at will (fault tests do), and killed and deleted on drop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::probe::{has_jetstream, nats_info};
use crate::tools::{self, TempDir};

/// `nats-server` on PATH or where Debian and the upstream installer put it.
pub fn find_server() -> Option<PathBuf> {
    tools::which("nats-server").or_else(|| {
        [
            "/usr/sbin/nats-server",
            "/usr/local/bin/nats-server",
            "/usr/bin/nats-server",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    })
}

/// The message for a machine without nats-server.
pub fn missing_server_message(display: &str) -> String {
    format!(
        "nats: error: nothing answers at {display} and no nats-server binary was found.\n\
         nats:        Install it (sudo apt-get install nats-server) or point NATS_URL at a reachable server with JetStream.{}",
        tools::install_disabled_note()
    )
}

/// How to start a [`Nats`].
#[derive(Debug, Default)]
pub struct NatsBuilder {
    port: Option<u16>,
    args: Vec<String>,
    own_group: bool,
}

impl NatsBuilder {
    /// Listen here if the port is free, else on another.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// More nats-server arguments (`--user`, `--auth`, ...), kept for restarts.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Put the server in a process group of its own, so a terminal's Ctrl-C reaches only
    /// whoever started it, who stops it after the app has shut down. Off, a Ctrl-C of a test
    /// run takes the server with it.
    pub fn own_process_group(mut self) -> Self {
        self.own_group = true;
        self
    }

    pub fn start(self) -> anyhow::Result<Nats> {
        let binary = match find_server() {
            Some(binary) => binary,
            None if tools::can_install() => {
                tools::apt_install("nats", "nats-server")?;
                find_server().context(
                    "installed 'nats-server' but still cannot find the nats-server binary",
                )?
            }
            None => bail!(missing_server_message("127.0.0.1")),
        };
        let dir = TempDir::new("chronicle-nats")?;
        let mut nats = Nats {
            binary,
            port: 0,
            args: self.args,
            own_group: self.own_group,
            child: None,
            dir,
        };
        for attempt in 0..5 {
            nats.port = match self.port {
                Some(port) if attempt == 0 && tools::port_is_free(port) => port,
                _ => tools::free_port()?,
            };
            match nats.restart() {
                Ok(()) => return Ok(nats),
                // Lost a race for the port: try another one.
                Err(_) if nats.log_says("address already in use") => continue,
                Err(e) => return Err(e),
            }
        }
        bail!("nats: could not start nats-server: no free port found")
    }
}

/// A nats-server of our own. Fields drop in order: the server is gone before its directory.
#[derive(Debug)]
pub struct Nats {
    binary: PathBuf,
    port: u16,
    args: Vec<String>,
    own_group: bool,
    child: Option<Child>,
    dir: TempDir,
}

impl Nats {
    pub fn builder() -> NatsBuilder {
        NatsBuilder::default()
    }

    /// A server on a free port.
    pub fn start() -> anyhow::Result<Self> {
        Self::builder().start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store; copy or replace it only while the server is stopped.
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The temporary directory holding the store and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn log_says(&self, needle: &str) -> bool {
        std::fs::read_to_string(self.log()).is_ok_and(|text| text.contains(needle))
    }

    /// Starts the server (again) on the same port and store; returns once it greets clients
    /// with JetStream on, which nats-server enables before it accepts any.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("nats-server already runs");
        }
        let _ = std::fs::write(self.log(), "");
        let mut command = Command::new(&self.binary);
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store())
            .arg("-l")
            .arg(self.log())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.own_group {
            command.process_group(0);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let port = self.port;
        let mut exited = false;
        let ready = tools::wait_for(Duration::from_secs(20), || {
            exited = self
                .child
                .as_mut()
                .is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
            exited || nats_info("127.0.0.1", port).is_some_and(|info| has_jetstream(&info))
        });
        if ready && !exited {
            return Ok(());
        }
        self.kill();
        bail!(
            "nats: could not start nats-server ({}) on 127.0.0.1:{port}\n{}",
            self.binary.display(),
            tools::log_tail(&self.log())
        )
    }

    /// SIGKILL: whatever JetStream acknowledged but had not written yet is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, a clean stop: JetStream writes what it holds before it exits. Killed if it is
    /// still there after `grace`, which is an error.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        tools::send_signal(child.id().into(), "TERM");
        let exited = tools::wait_for(grace, || !matches!(child.try_wait(), Ok(None)));
        if !exited {
            let _ = child.kill();
        }
        let _ = child.wait();
        if !exited {
            bail!("nats-server did not stop within {grace:?} of SIGTERM");
        }
        Ok(())
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(5));
    }
}
