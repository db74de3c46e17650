//! `/metrics` as Prometheus reads it: every family from the first scrape, clean under
//! `promtool check metrics`, counted per command, and everything the Grafana dashboard and the
//! alert rules query present in it.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::{metric_value, ServerProcess, TestDatabase};

/// Every family `/metrics` must show from the first scrape; one removed or renamed fails here.
const FAMILIES: &[&str] = &[
    "http_server_request_duration_seconds",
    "http_server_active_requests",
    "chronicle_http_connections_open",
    "chronicle_commands_total",
    "chronicle_command_duration_seconds",
    "chronicle_events_appended_total",
    "chronicle_append_events",
    "chronicle_append_group_commands",
    "chronicle_read_your_writes_wait_seconds",
    "chronicle_read_your_writes_timeouts_total",
    "chronicle_projection_lag_events",
    "chronicle_projection_failed",
    "chronicle_projection_failures_total",
    "chronicle_projection_batch_events",
    "chronicle_projection_apply_duration_seconds",
    "chronicle_projection_rebuild_running",
    "chronicle_projection_rebuild_applied_events",
    "chronicle_projection_rebuild_planned_events",
    "chronicle_log_tail_misses_total",
    "chronicle_relay_lag_events",
    "chronicle_relay_published_total",
    "chronicle_relay_publish_duration_seconds",
    "chronicle_nats_connected",
    "chronicle_nats_foreign_messages_total",
    "chronicle_webhook_deliveries_total",
    "chronicle_webhook_delivery_duration_seconds",
    "chronicle_webhook_endpoints_disabled_total",
    "chronicle_emails_total",
    "chronicle_rate_limit_rejections_total",
    "db_client_connections_usage",
    "db_client_connections_max",
    "db_client_connections_wait_time_seconds",
    "db_client_connections_timeouts_total",
    "chronicle_worker_restarts_total",
    "chronicle_workers_running",
    "chronicle_build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
];

/// A server with its workers, in a process of its own: the metrics registry is process-wide,
/// and other tests' servers in this one count their own commands.
async fn server() -> (TestDatabase, ServerProcess) {
    let db = TestDatabase::create().await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let (stream, prefix) = (format!("TEST_{unique}"), format!("test.{unique}"));
    let env = [
        ("NATS_URL", nats_url.as_str()),
        ("NATS_STREAM", stream.as_str()),
        ("NATS_SUBJECT_PREFIX", prefix.as_str()),
    ];
    let server = ServerProcess::start(&db, &[], &env).await;
    (db, server)
}

/// `promtool check metrics` over a scrape: its findings (parse errors and lint problems),
/// empty when clean.
fn promtool_check_metrics(scrape: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: run `apt-get install -y prometheus` (scripts/test does)");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(scrape.as_bytes())
        .expect("the scrape written to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() && findings.trim().is_empty() {
        return format!("promtool failed with {}", out.status);
    }
    findings.trim().to_owned()
}

/// The families a scrape declares (`# TYPE <name> <type>`).
fn declared(scrape: &str) -> BTreeSet<&str> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// The series names a scrape holds (histograms' `_bucket`, `_sum` and `_count` included).
fn series_names(scrape: &str) -> BTreeSet<&str> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect()
}

#[tokio::test]
async fn the_first_scrape_passes_promtool_and_shows_every_family() {
    let (_db, server) = server().await;

    let scrape = server.metrics().await;

    let findings = promtool_check_metrics(&scrape);
    assert!(findings.is_empty(), "promtool check metrics:\n{findings}");
    let declared = declared(&scrape);
    let missing: Vec<_> = FAMILIES.iter().filter(|f| !declared.contains(*f)).collect();
    assert!(missing.is_empty(), "missing {missing:?} in:\n{scrape}");
    let build = scrape
        .lines()
        .find(|l| l.starts_with("chronicle_build_info{"))
        .expect("chronicle_build_info has a series");
    assert!(build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))));
    assert!(
        build.contains("git_sha=\"") && build.ends_with(" 1"),
        "{build}"
    );
    assert_eq!(
        metric_value(
            &scrape,
            "chronicle_commands_total{aggregate=\"post\",command=\"publish\",outcome=\"conflict\"}"
        ),
        Some(0.0)
    );
    assert!(metric_value(&scrape, "process_resident_memory_bytes").is_some_and(|b| b > 0.0));
}

#[tokio::test]
async fn one_command_counts_once_under_its_aggregate_command_and_outcome() {
    let (_db, server) = server().await;
    let ok = "chronicle_commands_total{aggregate=\"user\",command=\"register\",outcome=\"ok\"}";
    let rejected =
        "chronicle_commands_total{aggregate=\"user\",command=\"register\",outcome=\"rejected\"}";
    let before = server.metrics().await;

    let registered = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/register", server.base))
        .json(&serde_json::json!({
            "email": "counted@example.com",
            "password": "correct horse battery",
            "name": "Counted",
        }))
        .send()
        .await
        .unwrap();
    let after = server.metrics().await;

    assert_eq!(registered.status(), reqwest::StatusCode::CREATED);
    assert_eq!(metric_value(&before, ok), Some(0.0));
    assert_eq!(metric_value(&after, ok), Some(1.0), "{ok} in:\n{after}");
    assert_eq!(metric_value(&after, rejected), Some(0.0));
    let latency = "chronicle_command_duration_seconds_count{aggregate=\"user\",command=\"register\",outcome=\"ok\"}";
    assert_eq!(metric_value(&after, latency), Some(1.0));
    assert!(metric_value(
        &after,
        "chronicle_events_appended_total{aggregate=\"user\"}"
    )
    .is_some_and(|n| n >= 1.0));
    let findings = promtool_check_metrics(&after);
    assert!(findings.is_empty(), "promtool check metrics:\n{findings}");
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alert_rules_query_is_in_the_scrape() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard = std::fs::read_to_string(format!("{root}/deploy/grafana/chronicle.json"))
        .expect("the dashboard is in the repository");
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let rules_path = format!("{root}/deploy/prometheus/alerts.yml");
    let rules =
        std::fs::read_to_string(&rules_path).expect("the alert rules are in the repository");
    let (_db, server) = server().await;

    let scrape = server.metrics().await;

    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    let dashboard_exprs = exprs.len();
    exprs.extend(crate::promql::rule_exprs(&rules));
    assert!(dashboard_exprs >= 20, "the dashboard's panels query");
    assert!(exprs.len() > dashboard_exprs + 5, "the rules query");
    let present = series_names(&scrape);
    for expr in &exprs {
        let names = crate::promql::metric_names(expr);
        assert!(!names.is_empty(), "no metric found in {expr}");
        for name in names {
            assert!(
                present.contains(name.as_str()),
                "{name} (queried by {expr}) is not in the scrape:\n{scrape}"
            );
        }
    }
    let checked = Command::new("promtool")
        .args(["check", "rules", &rules_path])
        .output()
        .expect("promtool is missing: run `apt-get install -y prometheus` (scripts/test does)");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
}

/// Every `expr` of the dashboard's panel targets.
fn collect_exprs(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                into.push(expr.to_owned());
            }
            map.values().for_each(|v| collect_exprs(v, into));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, into)),
        _ => {}
    }
}
