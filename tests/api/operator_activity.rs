//! `/api/v1/admin/activity` and `/api/v1/admin/failures`: what the operator page charts and
//! lists, for admins only.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{App, NewPost};
use crate::common::eventually_ok;
use crate::webhooks::Receiver;

/// Short, so samples arrive while the test runs rather than every 5 s.
const FAST_SAMPLES: (&str, &str) = ("ACTIVITY_SAMPLE_INTERVAL", "100ms");

#[tokio::test]
async fn activity_and_failures_are_for_admins_only() {
    let app = App::spawn().await;
    let user = app.signed_up("not-an-admin").await;

    for path in ["/api/v1/admin/activity", "/api/v1/admin/failures"] {
        let anonymous = app.anonymous().get(path).await;
        let by_user = user.get(path).await;

        anonymous.problem("UNAUTHORIZED");
        by_user.problem("FORBIDDEN");
    }
    app.finish().await;
}

#[tokio::test]
async fn samples_show_the_events_and_requests_of_commands_but_no_errors_for_refusals() {
    let app = App::spawn_with(&[FAST_SAMPLES]).await;
    let admin = app.signed_in_admin().await;
    let author = app.signed_up("author").await;

    for n in 0..5 {
        author
            .create_post(NewPost::published(&format!("Post {n}"), "text"))
            .await
            .created();
        app.anonymous()
            .get("/api/v1/posts/00000000-0000-0000-0000-000000000000")
            .await
            .problem("NOT_FOUND");
        app.anonymous()
            .get("/api/v1/me")
            .await
            .problem("UNAUTHORIZED");
    }
    let busy = eventually_ok(
        Duration::from_secs(10),
        "a sample with the commands' events",
        || async {
            let activity = admin.get("/api/v1/admin/activity").await.ok();
            let samples = activity["samples"].as_array().cloned().unwrap_or_default();
            samples
                .iter()
                .find(|s| s["events_per_second"].as_f64() > Some(0.0))
                .map(|s| (activity.clone(), s.clone()))
                .ok_or_else(|| format!("{activity}"))
        },
    )
    .await;
    app.drain().await;
    let caught_up = eventually_ok(
        Duration::from_secs(10),
        "a sample with every projector and the relay caught up",
        || async {
            let activity = admin.get("/api/v1/admin/activity").await.ok();
            let last = activity["samples"]
                .as_array()
                .and_then(|s| s.last())
                .cloned()
                .unwrap_or_default();
            let lags = last["projection_lag"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if !lags.is_empty() && lags.values().all(|l| l == 0) && last["relay_lag"] == 0 {
                Ok(last)
            } else {
                Err(format!("{last}"))
            }
        },
    )
    .await;

    let (activity, sample) = busy;
    assert_eq!(activity["interval_seconds"], 0.1);
    assert!(sample["at"].is_string(), "{sample}");
    let samples = activity["samples"].as_array().expect("samples");
    assert!(
        samples
            .iter()
            .any(|s| s["requests_per_second"].as_f64() > Some(0.0)),
        "the requests were counted: {activity}"
    );
    assert!(
        samples.iter().all(|s| s["errors_per_second"] == 0.0),
        "404s and 401s are not server errors: {activity}"
    );
    let mut names: Vec<&String> = caught_up["projection_lag"]
        .as_object()
        .expect("lags")
        .keys()
        .collect();
    names.sort();
    assert_eq!(names, ["posts", "sessions", "users"], "{caught_up}");
    app.finish().await;
}

/// The event's trace id, from its metadata as the log stores it (`None` without `traceparent`).
async fn stored_trace_id(app: &App, event_id: &str) -> Option<String> {
    let metadata: Value =
        sqlx::query_scalar("SELECT metadata FROM events WHERE event_id = $1::uuid")
            .bind(event_id)
            .fetch_one(&app.state.pool)
            .await
            .expect("the event");
    metadata["traceparent"]
        .as_str()
        .map(|tp| tp.split('-').nth(1).expect("a trace id field").to_owned())
}

/// The webhook failure for the event that request `request_id` appended, once it has one.
async fn failure_of(admin: &crate::client::SignedIn<'_>, request_id: &str) -> Value {
    eventually_ok(
        Duration::from_secs(20),
        "the failing delivery in /admin/failures",
        || async {
            let failures = admin.get("/api/v1/admin/failures").await.ok();
            failures
                .as_array()
                .and_then(|all| {
                    all.iter()
                        .find(|f| f["kind"] == "webhook" && f["request_id"] == request_id)
                })
                .cloned()
                .ok_or_else(|| format!("{failures}"))
        },
    )
    .await
}

#[tokio::test]
async fn a_failing_delivery_is_listed_with_the_request_id_and_trace_id_of_its_event() {
    let app = App::spawn().await;
    let admin = app.signed_in_admin().await;
    let author = app.signed_up("author").await;
    let receiver = Receiver::start(vec![500; 1_000]).await;
    admin
        .post(
            "/api/v1/webhooks",
            json!({"url": receiver.url, "event_types": ["post.*"]}),
        )
        .await
        .created();
    let request_id = format!("operator-{}", uuid::Uuid::new_v4().simple());

    let post = author
        .send(
            author
                .request(Method::POST, "/api/v1/posts")
                .header("x-request-id", &request_id)
                .json(&Value::from(NewPost::draft("Failing", "delivery"))),
        )
        .await
        .created();
    let failure = failure_of(&admin, &request_id).await;

    assert_eq!(
        failure["summary"],
        format!("post.created to {}", receiver.url)
    );
    assert!(
        failure["status"] == "retrying" || failure["status"] == "failed",
        "{failure}"
    );
    assert!(
        failure["error"].as_str().is_some_and(|e| e.contains("500")),
        "{failure}"
    );
    let event_id = failure["event_id"].as_str().expect("the event's id");
    let events = admin.get("/api/v1/events?limit=1000").await.ok();
    let event = events
        .as_array()
        .and_then(|all| all.iter().find(|e| e["id"] == event_id))
        .cloned()
        .expect("the delivery's event is in the log");
    assert_eq!(event["aggregate_id"], post["id"]);
    assert_eq!(event["metadata"]["correlation_id"], request_id);
    match stored_trace_id(&app, event_id).await {
        Some(trace) => assert_eq!(failure["trace_id"], trace, "{failure}"),
        None => {
            assert_eq!(
                failure["trace_id"],
                Value::Null,
                "no traceparent: {failure}"
            );
            // Without an OTLP endpoint (as here) a command stores no traceparent; give this
            // event one the way a traced command stores it, to see it reach the list.
            let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
            sqlx::query(
                "UPDATE events SET metadata = metadata || jsonb_build_object('traceparent', $2::text)
                  WHERE event_id = $1::uuid",
            )
            .bind(event_id)
            .bind(format!("00-{trace}-00f067aa0ba902b7-01"))
            .execute(&app.state.pool)
            .await
            .expect("metadata updated");
            let traced = failure_of(&admin, &request_id).await;
            assert_eq!(traced["trace_id"], trace, "{traced}");
        }
    }
    app.finish().await;
}

/// What the browser script reported of the activity charts and the failures table
/// (tests/browser/admin.mjs), checked against the API.
pub async fn the_page_showed_the_activity_and_failures(
    app: &crate::helpers::TestApp,
    admin: &str,
    report: &Value,
) {
    let charts = report["charts"].as_array().expect("charts");
    let ids: Vec<&str> = charts.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(
        ids,
        [
            "chart-events",
            "chart-requests",
            "chart-errors",
            "chart-lag"
        ],
        "{report}"
    );
    assert!(
        charts.iter().all(|c| c["points"].as_u64() >= Some(2)),
        "every chart drew a line: {charts:?}"
    );
    let lag_series = &charts[3]["series"];
    for name in ["users", "posts", "sessions"] {
        assert!(
            lag_series
                .as_array()
                .is_some_and(|s| s.contains(&json!(name))),
            "the lag chart has {name}: {lag_series}"
        );
    }

    let response = app.get("/api/v1/admin/failures", Some(admin)).await;
    let listed: Value = response.json().await.expect("json");
    let listed = listed["data"].as_array().expect("failures").clone();
    let shown = report["failures"].as_array().expect("failures shown");
    let webhooks: Vec<&Value> = shown.iter().filter(|f| f["kind"] == "webhook").collect();
    assert!(!webhooks.is_empty(), "{shown:?}");
    for row in webhooks {
        let item = listed
            .iter()
            .find(|f| f["id"] == row["id"])
            .unwrap_or_else(|| panic!("the page showed {row}, the API lists {listed:?}"));
        assert!(item["request_id"].is_string(), "{item}");
        assert_eq!(row["requestId"], item["request_id"], "{row} vs {item}");
        assert_eq!(row["traceId"], item["trace_id"], "{row} vs {item}");
    }
}
