//! CPU time and memory of processes, read from /proc: the machine is CPU-bound, so what a
//! request costs in CPU is reported beside what it achieves.

use std::path::Path;

/// Clock ticks per second (`getconf CLK_TCK`); 100 on every Linux we run on.
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The fields of /proc/<pid>/stat after the command name (which may contain spaces).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &raw[raw.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

fn field(fields: &[String], index: usize) -> f64 {
    fields
        .get(index)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0.0)
}

// Indexes into `stat_fields` (stat(5) numbers minus 3): ppid 4, utime 14, stime 15,
// cutime 16, cstime 17.
const PPID: usize = 1;
const UTIME: usize = 11;
const STIME: usize = 12;
const CUTIME: usize = 13;
const CSTIME: usize = 14;

/// CPU seconds a process has used (user + system).
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_fields(pid).map_or(0.0, |f| {
        (field(&f, UTIME) + field(&f, STIME)) / ticks_per_second()
    })
}

/// CPU seconds of this process's children that have exited and been waited for.
pub fn reaped_children_cpu_seconds() -> f64 {
    stat_fields(std::process::id()).map_or(0.0, |f| {
        (field(&f, CUTIME) + field(&f, CSTIME)) / ticks_per_second()
    })
}

/// CPU seconds of a process tree one level deep, including children that have exited and been
/// reaped (Postgres: the postmaster reaps its backends, so their time lands in its cutime).
pub fn tree_cpu_seconds(root: u32) -> f64 {
    let Some(own) = stat_fields(root) else {
        return 0.0;
    };
    let mut ticks =
        field(&own, UTIME) + field(&own, STIME) + field(&own, CUTIME) + field(&own, CSTIME);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(f) = stat_fields(pid) {
                if field(&f, PPID) as u32 == root {
                    ticks += field(&f, UTIME) + field(&f, STIME);
                }
            }
        }
    }
    ticks / ticks_per_second()
}

/// A `/proc/<pid>/status` value in KiB (`VmHWM` is the peak resident set, `VmRSS` the current).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// Busy and total jiffies of the whole machine, to tell how saturated it was during a run.
pub fn machine_jiffies() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return (0.0, 0.0);
    };
    let values: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = values.iter().sum();
    // idle and iowait
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// CPU used by the server and by Postgres between two moments.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub server_secs: f64,
    pub postgres_secs: f64,
    /// Fraction of the machine's CPUs that were busy (anything, including other tenants).
    pub machine_busy: f64,
}

pub struct CpuMeter {
    server: Option<u32>,
    postmaster: Option<u32>,
    start: (f64, f64, (f64, f64)),
}

impl CpuMeter {
    pub fn start(server: Option<u32>, postmaster: Option<u32>) -> Self {
        Self {
            server,
            postmaster,
            start: Self::sample(server, postmaster),
        }
    }

    fn sample(server: Option<u32>, postmaster: Option<u32>) -> (f64, f64, (f64, f64)) {
        (
            server.map_or(0.0, cpu_seconds),
            postmaster.map_or(0.0, tree_cpu_seconds),
            machine_jiffies(),
        )
    }

    pub fn stop(self) -> CpuUse {
        let (server, postgres, (busy, total)) = Self::sample(self.server, self.postmaster);
        let (busy0, total0) = self.start.2;
        CpuUse {
            server_secs: server - self.start.0,
            postgres_secs: postgres - self.start.1,
            machine_busy: if total > total0 {
                (busy - busy0) / (total - total0)
            } else {
                0.0
            },
        }
    }
}
