//! Transactional email against a real SMTP server: the links work, tokens reach only the
//! mailbox, the outbox survives SMTP outages and restarts, and a refusal fails one message.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{poll_pause, problem, stream_messages, TestApp};
use crate::mailbox::{token_in, SmtpSink};

const APP: &str = "https://app.example.test";

async fn app_with(sink: &SmtpSink) -> TestApp {
    TestApp::spawn_with(&[("SMTP_URL", &sink.url()), ("APP_BASE_URL", APP)]).await
}

/// Every log line the server writes on this (current-thread) runtime.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Polls GET /admin/emails until one row matches.
async fn wait_for_outbox_row(
    app: &TestApp,
    admin: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body: Value = app
            .get("/api/v1/admin/emails", Some(admin))
            .await
            .json()
            .await
            .unwrap();
        if let Some(row) = body["data"].as_array().unwrap().iter().find(|r| matches(r)) {
            return row.clone();
        }
        assert!(Instant::now() < deadline, "no matching outbox row: {body}");
        poll_pause().await;
    }
}

#[tokio::test]
async fn the_welcome_link_verifies_once_and_its_token_is_in_no_history_event_stream_dump_or_log() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests' threads have no subscriber; a callsite they reached first may be cached as
    // uninteresting, which would hide its lines from this thread's subscriber too.
    tracing::callsite::rebuild_interest_cache();
    let sink = SmtpSink::start(&[]);
    let app = app_with(&sink).await;
    let (_, admin) = app.admin().await;
    let (id, access, _) = app.register("welcome@example.com").await;

    let welcome = sink
        .wait_for("welcome@example.com", "Welcome", 1)
        .await
        .remove(0);
    let token = token_in(&welcome);

    assert_eq!(welcome["content_type"], "multipart/alternative");
    assert!(welcome["html"].as_str().unwrap().contains(&token));
    assert!(welcome["text"]
        .as_str()
        .unwrap()
        .contains(&format!("{APP}/verify-email?user={id}&token={token}")));
    assert_eq!(token.len(), 43, "32 bytes, base64url");
    let history = app
        .get(&format!("/api/v1/users/{id}/history"), Some(&access))
        .await
        .text()
        .await
        .unwrap();
    let events = app
        .get("/api/v1/events?limit=100", Some(&admin))
        .await
        .text()
        .await
        .unwrap();
    assert!(history.contains("user.email_verification_requested"));
    assert!(!history.contains(&token) && !events.contains(&token));
    assert!(!history.contains("token_nonce") && !history.contains("token_hash"));
    let log_count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let nats = loop {
        let messages =
            stream_messages(&app.state.config.nats_url, &app.state.config.nats_stream).await;
        if messages.len() as i64 >= log_count || Instant::now() > deadline {
            break serde_json::to_string(&messages).unwrap();
        }
        poll_pause().await;
    };
    assert!(
        nats.contains("user.email_verification_requested"),
        "the relay published the request"
    );
    assert!(!nats.contains(&token));
    let dump = std::process::Command::new("pg_dump")
        // sqlx's URL carries options that libpq does not know.
        .args([
            "--data-only",
            app.state.config.database_url.split('?').next().unwrap(),
        ])
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("welcome@example.com"));
    assert!(!dump.contains(&token), "the token is stored nowhere");
    let path = format!("/api/v1/users/{id}/verify-email");
    let first = app
        .post(&path, Some(&access), json!({"token": token}))
        .await;
    let again = app
        .post(&path, Some(&access), json!({"token": token}))
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(again.status().is_client_error());
    let log = log.text();
    assert!(
        log.contains("chronicle is listening"),
        "the log was captured"
    );
    assert!(!log.contains(&token), "the token reached the log");
}

