//! Records the git commit the binary is built from, for `chronicle_build_info`; `unknown` when
//! there is no git or no repository (a source tarball, a Docker context without `.git`).

use std::process::Command;

fn main() {
    let sha = std::env::var("CHRONICLE_GIT_SHA")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|out| out.status.success())
                .and_then(|out| String::from_utf8(out.stdout).ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CHRONICLE_GIT_SHA={sha}");
    println!("cargo:rerun-if-env-changed=CHRONICLE_GIT_SHA");
    // A new commit moves HEAD (or the branch it names); a worktree's HEAD lives elsewhere,
    // so ask git where.
    for path in ["HEAD", "refs"] {
        if let Some(p) = git_path(path) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

fn git_path(name: &str) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--git-path", name])
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    std::path::Path::new(&path).exists().then_some(path)
}
