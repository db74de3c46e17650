//! Fuzzing the HTTP contract: schemathesis generates requests from `/openapi.json` against the
//! running server, as an admin, and checks every answer against the document.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::process::Command;

use crate::helpers::TestApp;

/// Cases per operation: enough to reach every operation's edges, small enough that both passes
/// finish in about a minute on two cores.
const EXAMPLES: &str = "30";
/// A fixed seed keeps a failure reproducible (`st replay` and the same seed).
const SEED: &str = "20261123";
/// Operations that can take away the fuzzer's own credential (deactivate its admin, revoke its
/// key); they get a pass of their own after everything else, with a fresh key.
const SELF_DESTRUCTIVE: [&str; 3] = [
    "DELETE /api/v1/users/{id}",
    "PATCH /api/v1/users/{id}",
    "DELETE /api/v1/api-keys/{id}",
];

/// An admin API key: unlike a session it survives the fuzzer calling `/auth/logout`. Sent as
/// `Authorization: Bearer`, so schemathesis's `ignored_auth` check can replace it with a bad one.
async fn admin_key(app: &TestApp, admin_token: &str, name: &str) -> String {
    let response = app
        .post("/api/v1/api-keys", Some(admin_token), json!({"name": name}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["data"]["key"].as_str().unwrap().to_owned()
}

/// `schemathesis run`, off the test's runtime thread (a child process awaited asynchronously,
/// so the in-process server keeps serving); returns whether it passed and its report.
async fn schemathesis(app: &TestApp, key: &str, operations: &[&str]) -> (bool, String) {
    let workdir =
        std::env::temp_dir().join(format!("chronicle-fuzz-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&workdir).unwrap();
    let mut command = Command::new("schemathesis");
    command
        .arg("run")
        .arg(app.url("/openapi.json"))
        .args(["--max-examples", EXAMPLES, "--seed", SEED, "--workers", "2"])
        .args(["--no-color", "--generation-database", "none"])
        .args(["--request-timeout", "30"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {key}"))
        // Every check that judges the server's answers stays on: no 5xx, status codes, content
        // types, headers and bodies as documented, auth enforced, 405 with Allow, resources
        // gone after DELETE. The two that judge which requests the server accepts are off:
        // the contract has rules a schema cannot state (`page` or `cursor`, not both; `If-Match`
        // must name the current version, so a well-formed one still gets 412; a
        // `Chronicle-Min-Position` must be a token the server issued) and leniency it asks for
        // (a malformed `X-Request-Id` is replaced, not refused; unknown `Prefer` values are
        // ignored, RFC 7240).
        .args([
            "--exclude-checks",
            "positive_data_acceptance,negative_data_rejection",
        ])
        .current_dir(&workdir)
        .kill_on_drop(true);
    let (flag, names) = if operations.is_empty() {
        ("--exclude-name", SELF_DESTRUCTIVE.as_slice())
    } else {
        ("--include-name", operations)
    };
    for name in names {
        command.arg(flag).arg(name);
    }
    let run = tokio::time::timeout(Duration::from_secs(300), command.output()).await;
    let _ = std::fs::remove_dir_all(&workdir);
    let output = match run {
        Ok(Ok(output)) => output,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "schemathesis is not installed: run `python3 -m pip install schemathesis==4.32.5` \
             (scripts/test installs it)"
        ),
        Ok(Err(e)) => panic!("schemathesis did not run: {e}"),
        Err(_) => panic!("schemathesis did not finish within 5 minutes"),
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

/// `(tested, in the document)` from a report's summary (`Selected: 49/52`, `Tested: 49`).
fn operations_tested(report: &str) -> (usize, usize) {
    let number_after = |label: &str| -> Option<&str> {
        let rest = &report[report.rfind(label)? + label.len()..];
        rest.trim_start().split(|c: char| c.is_whitespace()).next()
    };
    let tested = number_after("Tested:").and_then(|n| n.parse().ok());
    let total = number_after("Selected:")
        .and_then(|n| n.split('/').nth(1))
        .and_then(|n| n.parse().ok());
    (tested.unwrap_or(0), total.unwrap_or(0))
}

/// The end of a report, where the failures and the summary are.
fn tail(report: &str) -> &str {
    let start = report.len().saturating_sub(12_000);
    let start = (start..report.len())
        .find(|i| report.is_char_boundary(*i))
        .unwrap_or(0);
    &report[start..]
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_that_contradicts_the_openapi_document() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let key = admin_key(&app, &admin, "fuzzer").await;
    let (_, second_admin) = app.admin().await;
    let second_key = admin_key(&app, &second_admin, "fuzzer, second pass").await;

    let (passed, report) = schemathesis(&app, &key, &[]).await;
    let (passed_destructive, report_destructive) =
        schemathesis(&app, &second_key, &SELF_DESTRUCTIVE).await;

    let (tested, total) = operations_tested(&report);
    let (tested_destructive, _) = operations_tested(&report_destructive);
    assert!(
        total > 40 && tested + tested_destructive == total,
        "every operation was fuzzed in one of the passes ({tested} + {tested_destructive} of \
         {total}):\n{}\n{}",
        tail(&report),
        tail(&report_destructive)
    );
    assert!(passed, "schemathesis found problems:\n{}", tail(&report));
    assert!(
        passed_destructive,
        "schemathesis found problems:\n{}",
        tail(&report_destructive)
    );
}

/// Found by the fuzzer with another seed: Postgres cannot store U+0000, which made this a 500.
#[tokio::test]
async fn a_nul_character_in_a_body_is_a_422_naming_the_field() {
    let app = TestApp::spawn().await;

    let response = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "nul@example.com", "password": "correct horse battery", "name": "a\u{0}b"}),
        )
        .await;

    let body = crate::helpers::problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "name");
}
