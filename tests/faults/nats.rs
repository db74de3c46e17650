//! NATS going away: stopped under load, crashed with its acknowledged tail lost, killed
//! mid-burst. The API keeps working and the stream ends up with every event once, in order.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{json, Value};

use crate::checks::{
    assert_acked_in_log_and_stream, assert_exactly_once_in_order, log_ids, relayed,
    stream_caught_up, stream_len,
};
use crate::helpers::TestApp;
use crate::load::{acked_ids, sign_up, Load};
use crate::support::{eventually, Nats};

/// An app relaying into a nats-server of the test's own.
async fn app_on(nats: &Nats) -> TestApp {
    TestApp::spawn_with(&[("NATS_URL", nats.url().as_str())]).await
}

/// `posts` published posts (two events each), a few at a time.
async fn burst(app: &TestApp, token: &str, label: &str, posts: usize) {
    for chunk in (0..posts).collect::<Vec<_>>().chunks(10) {
        join_all(chunk.iter().map(|i| {
            app.create_post(
                token,
                json!({"title": format!("{label} {i}"), "body": "b", "status": "published"}),
            )
        }))
        .await;
    }
}

async fn stream_of(app: &TestApp, nats: &Nats) -> Vec<Value> {
    stream_caught_up(
        &app.state.pool,
        &nats.url(),
        &app.state.config.nats_stream,
        Duration::from_secs(30),
    )
    .await
}

#[tokio::test]
async fn with_nats_stopped_for_ten_seconds_under_load_commands_succeed_and_the_stream_gets_every_event_once_in_order(
) {
    let mut nats = Nats::start().await;
    let app = app_on(&nats).await;
    let token = sign_up(&app.address, "outage@example.com").await;
    let load = Load::start(&app.address, &token, 8);
    load.wait_for_acked(0, 20, Duration::from_secs(20)).await;
    let (url, stream) = (nats.url(), app.state.config.nats_stream.clone());
    eventually(Duration::from_secs(20), "the relay to publish", || {
        let (url, stream) = (&url, &stream);
        async move { stream_len(url, stream).await.filter(|n| *n > 0) }
    })
    .await;

    nats.stop().await;
    let stopped = Instant::now();
    let acked_before = load.acked();
    let readiness: Value = eventually(Duration::from_secs(10), "readyz to see NATS down", || {
        let request = app.get("/readyz", None);
        async move {
            let response = request.await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.ok()?;
            (body["checks"]["nats"] == "down").then(|| json!({"status": status, "body": body}))
        }
    })
    .await;
    tokio::time::sleep_until((stopped + Duration::from_secs(10)).into()).await;
    let acked_during = load.acked() - acked_before;
    nats.run().await;
    load.wait_for_acked(load.acked(), 20, Duration::from_secs(20))
        .await;
    let outcomes = load.stop().await;
    let messages = stream_of(&app, &nats).await;

    let failed: Vec<_> = outcomes.iter().filter(|o| !o.acked()).collect();
    assert!(
        failed.is_empty(),
        "{} commands failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        acked_during >= 20,
        "only {acked_during} commands were answered during the outage"
    );
    assert_eq!(
        readiness["status"], 200,
        "NATS down does not fail readiness"
    );
    assert_eq!(readiness["body"]["checks"]["postgres"], "up");
    let acked = acked_ids(&outcomes);
    assert_acked_in_log_and_stream(&app.state.pool, &acked, &messages).await;
    assert_exactly_once_in_order(&messages, &log_ids(&app.state.pool).await);
}

/// Forces what nats-server 2.9 does in a crash (it acknowledges publishes before they are on
/// disk): the stream comes back without a tail the relay already saw acknowledged.
async fn crash_losing_the_acknowledged_tail(app: &TestApp, nats: &mut Nats, token: &str) {
    let (pool, stream) = (&app.state.pool, &app.state.config.nats_stream);
    burst(app, token, "kept", 20).await;
    let kept = relayed(pool, &nats.url(), stream).await;
    nats.stop().await;
    let before_the_tail = nats.copy_store().await;
    nats.run().await;
    burst(app, token, "lost", 20).await;
    let acknowledged = relayed(pool, &nats.url(), stream).await;
    assert!(
        acknowledged > kept,
        "the relay's checkpoint is past the tail that will be lost"
    );

    nats.kill().await;
    nats.replace_store(&before_the_tail).await;
}

