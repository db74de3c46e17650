#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

use crate::actor::{Actor, Role};
use crate::ids::{PostId, UserId};
use crate::post::{Post, PostCommand, PostError, PostEvent, PostStatus};
use crate::values::{PostBody, PostTitle, Tags};

// ---------------------------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------------------------

fn post_id() -> PostId {
    PostId::from_uuid(Uuid::from_u128(10))
}

fn author_id() -> UserId {
    UserId::from_uuid(Uuid::from_u128(1))
}

/// `seconds` after a fixed instant (2023-11-14T22:13:20Z).
fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

fn author() -> Actor {
    Actor::User {
        id: author_id(),
        role: Role::User,
    }
}

fn other_user() -> Actor {
    Actor::User {
        id: UserId::from_uuid(Uuid::from_u128(2)),
        role: Role::User,
    }
}

fn admin() -> Actor {
    Actor::User {
        id: UserId::from_uuid(Uuid::from_u128(99)),
        role: Role::Admin,
    }
}

fn title(raw: &str) -> PostTitle {
    PostTitle::parse(raw).unwrap()
}

fn body(raw: &str) -> PostBody {
    PostBody::parse(raw).unwrap()
}

fn tags(raw: &[&str]) -> Tags {
    let raw: Vec<String> = raw.iter().map(|t| (*t).to_owned()).collect();
    Tags::parse(&raw).unwrap()
}

fn strings(raw: &[&str]) -> Vec<String> {
    raw.iter().map(|t| (*t).to_owned()).collect()
}

fn create(actor: Actor, publish: bool) -> PostCommand {
    PostCommand::Create {
        post_id: post_id(),
        actor,
        title: title("Hello"),
        body: body("First post."),
        tags: tags(&["rust", "intro"]),
        publish,
        at: at(0),
    }
}

fn created() -> PostEvent {
    PostEvent::Created {
        post_id: post_id(),
        author_id: author_id(),
        title: "Hello".to_owned(),
        body: "First post.".to_owned(),
        tags: strings(&["rust", "intro"]),
        created_at: at(0),
    }
}

fn published(seconds: i64) -> PostEvent {
    PostEvent::Published {
        published_at: at(seconds),
    }
}

fn deleted() -> PostEvent {
    PostEvent::Deleted {
        deleted_at: at(200),
    }
}

/// A draft at version 1.
fn a_draft() -> Vec<PostEvent> {
    vec![created()]
}

/// A published post at version 2.
fn a_published_post() -> Vec<PostEvent> {
    vec![created(), published(100)]
}

fn a_deleted_post() -> Vec<PostEvent> {
    vec![created(), deleted()]
}

fn given(events: Vec<PostEvent>) -> AggregateTestExecutor<Post> {
    TestFramework::<Post>::with(()).given(events)
}

fn patch(
    actor: Actor,
    new_title: Option<&str>,
    new_body: Option<&str>,
    new_tags: Option<&[&str]>,
) -> PostCommand {
    PostCommand::Update {
        actor,
        expected_version: None,
        title: new_title.map(title),
        body: new_body.map(body),
        tags: new_tags.map(tags),
        at: at(300),
    }
}

fn replace(actor: Actor, expected_version: Option<u64>) -> PostCommand {
    PostCommand::Replace {
        actor,
        expected_version,
        title: title("Hello again"),
        body: body("Rewritten."),
        tags: tags(&["meta"]),
        at: at(300),
    }
}

fn publish(actor: Actor, expected_version: Option<u64>) -> PostCommand {
    PostCommand::Publish {
        actor,
        expected_version,
        at: at(300),
    }
}

fn unpublish(actor: Actor, expected_version: Option<u64>) -> PostCommand {
    PostCommand::Unpublish {
        actor,
        expected_version,
        at: at(300),
    }
}

fn delete(actor: Actor, expected_version: Option<u64>) -> PostCommand {
    PostCommand::Delete {
        actor,
        expected_version,
        at: at(300),
    }
}

// ---------------------------------------------------------------------------------------------
// Create.
// ---------------------------------------------------------------------------------------------

