use aggregates::post::{Post, PostCommand};
use aggregates::values::{PostBody, PostTitle, Tags};
use aggregates::{Actor, PostId, Role, UserId};
use chronicle::commands::{CommandBus, CommandMeta};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::EventStore;
use postgres_es::PostgresEventRepository;
use std::sync::Arc;

use crate::helpers::TestApp;

fn meta() -> CommandMeta {
    CommandMeta {
        correlation_id: "store-test".into(),
        actor_id: None,
    }
}

#[tokio::test]
async fn an_aggregate_from_the_cache_equals_one_replayed_from_its_events() {
    let app = TestApp::spawn().await;
    let bus = Arc::new(CommandBus::<Post>::new(app.state.pool.clone(), ()));
    let other_instance = Arc::new(CommandBus::<Post>::new(app.state.pool.clone(), ()));
    let author = Actor::User {
        id: UserId::from_uuid(uuid::Uuid::now_v7()),
        role: Role::User,
    };
    let post_id = PostId::from_uuid(uuid::Uuid::now_v7());
    let id = post_id.to_string();
    let create = PostCommand::Create {
        post_id,
        actor: author,
        title: PostTitle::parse("v0").unwrap(),
        body: PostBody::parse("body").unwrap(),
        tags: Tags::default(),
        publish: false,
        at: chrono::Utc::now(),
    };
    bus.execute(id.clone(), create, &meta(), false)
        .await
        .unwrap();

    for i in 0..30 {
        // Alternate instances so each one's cache must catch up with the other's appends.
        let which = if i % 3 == 0 { &other_instance } else { &bus };
        let update = PostCommand::Update {
            actor: author,
            expected_version: None,
            title: Some(PostTitle::parse(&format!("v{}", i + 1)).unwrap()),
            body: None,
            tags: None,
            at: chrono::Utc::now(),
        };
        which
            .execute(id.clone(), update, &meta(), true)
            .await
            .unwrap();
    }
    let (cached, cached_version) = bus.load(&id).await.unwrap();
    let replayed = PersistedEventStore::<_, Post>::new_event_store(PostgresEventRepository::new(
        app.state.pool.clone(),
    ))
    .load_aggregate(&id)
    .await
    .unwrap();

    assert_eq!(cached, replayed.aggregate);
    assert_eq!(cached_version, 31);
    assert_eq!(cached.version, 31);
    assert_eq!(cached.title, "v30");
}

/// The bus runs commands on its cached state without reading the log first; a cache that
/// another instance made stale must neither refuse a command the log's state allows, nor fail
/// an `If-Match` that names the log's version, nor let a stale-based append through.
#[tokio::test]
async fn a_stale_cache_neither_refuses_a_valid_command_nor_fails_a_correct_if_match() {
    let app = TestApp::spawn().await;
    let stale = Arc::new(CommandBus::<Post>::new(app.state.pool.clone(), ()));
    let other_instance = Arc::new(CommandBus::<Post>::new(app.state.pool.clone(), ()));
    let author = Actor::User {
        id: UserId::from_uuid(uuid::Uuid::now_v7()),
        role: Role::User,
    };
    let post_id = PostId::from_uuid(uuid::Uuid::now_v7());
    let id = post_id.to_string();
    let create = PostCommand::Create {
        post_id,
        actor: author,
        title: PostTitle::parse("draft").unwrap(),
        body: PostBody::parse("body").unwrap(),
        tags: Tags::default(),
        publish: false,
        at: chrono::Utc::now(),
    };
    stale.create(id.clone(), create, &meta()).await.unwrap();
    let publish = PostCommand::Publish {
        actor: author,
        expected_version: Some(1),
        at: chrono::Utc::now(),
    };
    other_instance
        .execute(id.clone(), publish, &meta(), false)
        .await
        .unwrap();

    // On the stale cache the post is a draft, so unpublishing would be refused there.
    let unpublish = PostCommand::Unpublish {
        actor: author,
        expected_version: Some(2),
        at: chrono::Utc::now(),
    };
    let unpublished = stale
        .execute(id.clone(), unpublish, &meta(), false)
        .await
        .unwrap();
    // And an If-Match naming a version the log has passed still fails.
    let stale_if_match = PostCommand::Publish {
        actor: author,
        expected_version: Some(2),
        at: chrono::Utc::now(),
    };
    let refused = other_instance
        .execute(id.clone(), stale_if_match, &meta(), false)
        .await;

    assert_eq!(unpublished.version, 3);
    assert_eq!(unpublished.state.status.as_str(), "draft");
    assert!(refused.is_err(), "a stale If-Match must not append");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(&id)
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(stored, 3);
}