#[tokio::test]
async fn after_a_nats_crash_that_lost_acknowledged_messages_the_relay_publishes_the_tail_again_in_order(
) {
    let mut nats = Nats::start().await;
    let app = app_on(&nats).await;
    let token = sign_up(&app.address, "tail@example.com").await;
    crash_losing_the_acknowledged_tail(&app, &mut nats, &token).await;

    nats.run().await;
    let repaired = stream_of(&app, &nats).await;
    burst(&app, &token, "after", 10).await;
    let messages = stream_of(&app, &nats).await;

    let log = log_ids(&app.state.pool).await;
    assert_eq!(
        repaired.len(),
        log.len() - 20,
        "the lost tail came back without new commands"
    );
    assert_exactly_once_in_order(&messages, &log);
}

#[tokio::test]
async fn commands_taken_while_a_crashed_nats_is_down_do_not_hide_the_tail_it_lost() {
    let mut nats = Nats::start().await;
    let app = app_on(&nats).await;
    let token = sign_up(&app.address, "hidden@example.com").await;
    crash_losing_the_acknowledged_tail(&app, &mut nats, &token).await;

    // The relay publishes these while NATS is down; the client holds them until it reconnects
    // to the restarted server, which answers well within the publish timeout.
    burst(&app, &token, "while down", 10).await;
    nats.run().await;
    let messages = stream_of(&app, &nats).await;

    assert_exactly_once_in_order(&messages, &log_ids(&app.state.pool).await);
}

#[tokio::test]
async fn nats_killed_twice_mid_burst_loses_and_duplicates_nothing() {
    let mut nats = Nats::start().await;
    let app = app_on(&nats).await;
    let token = sign_up(&app.address, "midburst@example.com").await;
    let (url, stream) = (nats.url(), app.state.config.nats_stream.clone());

    let load = Load::start(&app.address, &token, 8);
    for _ in 0..2 {
        load.wait_for_acked(load.acked(), 40, Duration::from_secs(20))
            .await;
        // Killed while the relay has a backlog in flight.
        let published = stream_len(&url, &stream).await.unwrap_or_default();
        eventually(Duration::from_secs(20), "the relay to publish more", || {
            let (url, stream) = (&url, &stream);
            async move {
                stream_len(url, stream)
                    .await
                    .filter(|n| *n > published)
                    .map(|_| ())
            }
        })
        .await;
        nats.kill().await;
        nats.run().await;
    }
    load.wait_for_acked(load.acked(), 40, Duration::from_secs(20))
        .await;
    let outcomes = load.stop().await;
    let messages = stream_of(&app, &nats).await;

    let failed = outcomes.iter().filter(|o| !o.acked()).count();
    assert_eq!(failed, 0, "commands failed while NATS was killed");
    assert_acked_in_log_and_stream(&app.state.pool, &acked_ids(&outcomes), &messages).await;
    assert_exactly_once_in_order(&messages, &log_ids(&app.state.pool).await);
}

#[tokio::test]
async fn a_stream_whose_last_message_was_deleted_does_not_stop_the_relay() {
    let mut nats = Nats::start().await;
    let app = app_on(&nats).await;
    let token = sign_up(&app.address, "deleted@example.com").await;
    let (pool, stream) = (&app.state.pool, &app.state.config.nats_stream);
    burst(&app, &token, "before", 5).await;
    let last = relayed(pool, &nats.url(), stream).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let deleted = js
        .get_stream(stream)
        .await
        .unwrap()
        .get_raw_message(last)
        .await
        .unwrap();
    let deleted: Value = serde_json::from_slice(&deleted.payload).unwrap();
    let gone = js
        .get_stream(stream)
        .await
        .unwrap()
        .delete_message(last)
        .await
        .unwrap();

    // The relay reconciles on reconnect, when the stream's last sequence has no message.
    nats.stop().await;
    nats.run().await;
    burst(&app, &token, "after", 5).await;
    let log: Vec<String> = log_ids(pool)
        .await
        .into_iter()
        .filter(|id| *id != deleted["id"])
        .collect();
    let messages = eventually(
        Duration::from_secs(30),
        "the events after the deletion",
        || async {
            let messages = crate::helpers::stream_messages(&nats.url(), stream).await;
            (messages.len() >= log.len()).then_some(messages)
        },
    )
    .await;

    assert!(gone, "the last message was deleted");
    let copies = messages.iter().filter(|m| m["id"] == deleted["id"]).count();
    assert!(copies <= 1, "the deleted event came back {copies} times");
    let without_deleted: Vec<Value> = messages
        .into_iter()
        .filter(|m| m["id"] != deleted["id"])
        .collect();
    assert_exactly_once_in_order(&without_deleted, &log);
}