#[test]
fn creating_a_post_records_a_draft_by_the_acting_user() {
    given(vec![])
        .when(create(author(), false))
        .then_expect_events(vec![created()]);
}

#[test]
fn creating_with_publish_records_created_then_published_at_the_same_instant() {
    given(vec![])
        .when(create(author(), true))
        .then_expect_events(vec![created(), published(0)]);
}

#[test]
fn an_admin_creating_a_post_becomes_its_author() {
    given(vec![])
        .when(create(admin(), false))
        .then_expect_events(vec![PostEvent::Created {
            post_id: post_id(),
            author_id: UserId::from_uuid(Uuid::from_u128(99)),
            title: "Hello".to_owned(),
            body: "First post.".to_owned(),
            tags: strings(&["rust", "intro"]),
            created_at: at(0),
        }]);
}

#[test]
fn creating_a_post_keeps_tags_in_order_without_duplicates() {
    let command = PostCommand::Create {
        post_id: post_id(),
        actor: author(),
        title: title("  Hello  "),
        body: body("First post."),
        tags: tags(&["rust", "intro", "rust"]),
        publish: false,
        at: at(0),
    };

    given(vec![])
        .when(command)
        .then_expect_events(vec![created()]);
}

#[test]
fn creating_a_post_that_already_exists_is_rejected() {
    given(a_draft())
        .when(create(author(), false))
        .then_expect_error(PostError::AlreadyExists);
}

#[test]
fn creating_over_a_deleted_post_is_rejected() {
    given(a_deleted_post())
        .when(create(author(), false))
        .then_expect_error(PostError::AlreadyExists);
}

#[test]
fn the_system_actor_cannot_author_a_post() {
    given(vec![])
        .when(create(Actor::System, true))
        .then_expect_error(PostError::AuthorRequired);
}

// ---------------------------------------------------------------------------------------------
// Update (PATCH).
// ---------------------------------------------------------------------------------------------

#[test]
fn patching_the_title_records_an_update_with_the_whole_content() {
    given(a_draft())
        .when(patch(author(), Some("Hello, world"), None, None))
        .then_expect_events(vec![PostEvent::Updated {
            title: "Hello, world".to_owned(),
            body: "First post.".to_owned(),
            tags: strings(&["rust", "intro"]),
            updated_at: at(300),
        }]);
}

#[test]
fn patching_the_body_and_tags_keeps_the_title() {
    given(a_published_post())
        .when(patch(author(), None, Some("Edited."), Some(&[])))
        .then_expect_events(vec![PostEvent::Updated {
            title: "Hello".to_owned(),
            body: "Edited.".to_owned(),
            tags: vec![],
            updated_at: at(300),
        }]);
}

