//! The results: what each figure measured against its baseline, judged against its target;
//! kept as JSON (merged per figure, so one figure can be re-run alone) and rendered as the
//! terminal table and BENCHMARKS.md.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::stats::{human, Spread};

/// One side of a comparison: Chronicle, or the baseline measured in the same run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Side {
    pub label: String,
    pub unit: String,
    pub value: Spread,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<Spread>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<Spread>,
}

impl Side {
    pub fn new(label: &str, unit: &str, value: Spread) -> Self {
        Self {
            label: label.into(),
            unit: unit.into(),
            value,
            p50_ms: None,
            p99_ms: None,
        }
    }

    pub fn latencies(mut self, p50: Spread, p99: Spread) -> Self {
        self.p50_ms = Some(p50);
        self.p99_ms = Some(p99);
        self
    }

    pub fn render(&self) -> String {
        let mut out = format!(
            "{} {} ({}-{})",
            human(self.value.median),
            self.unit,
            human(self.value.min),
            human(self.value.max)
        );
        if let (Some(p50), Some(p99)) = (&self.p50_ms, &self.p99_ms) {
            out.push_str(&format!(
                ", p50 {} / p99 {} ms",
                human(p50.median),
                human(p99.median)
            ));
        }
        out
    }
}

/// What the target is about.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// Chronicle ÷ baseline.
    Ratio,
    /// Chronicle's own value.
    Value,
    /// Chronicle's p99 latency.
    P99,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Target {
    pub subject: Subject,
    /// True for ">=", false for "<=".
    pub at_least: bool,
    pub bound: f64,
}

impl Target {
    pub const fn ratio_at_least(bound: f64) -> Self {
        Self {
            subject: Subject::Ratio,
            at_least: true,
            bound,
        }
    }

    pub fn render(&self) -> String {
        let what = match self.subject {
            Subject::Ratio => "ratio",
            Subject::Value => "value",
            Subject::P99 => "p99",
        };
        format!(
            "{what} {} {}",
            if self.at_least { ">=" } else { "<=" },
            self.bound
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub id: String,
    pub title: String,
    /// Concurrent clients, for the figures measured at several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    pub chronicle: Side,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Side>,
    /// Chronicle ÷ baseline per (interleaved) run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Spread>,
    pub target: Target,
    /// Extra measurements that explain the figure (CPU per operation, context baselines).
    #[serde(default)]
    pub notes: Vec<String>,
    /// `quick` or `full`.
    pub mode: String,
    /// The command line that measured it.
    #[serde(default)]
    pub command: String,
    pub measured_at: String,
}

impl Figure {
    /// The number the target judges.
    pub fn judged(&self) -> Option<f64> {
        match self.target.subject {
            Subject::Ratio => self.ratio.as_ref().map(|r| r.median),
            Subject::Value => Some(self.chronicle.value.median),
            Subject::P99 => self.chronicle.p99_ms.as_ref().map(|p| p.median),
        }
    }

    pub fn passed(&self) -> Option<bool> {
        let value = self.judged()?;
        Some(if self.target.at_least {
            value >= self.target.bound
        } else {
            value <= self.target.bound
        })
    }

    /// "PASS", or "MISS" with how far off the target the figure is.
    pub fn verdict(&self) -> String {
        match (self.passed(), self.judged()) {
            (Some(true), _) => "PASS".into(),
            (Some(false), Some(value)) => {
                let off = if self.target.at_least {
                    (self.target.bound - value) / self.target.bound
                } else {
                    (value - self.target.bound) / self.target.bound
                };
                format!("MISS by {:.0}%", off * 100.0)
            }
            _ => "n/a".into(),
        }
    }

    pub fn ratio_text(&self) -> String {
        self.ratio.as_ref().map_or("-".into(), |r| {
            format!("{:.2} ({:.2}-{:.2})", r.median, r.min, r.max)
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub machine: Vec<String>,
    pub figures: Vec<Figure>,
}

impl Results {
    pub fn load(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Replaces the figures with these ids, keeps the others, in the canonical order.
    pub fn merge(&mut self, fresh: Vec<Figure>) {
        self.figures
            .retain(|old| fresh.iter().all(|new| new.id != old.id));
        self.figures.extend(fresh);
        self.figures.sort_by_key(|f| order(&f.id));
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn table(&self) -> String {
        let mut rows = vec![[
            "figure".to_owned(),
            "Chronicle".to_owned(),
            "baseline in the same run".to_owned(),
            "ratio".to_owned(),
            "target".to_owned(),
            "result".to_owned(),
        ]];
        for f in &self.figures {
            rows.push([
                f.title.clone(),
                f.chronicle.render(),
                f.baseline
                    .as_ref()
                    .map_or("-".into(), |b| format!("{}: {}", b.label, b.render())),
                f.ratio_text(),
                f.target.render(),
                f.verdict(),
            ]);
        }
        markdown_table(&rows)
    }
}

/// The order figures appear in, as in the issue.
fn order(id: &str) -> usize {
    const ORDER: [&str; 8] = [
        "commands",
        "updates",
        "reads",
        "deep_page",
        "rebuild",
        "relay",
        "fanout",
        "memory",
    ];
    ORDER
        .iter()
        .position(|p| id.starts_with(p))
        .unwrap_or(ORDER.len())
        * 1000
        + id.rsplit('_')
            .next()
            .and_then(|n| n.trim_start_matches('c').parse::<usize>().ok())
            .unwrap_or(0)
}

pub fn markdown_table(rows: &[[String; 6]]) -> String {
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push_str("| ");
        out.push_str(&row.join(" | "));
        out.push_str(" |\n");
        if i == 0 {
            out.push_str("|---|---|---|---|---|---|\n");
        }
    }
    out
}

/// The machine the figures come from.
pub fn machine() -> Vec<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split(':')
                    .nth(1)
                    .map(|s| s.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or("?".into(), |kib| {
            format!("{:.0} GiB", kib / 1024.0 / 1024.0)
        });
    let version = |program: &str, arg: &str| {
        std::process::Command::new(program)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout).to_string()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines().next().unwrap_or("").trim().to_owned()
            })
            .unwrap_or_default()
    };
    vec![
        format!("{cores} cores ({cpu}), {memory} RAM, shared by Postgres, NATS, the server and the load generator"),
        format!("kernel {}", version("uname", "-r")),
        version("nats-server", "--version"),
        version("wrk", "-v"),
    ]
}