#[tokio::test]
async fn a_new_verification_email_retires_the_old_link_and_none_is_sent_once_verified() {
    let sink = SmtpSink::start(&[]);
    let app = app_with(&sink).await;
    let (id, access, _) = app.register("resend@example.com").await;
    let old = token_in(&sink.wait_for("resend@example.com", "Welcome", 1).await[0]);

    let resend = app
        .post(
            &format!("/api/v1/users/{id}/send-verification"),
            Some(&access),
            json!({}),
        )
        .await;

    assert_eq!(resend.status(), StatusCode::ACCEPTED);
    assert_eq!(
        resend.json::<Value>().await.unwrap(),
        json!({"data": {"sent": true}})
    );
    let new = token_in(&sink.wait_for("resend@example.com", "Verify", 1).await[0]);
    assert_ne!(old, new);
    let path = format!("/api/v1/users/{id}/verify-email");
    let stale = app.post(&path, Some(&access), json!({"token": old})).await;
    let body = problem(stale, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(body["errors"][0]["field"], "token");
    assert_eq!(
        app.post(&path, Some(&access), json!({"token": new}))
            .await
            .status(),
        StatusCode::OK
    );
    let verified = app
        .post(
            &format!("/api/v1/users/{id}/send-verification"),
            Some(&access),
            json!({}),
        )
        .await;
    problem(verified, StatusCode::CONFLICT, "CONFLICT").await;
}

#[tokio::test]
async fn a_sixth_verification_email_within_an_hour_is_rate_limited() {
    let app = TestApp::spawn().await;
    let (id, access, _) = app.register("often@example.com").await;
    let path = format!("/api/v1/users/{id}/send-verification");

    for _ in 0..5 {
        assert_eq!(
            app.post(&path, Some(&access), json!({})).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let sixth = app.post(&path, Some(&access), json!({})).await;

    assert!(sixth.headers().contains_key("retry-after"));
    problem(sixth, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
}

#[tokio::test]
async fn a_reset_link_changes_the_password_ends_every_session_and_only_the_newest_works_once() {
    let sink = SmtpSink::start(&[]);
    let app = app_with(&sink).await;
    let (_, first_session, _) = app.register("forgot@example.com").await;
    let login = json!({"email": "forgot@example.com", "password": "correct horse battery"});
    let second: Value = app
        .post("/api/v1/auth/login", None, login)
        .await
        .json()
        .await
        .unwrap();
    let second_session = second["data"]["access_token"].as_str().unwrap().to_owned();

    for _ in 0..2 {
        let asked = app
            .post(
                "/api/v1/auth/password-reset",
                None,
                json!({"email": "forgot@example.com"}),
            )
            .await;
        assert_eq!(asked.status(), StatusCode::ACCEPTED);
    }
    let resets = sink.wait_for("forgot@example.com", "Reset", 2).await;
    let mut tokens: Vec<(String, String)> = resets
        .iter()
        .map(|m| (m["message_id"].as_str().unwrap().to_owned(), token_in(m)))
        .collect();
    assert!(resets.iter().all(|m| m["text"]
        .as_str()
        .unwrap()
        .contains(&format!("{APP}/reset-password?token="))));
    // The newest is the one whose request came last: its event is the user's last.
    let newest_hash: String = sqlx::query_scalar(
        "SELECT payload->'user.password_reset_requested'->>'token_hash' FROM events
          WHERE event_type = 'user.password_reset_requested' ORDER BY sequence DESC LIMIT 1",
    )
    .fetch_one(&app.state.pool)
    .await
    .unwrap();
    tokens.sort_by_key(|(_, t)| chronicle::email::tokens::hash(t) == newest_hash);
    let (older, newest) = (tokens[0].1.clone(), tokens[1].1.clone());

    let confirm = |token: String| {
        app.post(
            "/api/v1/auth/password-reset/confirm",
            None,
            json!({"token": token, "new_password": "a whole new secret"}),
        )
    };
    let stale = confirm(older).await;
    let body = problem(stale, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(body["errors"][0]["field"], "token");
    assert_eq!(
        confirm(newest.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    let reused = confirm(newest).await;
    problem(reused, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;

    for session in [&first_session, &second_session] {
        let deadline = Instant::now() + Duration::from_secs(2);
        while app.get("/api/v1/me", Some(session)).await.status() != StatusCode::UNAUTHORIZED {
            assert!(Instant::now() < deadline, "a session outlived the reset");
            poll_pause().await;
        }
    }
    let old_password = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "forgot@example.com", "password": "correct horse battery"}),
        )
        .await;
    let new_password = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "forgot@example.com", "password": "a whole new secret"}),
        )
        .await;
    assert_eq!(old_password.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(new_password.status(), StatusCode::OK);
    let notice = sink
        .wait_for("forgot@example.com", "password was changed", 1)
        .await
        .remove(0);
    let text = notice["text"].as_str().unwrap();
    assert!(
        !text.contains("http") && !text.contains("token"),
        "no link, no secret: {text}"
    );
}

#[tokio::test]
async fn reset_requests_for_unknown_deactivated_and_active_accounts_answer_alike_and_mail_only_the_active(
) {
    let sink = SmtpSink::start(&[]);
    let app = app_with(&sink).await;
    let (gone, gone_access, _) = app.register("gone@example.com").await;
    app.register("active@example.com").await;
    let deleted = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/users/{gone}"),
            Some(&gone_access),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    let mut answers = Vec::new();
    for email in [
        "nobody@example.com",
        "gone@example.com",
        "active@example.com",
    ] {
        let started = Instant::now();
        let response = app
            .post("/api/v1/auth/password-reset", None, json!({"email": email}))
            .await;
        answers.push((
            response.status(),
            response.text().await.unwrap(),
            started.elapsed(),
        ));
    }

    for (status, body, _) in &answers {
        assert_eq!(*status, StatusCode::ACCEPTED);
        assert_eq!(body, &answers[0].1);
    }
    let times: Vec<u128> = answers.iter().map(|(_, _, t)| t.as_millis()).collect();
    assert!(
        times.iter().all(|t| *t >= 250),
        "every answer waits for the floor: {times:?}"
    );
    sink.wait_for("active@example.com", "Reset", 1).await;
    let requests: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'user.password_reset_requested'",
    )
    .fetch_all(&app.state.pool)
    .await
    .unwrap();
    assert_eq!(
        requests.len(),
        1,
        "only the active account asked for a reset"
    );
    assert!(sink
        .messages_to("gone@example.com")
        .iter()
        .all(|m| m["subject"] != "Reset your Chronicle password"));
    assert!(sink.messages_to("nobody@example.com").is_empty());
}

#[tokio::test]
async fn a_malformed_email_in_a_reset_request_is_422() {
    let app = TestApp::spawn().await;

    let response = app
        .post(
            "/api/v1/auth/password-reset",
            None,
            json!({"email": "not-an-address"}),
        )
        .await;

    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "email");
}

#[tokio::test]
async fn smtp_refusing_connections_for_a_while_then_accepting_delivers_and_the_outbox_says_sent() {
    let mut sink = SmtpSink::reserve(&[]);
    let app = app_with(&sink).await;
    let (_, admin) = app.admin().await;
    app.register("patient@example.com").await;

    let retrying = wait_for_outbox_row(&app, &admin, |r| {
        r["to"] == "patient@example.com" && r["attempts"].as_i64().unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(retrying["status"], "pending");
    assert!(retrying["last_error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    assert!(retrying.get("body").is_none() && retrying.get("text").is_none());
    sink.listen();

    sink.wait_for("patient@example.com", "Welcome", 1).await;
    let sent = wait_for_outbox_row(&app, &admin, |r| {
        r["to"] == "patient@example.com" && r["status"] == "sent"
    })
    .await;
    assert!(sent["sent_at"].is_string());
    assert_eq!(sent["kind"], "welcome");
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("chronicle_emails_total{outcome=\"sent\"}"));
    assert!(metrics.contains("chronicle_emails_total{outcome=\"failed\"}"));
}

#[tokio::test]
async fn a_restart_after_delivery_sends_no_message_twice() {
    let sink = SmtpSink::start(&[]);
    let mut first = app_with(&sink).await;
    first.register("once@example.com").await;
    let message_id = sink.wait_for("once@example.com", "Welcome", 1).await[0]["message_id"].clone();
    let db = first.take_database().unwrap();
    let config = first.state.config.clone();
    drop(first);
    crate::helpers::delete_stream(&config).await;

    let second = TestApp::spawn_on(db, &[("SMTP_URL", &sink.url()), ("APP_BASE_URL", APP)]).await;
    second.register("later@example.com").await;

    sink.wait_for("later@example.com", "Welcome", 1).await;
    let welcomes = sink.messages_to("once@example.com");
    assert_eq!(
        welcomes.len(),
        1,
        "delivered once, not again after the restart"
    );
    assert_eq!(welcomes[0]["message_id"], message_id);
}

#[tokio::test]
async fn a_550_for_one_recipient_fails_that_message_and_the_others_still_go_out() {
    let sink = SmtpSink::start(&["bounce@example.com"]);
    let app = app_with(&sink).await;
    let (_, admin) = app.admin().await;

    app.register("bounce@example.com").await;
    app.register("fine@example.com").await;

    sink.wait_for("fine@example.com", "Welcome", 1).await;
    let failed = wait_for_outbox_row(&app, &admin, |r| {
        r["to"] == "bounce@example.com" && r["status"] == "failed"
    })
    .await;
    assert!(
        failed["last_error"].as_str().unwrap().contains("550"),
        "{failed}"
    );
    assert_eq!(failed["attempts"], 1, "a permanent refusal is not retried");
    assert!(sink.messages_to("bounce@example.com").is_empty());
    let retried = app
        .post(
            &format!(
                "/api/v1/admin/emails/{}/retry",
                failed["id"].as_str().unwrap()
            ),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    let sent = wait_for_outbox_row(&app, &admin, |r| r["to"] == "fine@example.com").await;
    let again = app
        .post(
            &format!(
                "/api/v1/admin/emails/{}/retry",
                sent["id"].as_str().unwrap()
            ),
            Some(&admin),
            json!({}),
        )
        .await;
    problem(again, StatusCode::CONFLICT, "CONFLICT").await;
}

#[tokio::test]
async fn a_cloud_event_someone_else_publishes_on_chronicles_subjects_sends_no_email() {
    let sink = SmtpSink::start(&[]);
    let app = app_with(&sink).await;
    let client = async_nats::connect(app.state.config.nats_url.as_str())
        .await
        .unwrap();
    let forged_user = uuid::Uuid::now_v7();
    for (kind, data) in [
        (
            "user.registered",
            json!({"user_id": forged_user, "email": "victim@example.com", "name": "V", "role": "user"}),
        ),
        (
            "user.email_verification_requested",
            json!({"email": "victim@example.com", "token_nonce": "x", "expires_at": "2030-01-01T00:00:00Z", "requested_at": "2026-01-01T00:00:00Z"}),
        ),
    ] {
        let event = json!({"specversion": "1.0", "id": uuid::Uuid::new_v4(), "source": "/chronicle", "type": kind,
            "subject": format!("user/{forged_user}"), "data": data});
        let subject = format!("{}.{kind}", app.state.config.nats_subject_prefix);
        client
            .publish(subject, event.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();

    app.register("real@example.com").await;

    sink.wait_for("real@example.com", "Welcome", 1).await;
    assert!(sink.messages_to("victim@example.com").is_empty());
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_outbox WHERE recipient = 'victim@example.com'",
    )
    .fetch_one(&app.state.pool)
    .await
    .unwrap();
    assert_eq!(queued, 0);
    assert!(!sink.raw().contains("victim"));
}

/// Not a check: the figures for the closing note. Run with
/// `cargo test --test api email::measure -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn measure_emails_per_second_and_the_welcome_delay_against_registration_latency() {
    let sink = SmtpSink::start(&[]);
    let app = app_with(&sink).await;
    let mut register_ms = Vec::new();
    let mut welcome_ms = Vec::new();
    for i in 0..20 {
        let email = format!("latency{i}@example.com");
        let started = Instant::now();
        app.register(&email).await;
        register_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        while sink.messages_to(&email).is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        welcome_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let before = sink.messages().len();
    let n = 1000;
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO email_outbox (id, event_id, kind, user_id, recipient, subject, message_id)
         SELECT gen_random_uuid(), gen_random_uuid(), 'password_changed', gen_random_uuid(),
                'bulk' || g || '@example.com', 'Your Chronicle password was changed',
                '<bulk' || g || '@localhost>'
           FROM generate_series(1, $1) g",
    )
    .bind(n as i32)
    .execute(&app.state.pool)
    .await
    .unwrap();
    loop {
        let sent: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM email_outbox WHERE status = 'sent' AND recipient LIKE 'bulk%'",
        )
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
        if sent == n as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(sink.messages().len(), before + n);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (reg, wel) = (median(&mut register_ms), median(&mut welcome_ms));
    println!(
        "outbox: {n} emails in {elapsed:.2} s = {:.0} emails/s; registration median {reg:.1} ms, \
         registration to welcome in the mailbox median {wel:.1} ms (ratio {:.2})",
        n as f64 / elapsed,
        wel / reg
    );
}