#[test]
fn a_patch_to_the_current_content_records_no_events() {
    given(a_draft())
        .when(patch(
            author(),
            Some("Hello"),
            Some("First post."),
            Some(&["rust", "intro"]),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn an_empty_patch_records_no_events() {
    given(a_draft())
        .when(patch(author(), None, None, None))
        .then_expect_events(vec![]);
}

#[test]
fn reordering_tags_is_a_change() {
    given(a_draft())
        .when(patch(author(), None, None, Some(&["intro", "rust"])))
        .then_expect_events(vec![PostEvent::Updated {
            title: "Hello".to_owned(),
            body: "First post.".to_owned(),
            tags: strings(&["intro", "rust"]),
            updated_at: at(300),
        }]);
}

#[test]
fn an_admin_may_patch_another_users_post() {
    given(a_draft())
        .when(patch(admin(), Some("Moderated"), None, None))
        .then_expect_events(vec![PostEvent::Updated {
            title: "Moderated".to_owned(),
            body: "First post.".to_owned(),
            tags: strings(&["rust", "intro"]),
            updated_at: at(300),
        }]);
}

#[test]
fn the_system_actor_may_patch_any_post() {
    given(a_draft())
        .when(patch(Actor::System, Some("Moderated"), None, None))
        .then_expect_events(vec![PostEvent::Updated {
            title: "Moderated".to_owned(),
            body: "First post.".to_owned(),
            tags: strings(&["rust", "intro"]),
            updated_at: at(300),
        }]);
}

#[test]
fn patching_another_users_published_post_is_forbidden() {
    given(a_published_post())
        .when(patch(other_user(), Some("Mine now"), None, None))
        .then_expect_error(PostError::Forbidden);
}

#[test]
fn patching_another_users_draft_is_not_found_as_if_it_did_not_exist() {
    given(a_draft())
        .when(patch(other_user(), Some("Mine now"), None, None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn patching_a_post_that_does_not_exist_is_not_found() {
    given(vec![])
        .when(patch(author(), Some("Hello"), None, None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn patching_a_deleted_post_is_not_found() {
    given(a_deleted_post())
        .when(patch(author(), Some("Back"), None, None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn patching_with_a_stale_expected_version_is_rejected_with_the_current_version() {
    let command = PostCommand::Update {
        actor: author(),
        expected_version: Some(1),
        title: Some(title("Hello, world")),
        body: None,
        tags: None,
        at: at(300),
    };

    given(a_published_post())
        .when(command)
        .then_expect_error(PostError::VersionMismatch { current: 2 });
}

#[test]
fn a_no_op_patch_with_a_stale_expected_version_is_still_rejected() {
    let command = PostCommand::Update {
        actor: author(),
        expected_version: Some(7),
        title: None,
        body: None,
        tags: None,
        at: at(300),
    };

    given(a_draft())
        .when(command)
        .then_expect_error(PostError::VersionMismatch { current: 1 });
}

#[test]
fn patching_with_the_current_expected_version_succeeds() {
    let command = PostCommand::Update {
        actor: author(),
        expected_version: Some(2),
        title: Some(title("Hello, world")),
        body: None,
        tags: None,
        at: at(300),
    };

    given(a_published_post())
        .when(command)
        .then_expect_events(vec![PostEvent::Updated {
            title: "Hello, world".to_owned(),
            body: "First post.".to_owned(),
            tags: strings(&["rust", "intro"]),
            updated_at: at(300),
        }]);
}

// ---------------------------------------------------------------------------------------------
// Replace (PUT).
// ---------------------------------------------------------------------------------------------

#[test]
fn replacing_a_post_records_the_new_content() {
    given(a_draft())
        .when(replace(author(), Some(1)))
        .then_expect_events(vec![PostEvent::Updated {
            title: "Hello again".to_owned(),
            body: "Rewritten.".to_owned(),
            tags: strings(&["meta"]),
            updated_at: at(300),
        }]);
}

#[test]
fn replacing_with_the_current_content_records_no_events() {
    let command = PostCommand::Replace {
        actor: author(),
        expected_version: None,
        title: title("Hello"),
        body: body("First post."),
        tags: tags(&["rust", "intro"]),
        at: at(300),
    };

    given(a_draft()).when(command).then_expect_events(vec![]);
}

#[test]
fn replacing_another_users_published_post_is_forbidden() {
    given(a_published_post())
        .when(replace(other_user(), None))
        .then_expect_error(PostError::Forbidden);
}

#[test]
fn replacing_another_users_draft_is_not_found_as_if_it_did_not_exist() {
    given(a_draft())
        .when(replace(other_user(), None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn replacing_a_post_that_does_not_exist_is_not_found() {
    given(vec![])
        .when(replace(author(), None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn replacing_a_deleted_post_is_not_found() {
    given(a_deleted_post())
        .when(replace(admin(), None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn replacing_with_a_stale_expected_version_is_rejected() {
    given(a_draft())
        .when(replace(author(), Some(0)))
        .then_expect_error(PostError::VersionMismatch { current: 1 });
}

// ---------------------------------------------------------------------------------------------
// Publish.
// ---------------------------------------------------------------------------------------------

#[test]
fn publishing_a_draft_records_the_publication() {
    given(a_draft())
        .when(publish(author(), Some(1)))
        .then_expect_events(vec![published(300)]);
}

#[test]
fn an_admin_may_publish_another_users_draft() {
    given(a_draft())
        .when(publish(admin(), None))
        .then_expect_events(vec![published(300)]);
}

#[test]
fn publishing_an_already_published_post_is_rejected() {
    given(a_published_post())
        .when(publish(author(), None))
        .then_expect_error(PostError::AlreadyPublished);
}

#[test]
fn a_post_can_be_published_again_after_being_unpublished() {
    let mut history = a_published_post();
    history.push(PostEvent::Unpublished {
        unpublished_at: at(200),
    });

    given(history)
        .when(publish(author(), Some(3)))
        .then_expect_events(vec![published(300)]);
}

#[test]
fn publishing_another_users_draft_is_not_found_as_if_it_did_not_exist() {
    given(a_draft())
        .when(publish(other_user(), None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn publishing_a_post_that_does_not_exist_is_not_found() {
    given(vec![])
        .when(publish(author(), None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn publishing_a_deleted_post_is_not_found() {
    given(a_deleted_post())
        .when(publish(author(), None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn publishing_with_a_stale_expected_version_is_rejected() {
    given(a_draft())
        .when(publish(author(), Some(2)))
        .then_expect_error(PostError::VersionMismatch { current: 1 });
}

#[test]
fn permission_is_checked_before_the_expected_version() {
    given(a_published_post())
        .when(unpublish(other_user(), Some(42)))
        .then_expect_error(PostError::Forbidden);
}

#[test]
fn existence_is_checked_before_permission() {
    given(a_deleted_post())
        .when(publish(other_user(), Some(42)))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn the_state_transition_is_checked_after_the_expected_version() {
    given(a_published_post())
        .when(publish(author(), Some(1)))
        .then_expect_error(PostError::VersionMismatch { current: 2 });
}

// ---------------------------------------------------------------------------------------------
// Unpublish.
// ---------------------------------------------------------------------------------------------

#[test]
fn unpublishing_a_published_post_records_the_unpublication() {
    given(a_published_post())
        .when(unpublish(author(), Some(2)))
        .then_expect_events(vec![PostEvent::Unpublished {
            unpublished_at: at(300),
        }]);
}

#[test]
fn an_admin_may_unpublish_another_users_post() {
    given(a_published_post())
        .when(unpublish(admin(), None))
        .then_expect_events(vec![PostEvent::Unpublished {
            unpublished_at: at(300),
        }]);
}

#[test]
fn unpublishing_a_draft_is_rejected() {
    given(a_draft())
        .when(unpublish(author(), None))
        .then_expect_error(PostError::NotPublished);
}

#[test]
fn unpublishing_another_users_post_is_forbidden() {
    given(a_published_post())
        .when(unpublish(other_user(), None))
        .then_expect_error(PostError::Forbidden);
}

#[test]
fn unpublishing_another_users_draft_is_not_found_not_an_invalid_transition() {
    given(a_draft())
        .when(unpublish(other_user(), None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn unpublishing_a_post_that_does_not_exist_is_not_found() {
    given(vec![])
        .when(unpublish(author(), None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn unpublishing_with_a_stale_expected_version_is_rejected() {
    given(a_published_post())
        .when(unpublish(author(), Some(1)))
        .then_expect_error(PostError::VersionMismatch { current: 2 });
}

// ---------------------------------------------------------------------------------------------
// Delete.
// ---------------------------------------------------------------------------------------------

#[test]
fn deleting_a_post_records_the_deletion() {
    given(a_published_post())
        .when(delete(author(), Some(2)))
        .then_expect_events(vec![PostEvent::Deleted {
            deleted_at: at(300),
        }]);
}

#[test]
fn an_admin_may_delete_another_users_post() {
    given(a_draft())
        .when(delete(admin(), None))
        .then_expect_events(vec![PostEvent::Deleted {
            deleted_at: at(300),
        }]);
}

#[test]
fn deleting_another_users_published_post_is_forbidden() {
    given(a_published_post())
        .when(delete(other_user(), None))
        .then_expect_error(PostError::Forbidden);
}

#[test]
fn deleting_another_users_draft_is_not_found_as_if_it_did_not_exist() {
    given(a_draft())
        .when(delete(other_user(), None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn deleting_a_post_that_does_not_exist_is_not_found() {
    given(vec![])
        .when(delete(author(), None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn deleting_a_deleted_post_is_not_found() {
    given(a_deleted_post())
        .when(delete(author(), None))
        .then_expect_error(PostError::NotFound);
}

#[test]
fn deleting_with_a_stale_expected_version_is_rejected() {
    given(a_draft())
        .when(delete(author(), Some(3)))
        .then_expect_error(PostError::VersionMismatch { current: 1 });
}

// ---------------------------------------------------------------------------------------------
// Errors, replay and the stored form.
// ---------------------------------------------------------------------------------------------

async fn handle(post: &mut Post, command: PostCommand) -> Vec<PostEvent> {
    let sink = EventSink::default();
    post.handle(command, &(), &sink)
        .await
        .expect("command is accepted");
    sink.collect().await
}

#[tokio::test]
async fn replaying_the_recorded_events_rebuilds_the_same_post() {
    let mut live = Post::default();
    let mut recorded = Vec::new();

    for command in [
        create(author(), true),
        patch(author(), Some("Hello, world"), None, Some(&["rust"])),
        unpublish(admin(), None),
        replace(author(), None),
        publish(author(), None),
    ] {
        recorded.extend(handle(&mut live, command).await);
    }
    let mut replayed = Post::default();
    for event in recorded.clone() {
        replayed.apply(event);
    }

    assert_eq!(replayed, live);
    assert_eq!(recorded.len(), 6);
    assert_eq!(replayed.version, recorded.len() as u64);
    assert_eq!(replayed.id, Some(post_id()));
    assert_eq!(replayed.author_id, Some(author_id()));
    assert_eq!(replayed.title, "Hello again");
    assert_eq!(replayed.body, "Rewritten.");
    assert_eq!(replayed.tags, strings(&["meta"]));
    assert_eq!(replayed.status, PostStatus::Published);
    assert!(!replayed.deleted);
    assert_eq!(replayed.created_at, Some(at(0)));
    assert_eq!(replayed.published_at, Some(at(300)));
}

#[test]
fn unpublishing_clears_the_publication_time_and_deleting_marks_the_post() {
    let mut post = Post::default();

    for event in a_published_post() {
        post.apply(event);
    }
    post.apply(PostEvent::Unpublished {
        unpublished_at: at(150),
    });
    post.apply(deleted());

    assert_eq!(post.status, PostStatus::Draft);
    assert_eq!(post.published_at, None);
    assert!(post.deleted);
    assert_eq!(post.updated_at, Some(at(200)));
    assert_eq!(post.version, 4);
}

#[test]
fn each_post_event_is_stored_under_its_public_type_name() {
    let events = vec![
        created(),
        PostEvent::Updated {
            title: "T".to_owned(),
            body: "B".to_owned(),
            tags: strings(&["a"]),
            updated_at: at(1),
        },
        published(2),
        PostEvent::Unpublished {
            unpublished_at: at(3),
        },
        deleted(),
    ];
    let mut seen = HashSet::new();

    for event in events {
        let json = serde_json::to_value(&event).unwrap();
        let object = json.as_object().expect("an event serialises as an object");
        let keys: Vec<&String> = object.keys().collect();
        assert_eq!(keys, vec![&event.event_type()], "outer key of {event:?}");
        assert!(event.event_type().starts_with("post."));
        assert_eq!(event.event_version(), crate::EVENT_VERSION);
        let back: PostEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        seen.insert(event.event_type());
    }

    assert_eq!(seen.len(), 5, "every variant is covered exactly once");
}

#[test]
fn a_created_event_has_the_documented_json_shape() {
    let json = serde_json::to_value(created()).unwrap();

    assert_eq!(
        json,
        serde_json::json!({
            "post.created": {
                "post_id": "00000000-0000-0000-0000-00000000000a",
                "author_id": "00000000-0000-0000-0000-000000000001",
                "title": "Hello",
                "body": "First post.",
                "tags": ["rust", "intro"],
                "created_at": "2023-11-14T22:13:20Z",
            }
        })
    );
}