/// Group commit: 32 clients on 10 aggregates share appends, and still no update is lost, each
/// aggregate's versions are contiguous, and racing commands on one aggregate are retried.
#[tokio::test]
async fn concurrent_commands_share_transactions_and_lose_no_update() {
    const AGGREGATES: usize = 10;
    const CLIENTS: usize = 32;
    const COMMANDS: usize = 320;
    let app = TestApp::spawn().await;
    let bus = Arc::new(CommandBus::<Post>::new(app.state.pool.clone(), ()));
    let author = Actor::User {
        id: UserId::from_uuid(uuid::Uuid::now_v7()),
        role: Role::User,
    };
    let mut ids = Vec::new();
    for i in 0..AGGREGATES {
        let post_id = PostId::from_uuid(uuid::Uuid::now_v7());
        let create = PostCommand::Create {
            post_id,
            actor: author,
            title: PostTitle::parse(&format!("post {i}")).unwrap(),
            body: PostBody::parse("body").unwrap(),
            tags: Tags::default(),
            publish: false,
            at: chrono::Utc::now(),
        };
        bus.create(post_id.to_string(), create, &meta())
            .await
            .unwrap();
        ids.push(post_id.to_string());
    }
    // 32 clients, each sending its next update as soon as the last one is answered.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients = (0..CLIENTS).map(|_| {
        let (bus, ids, next) = (bus.clone(), ids.clone(), next.clone());
        async move {
            let mut results = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= COMMANDS {
                    return results;
                }
                let update = PostCommand::Update {
                    actor: author,
                    expected_version: None,
                    title: Some(PostTitle::parse(&format!("update {i}")).unwrap()),
                    body: None,
                    tags: None,
                    at: chrono::Utc::now(),
                };
                let id = ids[i % AGGREGATES].clone();
                results.push(bus.execute(id, update, &meta(), true).await.map(|_| ()));
            }
        }
    });
    let results: Vec<_> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();

    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| format!("{e:?}")))
        .collect();
    assert!(
        failed.is_empty(),
        "every update goes in after retries: {failed:?}"
    );
    assert_eq!(results.len(), COMMANDS);
    for id in &ids {
        let sequences: Vec<i64> = sqlx::query_scalar(
            "SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence",
        )
        .bind(id)
        .fetch_all(&app.state.pool)
        .await
        .unwrap();
        let per_aggregate = (COMMANDS / AGGREGATES) as i64;
        assert_eq!(sequences, (1..=1 + per_aggregate).collect::<Vec<_>>());
    }
    let transactions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT transaction_id::text) FROM events WHERE event_type = 'post.updated'",
    )
    .fetch_one(&app.state.pool)
    .await
    .unwrap();
    assert!(
        transactions < COMMANDS as i64,
        "{COMMANDS} commands took {transactions} transactions: none were grouped"
    );
    let titles: std::collections::BTreeSet<String> = sqlx::query_scalar::<_, Option<String>>(
        "SELECT payload->'post.updated'->>'title' FROM events WHERE event_type = 'post.updated'",
    )
    .fetch_all(&app.state.pool)
    .await
    .unwrap()
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(titles.len(), COMMANDS, "each update's own event, once");
}
