//! `chronicle-dev`: reads `.env`, makes sure of Postgres and NATS (starting throwaway ones when
//! needed), runs a command with `DATABASE_URL`/`NATS_URL` pointing at them, and stops the
//! throwaway ones after it. Behind `scripts/serve` and `scripts/test`.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use anyhow::Context;
use devservices::{dotenv, ensure_services, test_tools};
use tokio::signal::unix::{signal, Signal, SignalKind};

const USAGE: &str = "usage: chronicle-dev serve [chronicle serve args]   (cargo run --release --bin chronicle -- serve ...)
       chronicle-dev test [cargo test args]        (cargo test --workspace --all-targets ...)
       chronicle-dev run COMMAND [ARGS]";

const DEVELOPMENT_SECRET: &str = "chronicle-development-only-secret-do-not-use-in-production";

/// The signals passed on to the command, caught from the start so that one arriving while the
/// services start still lets us stop them.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("catching SIGHUP")?,
        })
    }

    /// The next signal's name and number.
    async fn next(&mut self) -> (&'static str, i32) {
        tokio::select! {
            _ = self.interrupt.recv() => ("INT", 2),
            _ = self.terminate.recv() => ("TERM", 15),
            _ = self.hangup.recv() => ("HUP", 1),
        }
    }

    /// A signal that has already arrived, if any.
    async fn pending(&mut self) -> Option<(&'static str, i32)> {
        tokio::select! {
            biased;
            signal = self.next() => Some(signal),
            _ = std::future::ready(()) => None,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let code = match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    };
    std::process::exit(code);
}

async fn run() -> anyhow::Result<i32> {
    let mut signals = Signals::install()?;
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let (program, program_args): (String, Vec<String>) = match mode.as_str() {
        "serve" => (
            "cargo".into(),
            ["run", "--release", "--bin", "chronicle", "--", "serve"]
                .map(String::from)
                .into_iter()
                .chain(rest)
                .collect(),
        ),
        "test" => ("cargo".into(), test_args(rest)),
        "run" if !rest.is_empty() => (rest[0].clone(), rest[1..].to_vec()),
        _ => {
            eprintln!("{USAGE}");
            return Ok(2);
        }
    };

    dotenv::load(Path::new(".env"))?;
    if mode == "serve" {
        development_defaults();
    }
    let services = ensure_services(&devservices::database_url(), &devservices::nats_url()).await?;
    std::env::set_var("DATABASE_URL", &services.database_url);
    std::env::set_var("NATS_URL", &services.nats_url);
    if let Some((_, number)) = signals.pending().await {
        return Ok(128 + number);
    }
    if mode == "test" {
        test_tools::ensure_test_tools();
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            std::env::set_var("RUST_BACKTRACE", "1");
        }
    }
    let status = run_forwarding_signals(&program, &program_args, &mut signals).await;
    // The command has shut down: now the services it used may go.
    drop(services);
    let status = status?;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

/// `cargo test --workspace --all-targets ARGS`, without `--workspace` when ARGS name packages:
/// cargo would otherwise test the whole workspace whatever `-p` says.
fn test_args(rest: Vec<String>) -> Vec<String> {
    let names_package = rest
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a.starts_with("-p") || a.starts_with("--package"));
    let scope = if names_package {
        None
    } else {
        Some("--workspace")
    };
    ["test"]
        .into_iter()
        .chain(scope)
        .chain(["--all-targets"])
        .map(String::from)
        .chain(rest)
        .collect()
}

/// Without `JWT_SECRET`, and unless another mode was asked for, `serve` runs in development
/// mode with a fixed, public key (the server then listens on loopback addresses only).
fn development_defaults() {
    let unset = |key: &str| std::env::var(key).map_or(true, |v| v.is_empty());
    let env_allows =
        std::env::var("CHRONICLE_ENV").map_or(true, |v| v.is_empty() || v == "development");
    if unset("JWT_SECRET") && env_allows {
        std::env::set_var("CHRONICLE_ENV", "development");
        std::env::set_var("JWT_SECRET", DEVELOPMENT_SECRET);
        eprintln!("serve: warning: JWT_SECRET is not set; using a fixed DEVELOPMENT secret (CHRONICLE_ENV=development). Set JWT_SECRET (>= 32 bytes) for anything real.");
    }
}

/// Runs the command in a process group of its own, so that a terminal's Ctrl-C reaches it only
/// through us, once, and we outlive its graceful shutdown; INT, TERM and HUP go to that group.
async fn run_forwarding_signals(
    program: &str,
    args: &[String],
    signals: &mut Signals,
) -> anyhow::Result<ExitStatus> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .process_group(0)
        .spawn()
        .with_context(|| format!("error: cannot run {program}"))?;
    let Some(pid) = child.id() else {
        return child.wait().await.context("waiting for the command");
    };
    loop {
        tokio::select! {
            status = child.wait() => return status.context("waiting for the command"),
            (name, _) = signals.next() => {
                let group = -i64::from(pid);
                if !forward(group, name) {
                    forward(pid.into(), name);
                }
            }
        }
    }
}

fn forward(target: i64, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-s", signal, "--", &target.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::test_args;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn the_whole_workspace_is_tested_unless_packages_are_named() {
        assert_eq!(
            test_args(args(&["--test", "api", "--", "openapi"])),
            args(&[
                "test",
                "--workspace",
                "--all-targets",
                "--test",
                "api",
                "--",
                "openapi"
            ])
        );
        assert_eq!(
            test_args(args(&["-p", "aggregates"])),
            args(&["test", "--all-targets", "-p", "aggregates"])
        );
        assert_eq!(
            test_args(args(&["--", "-p"])),
            args(&["test", "--workspace", "--all-targets", "--", "-p"])
        );
    }
}
