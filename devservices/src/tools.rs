//! What both services need from the machine: binaries (installed with apt-get when allowed),
//! temporary directories, ports, and signals to processes we started.

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

/// A directory removed, with everything in it, on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<TMPDIR>/<prefix>.<random>`.
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    pub fn new_in(base: &Path, prefix: &str) -> anyhow::Result<Self> {
        let path = base.join(format!("{prefix}.{:08x}", rand::random::<u32>()));
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

/// A port nothing listens on right now (the kernel's choice).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("finding a free port")?.port())
}

/// Can we listen on 127.0.0.1:`port`?
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Does anything accept TCP connections at `host`:`port`?
pub fn port_open(host: &str, port: u16) -> bool {
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
}

pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Installing is for root with apt-get, and never with `CHRONICLE_NO_INSTALL` set.
pub fn can_install() -> bool {
    std::env::var_os("CHRONICLE_NO_INSTALL").is_none_or(|v| v.is_empty())
        && is_root()
        && which("apt-get").is_some()
}

/// The sentence to add when installing was not done because the user said so.
pub(crate) fn install_disabled_note() -> &'static str {
    if std::env::var_os("CHRONICLE_NO_INSTALL").is_some_and(|v| !v.is_empty()) {
        " (Automatic installation is disabled by CHRONICLE_NO_INSTALL.)"
    } else {
        ""
    }
}

/// `binary` on PATH, or in the sbin directories a non-root PATH leaves out.
pub fn which(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        return Path::new(binary).is_file().then(|| PathBuf::from(binary));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

/// `apt-get install package`, refreshing the package lists once if that fails (a fresh
/// machine has none). `label` prefixes the messages.
pub fn apt_install(label: &str, package: &str) -> anyhow::Result<()> {
    eprintln!("{label}: installing Debian package '{package}' (set CHRONICLE_NO_INSTALL=1 to prevent this) ...");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(std::io::stderr())
            .status()
            .is_ok_and(|s| s.success())
    };
    if install() {
        return Ok(());
    }
    let updated = Command::new("apt-get")
        .args(["update", "-q"])
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .is_ok_and(|s| s.success());
    if updated && install() {
        return Ok(());
    }
    bail!("{label}: 'apt-get install {package}' failed")
}

/// Makes sure `binary` exists, installing Debian's `package` when allowed.
pub fn ensure_tool(binary: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = which(binary) {
        return Ok(path);
    }
    if !can_install() {
        bail!(
            "{binary} is missing: install it with `sudo apt-get install {package}`{}",
            install_disabled_note()
        );
    }
    apt_install(binary, package)?;
    which(binary).with_context(|| format!("{binary} still missing after installing {package}"))
}

/// Sends `signal` (a name such as `TERM`) to a process, or to a process group when `target` is
/// negative. Through kill(1), because this workspace forbids the `unsafe` a syscall needs.
pub(crate) fn send_signal(target: i64, signal: &str) -> bool {
    Command::new("kill")
        .args(["-s", signal, "--", &target.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Is `pid` a live process (not a zombie)?
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The last lines of a log, for an error message.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    format!("---- {} (last lines) ----\n{tail}", path.display())
}

/// Polls `condition` every 10 ms until it holds or `deadline` passes.
pub(crate) fn wait_for(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
