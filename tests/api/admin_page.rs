//! The operator page at `/admin`, driven in headless Chromium (tests/browser/admin.mjs, with
//! playwright-core) and checked against the server's own state.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{TestApp, ADMIN_PASSWORD};

async fn deliveries(app: &TestApp, admin: &str, endpoint: &str) -> Vec<Value> {
    let response = app
        .get(
            &format!("/api/v1/webhooks/{endpoint}/deliveries"),
            Some(admin),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    body["data"].as_array().expect("deliveries").clone()
}

/// Waits until the endpoint has a delivery that has run out of attempts, and returns it.
async fn failed_delivery(app: &TestApp, admin: &str, endpoint: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = deliveries(app, admin, endpoint).await;
        if let Some(failed) = all.iter().find(|d| d["status"] == "failed") {
            return failed.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no delivery failed for good within 30 s: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the browser script; returns what it reported.
async fn drive_the_page(base_url: &str, email: &str) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (scripts/test does)"
    );
    let child = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/admin.mjs"))
        .env("BASE_URL", base_url)
        .env("ADMIN_EMAIL", email)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (Node.js is needed for the browser tests)");
    let group = child.id().expect("node's pid");
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await;
    // Chromium and its helpers share node's process group; none may outlive the test.
    let _ = tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    let output = output
        .expect("the browser script finished within 120 s")
        .expect("node ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the browser script's report is not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn an_operator_signs_in_sees_the_projectors_retries_a_delivery_and_watches_a_rebuild_finish()
{
    // Samples every 200 ms, so the charts have lines by the time the page looks.
    let app = TestApp::spawn_with(&[("ACTIVITY_SAMPLE_INTERVAL", "200ms")]).await;
    let email = format!("operator-{}@example.com", uuid::Uuid::new_v4().simple());
    let (_, admin) = app.admin_with_email(&email).await;

    // A webhook endpoint whose receiver refuses connections, so a delivery fails for good.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("addr").port()
    };
    let response = app
        .post(
            "/api/v1/webhooks",
            Some(&admin),
            json!({"url": format!("http://127.0.0.1:{closed_port}/hook"), "event_types": ["post.*"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let endpoint: Value = response.json().await.expect("json");
    let endpoint = endpoint["data"]["id"].as_str().expect("id").to_owned();

    let (_, author, _) = app.register("author@example.com").await;
    for n in 0..12 {
        app.create_post(
            &author,
            json!({"title": format!("Post {n}"), "body": "text", "status": "published"}),
        )
        .await;
    }
    let failed = failed_delivery(&app, &admin, &endpoint).await;
    let attempts_before = failed["attempts"].as_i64().expect("attempts");

    let report = drive_the_page(&app.url(""), &email).await;

    assert!(
        report["refusal"]
            .as_str()
            .is_some_and(|text| text.contains("Wrong email or password")),
        "a wrong password is refused on the page: {report}"
    );
    assert_eq!(report["consoleHiddenAfterRefusal"], true);
    assert_eq!(report["whoami"], email);
    crate::operator_activity::the_page_showed_the_activity_and_failures(&app, &admin, &report)
        .await;

    let projectors = report["projectors"].as_array().expect("projectors");
    let names: Vec<&str> = projectors
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["users", "posts", "sessions"], "{report}");

    let types: Vec<&str> = report["eventTypes"]
        .as_array()
        .expect("event types")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        types.contains(&"post.published") && types.contains(&"user.registered"),
        "the event tail shows the log: {types:?}"
    );

    // The retry button queued the failed delivery again: the worker tried once more.
    assert_eq!(report["delivery"]["status"], "failed", "{report}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = deliveries(&app, &admin, &endpoint).await;
        let retried = all
            .iter()
            .find(|d| d["id"] == report["delivery"]["id"])
            .expect("the delivery the page showed");
        if retried["attempts"].as_i64().expect("attempts") > attempts_before
            && retried["status"] == "failed"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retry from the page was not attempted: {retried}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The rebuild the page started finished, and the page said how many events it applied.
    let response = app.get("/api/v1/admin/projections", Some(&admin)).await;
    let statuses: Value = response.json().await.expect("json");
    let posts = statuses["data"]
        .as_array()
        .expect("projectors")
        .iter()
        .find(|p| p["name"] == "posts")
        .expect("posts")
        .clone();
    let applied = posts["last_rebuild"]["applied"]
        .as_i64()
        .unwrap_or_else(|| panic!("the server recorded no finished rebuild: {posts}"));
    assert!(applied >= 24, "12 posts created and published: {posts}");
    let finished = report["finished"].as_str().expect("finished text");
    assert!(
        finished.contains(&format!("rebuilt {applied} events")),
        "the page reported {finished:?}, the server {posts}"
    );
    let states: Vec<&str> = report["statesSeen"]
        .as_array()
        .expect("states")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(states.last(), Some(&"finished"), "{states:?}");
    assert!(
        states.iter().any(|s| *s == "starting" || *s == "running"),
        "the page showed the rebuild under way before it finished: {states:?}"
    );

    // The read model still holds every post after the swap.
    let response = app.get("/api/v1/posts?limit=100", None).await;
    let listed: Value = response.json().await.expect("json");
    assert_eq!(listed["data"].as_array().expect("posts").len(), 12);

    assert_eq!(
        report["tokensAfterSignOut"], 0,
        "signing out forgets the tokens"
    );
    let unexpected: Vec<&Value> = report["consoleErrors"]
        .as_array()
        .expect("console errors")
        .iter()
        // The refused sign-in is a 401 that Chromium logs as a failed resource load.
        .filter(|e| !e.as_str().unwrap_or_default().contains("401"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the page logged errors: {unexpected:?}"
    );
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_policy_that_forbids_inline_code() {
    let app = TestApp::spawn().await;
    for (path, content_type) in [
        ("/admin", "text/html"),
        ("/admin/app.js", "text/javascript"),
        ("/admin/app.css", "text/css"),
        ("/admin/charts.js", "text/javascript"),
    ] {
        let response = app.get(path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with(content_type),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().expect("ascii");
        assert!(
            policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
            "{path}: {policy}"
        );
    }
}

#[tokio::test]
async fn the_event_tail_gives_the_newest_events_oldest_first_and_refuses_after_with_last() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let (_, author, _) = app.register("tail@example.com").await;
    for n in 0..5 {
        app.create_post(&author, json!({"title": format!("T{n}"), "body": "b"}))
            .await;
    }
    let all: Value = app
        .get("/api/v1/events?limit=1000", Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    let all = all["data"].as_array().expect("events").clone();
    let tail: Value = app
        .get("/api/v1/events?last=3", Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    let tail = tail["data"].as_array().expect("events");
    assert_eq!(tail.as_slice(), &all[all.len() - 3..]);

    let response = app
        .get(
            &format!(
                "/api/v1/events?last=3&after={}",
                all[0]["position"].as_str().expect("position")
            ),
            Some(&admin),
        )
        .await;
    crate::helpers::problem(response, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
    let response = app.get("/api/v1/events?last=0", Some(&admin)).await;
    crate::helpers::problem(response, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST").await;
}
