//! `kill -9` of the server under load: what it acknowledged is stored, projected and streamed
//! exactly once, whatever it was doing when it died.

use std::time::{Duration, Instant};

use chronicle::startup::BuildOptions;

use crate::checks::{
    assert_acked_in_log_and_stream, assert_exactly_once_in_order, log_ids, read_model_has,
    stream_caught_up,
};
use crate::helpers::{TestApp, TestDatabase};
use crate::load::{acked_ids, sign_up, Load};
use crate::support::Chronicle;

#[tokio::test]
async fn commands_acknowledged_while_the_server_is_killed_twice_are_stored_projected_and_streamed_once(
) {
    // The in-process app only owns the database, the stream and their cleanup; the server
    // under test is a separate process that can really be killed.
    let app = TestApp::spawn_with_options(
        TestDatabase::create().await,
        &[],
        BuildOptions {
            migrate: true,
            workers: false,
        },
    )
    .await;
    let mut server = Chronicle::start(&app).await;
    let base = server.url("");
    let token = sign_up(&base, "killed@example.com").await;
    let started = Instant::now();

    // Half the clients do not wait for the read models, so more commands are in flight.
    let load = Load::start_mixed(&base, &token, 8);
    let mut acked_at_kill = Vec::new();
    for at in [Duration::from_secs(3), Duration::from_millis(6500)] {
        // Each kill hits a server that is serving: it acknowledged commands since it started.
        load.wait_for_acked(load.acked(), 20, Duration::from_secs(20))
            .await;
        tokio::time::sleep_until((started + at).into()).await;
        server.kill9().await;
        acked_at_kill.push(load.acked());
        server.restart();
    }
    load.wait_for_acked(load.acked(), 20, Duration::from_secs(20))
        .await;
    tokio::time::sleep_until((started + Duration::from_secs(10)).into()).await;
    let outcomes = load.stop().await;
    server.ready().await;
    let acked = acked_ids(&outcomes);
    read_model_has(&app.state.pool, &acked, Duration::from_secs(30)).await;
    let config = &app.state.config;
    let messages = stream_caught_up(
        &app.state.pool,
        &config.nats_url,
        &config.nats_stream,
        Duration::from_secs(30),
    )
    .await;
    let log = log_ids(&app.state.pool).await;

    let unanswered = outcomes.iter().filter(|o| !o.acked()).count();
    assert!(
        acked.len() >= 100,
        "8 clients for 10 s got only {} commands through",
        acked.len()
    );
    assert!(
        unanswered > 0,
        "the kills cut no request, so they tested nothing"
    );
    assert!(
        acked.len() > acked_at_kill[1],
        "the twice restarted server acknowledged commands again"
    );
    let distinct: std::collections::HashSet<&String> = acked.iter().collect();
    assert_eq!(distinct.len(), acked.len(), "no post acknowledged twice");
    assert_acked_in_log_and_stream(&app.state.pool, &acked, &messages).await;
    assert_exactly_once_in_order(&messages, &log);
}
