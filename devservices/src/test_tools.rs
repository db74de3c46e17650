//! The outside tools the test suite uses, installed when missing: Python packages with pip (as
//! the user), npm packages into `tests/`, Debian packages (chromium, promtool) only as root
//! with apt-get and never with `CHRONICLE_NO_INSTALL` set. A failed install is a warning: the
//! test needing the tool fails and says what to install.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::tools::{apt_install, can_install, which};

fn quietly(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn python_has(module: &str) -> bool {
    quietly("python3", &["-c", &format!("import {module}")])
}

/// `pip install`, then again with `--break-system-packages`: Debian's own Python refuses user
/// installs into it (PEP 668) unless told otherwise.
fn pip_install(spec: &str) -> bool {
    quietly("python3", &["-m", "pip", "install", "--quiet", spec])
        || Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--break-system-packages",
                spec,
            ])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn pip_package(module: &str, spec: &str, can_apt: bool) {
    if python_has(module) {
        return;
    }
    if can_apt && !quietly("python3", &["-m", "pip", "--version"]) {
        eprintln!("test: installing python3-pip (apt)");
        if apt_install("test", "python3-pip").is_err() {
            eprintln!("test: warning: could not install python3-pip");
        }
    }
    eprintln!("test: installing {spec} (pip)");
    if !pip_install(spec) {
        eprintln!("test: warning: could not install {spec}; run: pip install {spec}");
    }
}

fn npm_ci(dir: &str, what: &str, installed: &[&str], extra: &[&str]) {
    if installed.iter().all(|p| Path::new(dir).join(p).exists()) {
        return;
    }
    if which("npm").is_none() {
        eprintln!("test: warning: npm is missing; {what} needs Node.js and npm");
        return;
    }
    eprintln!("test: installing {what} (npm, {dir})");
    let ok = Command::new("npm")
        .args(["ci", "--prefix", dir, "--no-audit", "--no-fund", "--silent"])
        .args(extra)
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("test: warning: could not install {what}; run: npm ci --prefix {dir}");
    }
}

/// Run from the repository root.
pub fn ensure_test_tools() {
    let can_apt = can_install();
    // The API tests check the OpenAPI document with openapi-spec-validator.
    pip_package("openapi_spec_validator", "openapi-spec-validator", can_apt);
    // The fuzzing fault test drives schemathesis against /openapi.json.
    if which("schemathesis").is_none() {
        pip_package("schemathesis", "schemathesis==4.32.5", can_apt);
    }
    // The email tests talk SMTP to tests/smtp/sink.py, an aiosmtpd server each test starts.
    pip_package("aiosmtpd", "aiosmtpd==1.4.6", can_apt);
    // The operator page's browser test drives the system's chromium with playwright-core
    // rather than downloading a browser of its own.
    npm_ci(
        "tests/browser",
        "the operator page's browser test (playwright-core)",
        &["node_modules/playwright-core"],
        &[],
    );
    // The OpenAPI lint (scripts/lint-openapi, run by .ci/run) uses Spectral and Redocly.
    npm_ci(
        "tests/lint",
        "the OpenAPI lint (Spectral and Redocly)",
        &["node_modules/.bin/spectral", "node_modules/.bin/redocly"],
        &["--ignore-scripts"],
    );
    apt_tool("chromium", "chromium", can_apt);
    // The metrics tests and scripts/check-alerts run promtool, which Debian ships with the
    // Prometheus server (installed, not started).
    apt_tool("promtool", "prometheus", can_apt);
}

/// `binary` from the Debian `package`, installed when missing and allowed.
fn apt_tool(binary: &str, package: &str, can_apt: bool) {
    if which(binary).is_some() {
        return;
    }
    if !can_apt {
        eprintln!("test: warning: {binary} is missing; install it (apt-get install {package})");
        return;
    }
    eprintln!("test: installing {package} (apt)");
    if apt_install("test", package).is_err() {
        eprintln!("test: warning: could not install {package}");
    }
}
