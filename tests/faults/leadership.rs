//! Leaders losing their advisory lock under load: the backends holding the locks are terminated
//! again and again while two instances take commands. A deposed leader stops before the next one
//! starts, and the stream keeps the log's commit order.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::checks::{assert_exactly_once_in_order, log_ids, stream_caught_up};
use crate::cluster::{admin_token, PgServer};
use crate::load::{acked_ids, sign_up, Load};
use crate::support::{eventually, Chronicle, Nats};

/// Roles with a fenced leader: the users, posts and sessions projectors, the email outbox
/// writer and the relay.
const ROLES: usize = 5;

/// The leaders' epochs, per role.
async fn epochs(pool: &PgPool) -> HashMap<String, i64> {
    sqlx::query_as(
        "SELECT 'projector:' || name, leader_epoch FROM projection_checkpoints
         UNION ALL SELECT 'relay:' || stream, leader_epoch FROM relay_checkpoints",
    )
    .fetch_all(pool)
    .await
    .map(|rows: Vec<(String, i64)>| rows.into_iter().collect())
    .unwrap_or_default()
}

/// Whether every role's current leader is past its handover and working: a leader starts (and
/// its term begins) 1.2 s after it bumped the epoch. Terminating it before that would end a
/// term that never began, so each termination waits for this (commands used to be slow
/// enough to hide the wait; inline projection made them faster).
async fn leaders_settled(pool: &PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT bool_and(leader_since < now() - interval '1500 milliseconds') FROM
           (SELECT leader_since FROM projection_checkpoints
            UNION ALL SELECT leader_since FROM relay_checkpoints) s",
    )
    .fetch_one(pool)
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// What the reproduction does, limited to this test's database.
async fn terminate_lock_backends(pool: &PgPool) -> usize {
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
          WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(pool)
    .await
    .expect("terminate the lock holders");
    killed.into_iter().filter(|k| *k).count()
}

/// One instance's terms per role, as it reports them: `(instance, epoch, since, until)`.
type Terms = HashMap<String, Vec<(usize, i64, DateTime<Utc>, DateTime<Utc>)>>;

async fn reported_terms(instances: &[&Chronicle], admin: &str, into: &mut Terms) {
    let client = reqwest::Client::new();
    for (i, instance) in instances.iter().enumerate() {
        let body: Value = client
            .get(instance.url("/api/v1/admin/projections"))
            .bearer_auth(admin)
            .send()
            .await
            .expect("admin status")
            .json()
            .await
            .expect("json");
        let terms = body["leadership"].as_array().expect("leadership terms");
        for term in terms {
            let time = |field: &str| -> Option<DateTime<Utc>> {
                term[field]
                    .as_str()
                    .map(|t| t.parse().expect("a timestamp"))
            };
            let since = time("since").expect("since");
            let until = time("until").unwrap_or_else(Utc::now);
            into.entry(term["role"].as_str().expect("role").to_owned())
                .or_default()
                .push((i, term["epoch"].as_i64().expect("epoch"), since, until));
        }
    }
}

/// Pairs of neighbouring stream messages that are in the opposite order in the log.
fn out_of_order_pairs(messages: &[Value], log: &[String]) -> usize {
    let index: HashMap<&str, usize> = log
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let order: Vec<usize> = messages
        .iter()
        .filter_map(|m| index.get(m["id"].as_str()?).copied())
        .collect();
    order.windows(2).filter(|w| w[1] < w[0]).count()
}

#[tokio::test]
async fn leaders_whose_lock_backends_are_terminated_under_load_stop_before_others_start_and_the_stream_keeps_commit_order(
) {
    let pg = PgServer::start().await;
    let nats = Nats::start().await;
    let url = pg.url("chronicle");
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let (stream, prefix) = (format!("FAULT_{unique}"), format!("fault.{unique}"));
    let first = Chronicle::start_on(&url, &nats.url(), &stream, &prefix).await;
    let second = Chronicle::start_on(&url, &nats.url(), &stream, &prefix).await;
    let pool = PgPool::connect(&url).await.expect("the test's database");
    let admin = admin_token(&url, &first.url("")).await;
    let token = sign_up(&first.url(""), "leaders@example.com").await;
    let loads = [
        Load::start_mixed(&first.url(""), &token, 4),
        Load::start_mixed(&second.url(""), &token, 4),
    ];
    let mut terms = Terms::new();

    let mut terminated = 0;
    for _ in 0..4 {
        for load in &loads {
            load.wait_for_acked(load.acked(), 10, Duration::from_secs(20))
                .await;
        }
        let before = eventually(Duration::from_secs(20), "every role led", || {
            let pool = &pool;
            async move {
                let epochs = epochs(pool).await;
                let led = epochs.len() == ROLES && epochs.values().all(|e| *e > 0);
                (led && leaders_settled(pool).await).then_some(epochs)
            }
        })
        .await;
        terminated += terminate_lock_backends(&pool).await;
        eventually(
            Duration::from_secs(20),
            "every role to be taken over",
            || {
                let (pool, before) = (&pool, &before);
                async move {
                    let now = epochs(pool).await;
                    before
                        .iter()
                        .all(|(role, epoch)| now.get(role).is_some_and(|e| e > epoch))
                        .then_some(())
                }
            },
        )
        .await;
    }
    for load in &loads {
        load.wait_for_acked(load.acked(), 10, Duration::from_secs(20))
            .await;
    }
    // The terms after the last termination have begun once their handover is over.
    eventually(Duration::from_secs(20), "the last leaders to start", || {
        let pool = &pool;
        async move { leaders_settled(pool).await.then_some(()) }
    })
    .await;
    let mut outcomes = Vec::new();
    for load in loads {
        outcomes.extend(load.stop().await);
    }
    reported_terms(&[&first, &second], &admin, &mut terms).await;
    let messages = stream_caught_up(&pool, &nats.url(), &stream, Duration::from_secs(30)).await;
    let log = log_ids(&pool).await;

    let out_of_order = out_of_order_pairs(&messages, &log);
    let mut overlaps = Vec::new();
    let mut handovers = Vec::new();
    for (role, role_terms) in &mut terms {
        role_terms.sort_by_key(|t| t.2);
        for pair in role_terms.windows(2) {
            let (earlier, later) = (&pair[0], &pair[1]);
            let gap = later.2 - earlier.3;
            handovers.push(gap.num_milliseconds());
            if gap < chrono::TimeDelta::zero() {
                overlaps.push(format!("{role}: {earlier:?} and {later:?}"));
            }
        }
    }
    eprintln!(
        "leadership: {terminated} lock backends terminated, {} events, {} acknowledged commands, \
         {out_of_order} out-of-order pairs, {} terms, handover gaps (ms) {handovers:?}",
        log.len(),
        acked_ids(&outcomes).len(),
        terms.values().map(Vec::len).sum::<usize>(),
    );

    assert!(
        terminated >= 8,
        "only {terminated} lock holders were terminated"
    );
    assert_eq!(out_of_order, 0, "neighbouring messages out of commit order");
    assert_exactly_once_in_order(&messages, &log);
    assert!(
        terms.values().all(|t| t.len() >= 5),
        "every role had a term before and after each of the four terminations: {terms:?}"
    );
    assert!(
        overlaps.is_empty(),
        "two instances led one role at once: {overlaps:?}"
    );
}
