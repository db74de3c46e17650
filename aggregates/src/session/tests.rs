#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

use crate::actor::{Actor, Role};
use crate::ids::{SessionId, UserId};
use crate::session::{Session, SessionCommand, SessionError, SessionEvent, SessionStatus};
use crate::{DomainError, ErrorKind};

// ---------------------------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------------------------

fn session_id() -> SessionId {
    SessionId::from_uuid(Uuid::from_u128(20))
}

fn owner_id() -> UserId {
    UserId::from_uuid(Uuid::from_u128(1))
}

/// `seconds` after a fixed instant (2023-11-14T22:13:20Z).
fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

const DAY: i64 = 86_400;

fn owner() -> Actor {
    Actor::User {
        id: owner_id(),
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

fn start() -> SessionCommand {
    SessionCommand::Start {
        session_id: session_id(),
        user_id: owner_id(),
        role: Role::User,
        refresh_token_hash: "rt-1".to_owned(),
        ip: Some("203.0.113.7".to_owned()),
        user_agent: Some("curl/8".to_owned()),
        expires_at: at(30 * DAY),
        at: at(0),
    }
}

fn started() -> SessionEvent {
    SessionEvent::Started {
        session_id: session_id(),
        user_id: owner_id(),
        role: Role::User,
        refresh_token_hash: "rt-1".to_owned(),
        ip: Some("203.0.113.7".to_owned()),
        user_agent: Some("curl/8".to_owned()),
        expires_at: at(30 * DAY),
        started_at: at(0),
    }
}

fn refreshed(new_hash: &str, seconds: i64) -> SessionEvent {
    SessionEvent::Refreshed {
        refresh_token_hash: new_hash.to_owned(),
        expires_at: at(seconds + 30 * DAY),
        refreshed_at: at(seconds),
    }
}

fn revoked() -> SessionEvent {
    SessionEvent::Revoked {
        reason: "sign_out".to_owned(),
        revoked_at: at(500),
    }
}

fn compromised(seconds: i64) -> SessionEvent {
    SessionEvent::Compromised {
        compromised_at: at(seconds),
    }
}

/// Started with `rt-1`, version 1.
fn an_active_session() -> Vec<SessionEvent> {
    vec![started()]
}

/// Rotated `rt-1` → `rt-2`, version 2.
fn a_rotated_session() -> Vec<SessionEvent> {
    vec![started(), refreshed("rt-2", 100)]
}

fn a_revoked_session() -> Vec<SessionEvent> {
    vec![started(), revoked()]
}

fn a_compromised_session() -> Vec<SessionEvent> {
    vec![started(), refreshed("rt-2", 100), compromised(200)]
}

fn given(events: Vec<SessionEvent>) -> AggregateTestExecutor<Session> {
    TestFramework::<Session>::with(()).given(events)
}

fn refresh(presented: &str, new_hash: &str, seconds: i64) -> SessionCommand {
    SessionCommand::Refresh {
        presented_hash: presented.to_owned(),
        new_refresh_token_hash: new_hash.to_owned(),
        expires_at: at(seconds + 30 * DAY),
        at: at(seconds),
    }
}

fn revoke(actor: Actor) -> SessionCommand {
    SessionCommand::Revoke {
        actor,
        reason: "sign_out".to_owned(),
        at: at(500),
    }
}

fn mark_compromised(seconds: i64) -> SessionCommand {
    SessionCommand::MarkCompromised { at: at(seconds) }
}

// ---------------------------------------------------------------------------------------------
// Start.
// ---------------------------------------------------------------------------------------------

#[test]
fn starting_a_session_records_its_first_refresh_token_hash() {
    given(vec![])
        .when(start())
        .then_expect_events(vec![started()]);
}

#[test]
fn starting_a_session_twice_is_rejected() {
    given(an_active_session())
        .when(start())
        .then_expect_error(SessionError::AlreadyStarted);
}

// ---------------------------------------------------------------------------------------------
// Refresh.
// ---------------------------------------------------------------------------------------------

#[test]
fn refreshing_with_the_current_token_rotates_it() {
    given(an_active_session())
        .when(refresh("rt-1", "rt-2", 100))
        .then_expect_events(vec![refreshed("rt-2", 100)]);
}

#[test]
fn refreshing_with_the_rotated_in_token_rotates_it_again() {
    given(a_rotated_session())
        .when(refresh("rt-2", "rt-3", 200))
        .then_expect_events(vec![refreshed("rt-3", 200)]);
}

#[test]
fn presenting_a_rotated_away_token_compromises_the_session() {
    given(a_rotated_session())
        .when(refresh("rt-1", "rt-3", 200))
        .then_expect_events(vec![compromised(200)]);
}

#[test]
fn presenting_any_earlier_token_in_the_chain_is_detected_as_reuse() {
    let mut history = a_rotated_session();
    history.push(refreshed("rt-3", 200));

    given(history)
        .when(refresh("rt-1", "rt-4", 300))
        .then_expect_events(vec![compromised(300)]);
}

#[test]
fn reuse_is_detected_even_after_the_session_expired() {
    given(a_rotated_session())
        .when(refresh("rt-1", "rt-3", 365 * DAY))
        .then_expect_events(vec![compromised(365 * DAY)]);
}

#[test]
fn refreshing_with_an_unknown_token_is_rejected() {
    given(a_rotated_session())
        .when(refresh("rt-forged", "rt-3", 200))
        .then_expect_error(SessionError::UnknownToken);
}

#[test]
fn refreshing_at_the_moment_the_session_expires_is_rejected() {
    given(an_active_session())
        .when(refresh("rt-1", "rt-2", 30 * DAY))
        .then_expect_error(SessionError::Expired);
}

#[test]
fn refreshing_after_the_session_expired_is_rejected() {
    given(an_active_session())
        .when(refresh("rt-1", "rt-2", 31 * DAY))
        .then_expect_error(SessionError::Expired);
}

#[test]
fn a_refresh_extends_the_expiry_so_a_later_refresh_succeeds() {
    given(a_rotated_session())
        .when(refresh("rt-2", "rt-3", 30 * DAY))
        .then_expect_events(vec![refreshed("rt-3", 30 * DAY)]);
}

#[test]
fn an_unknown_token_on_an_expired_session_is_reported_as_unknown() {
    given(an_active_session())
        .when(refresh("rt-forged", "rt-2", 31 * DAY))
        .then_expect_error(SessionError::UnknownToken);
}

#[test]
fn refreshing_a_revoked_session_is_rejected() {
    given(a_revoked_session())
        .when(refresh("rt-1", "rt-2", 600))
        .then_expect_error(SessionError::Revoked);
}

#[test]
fn refreshing_a_compromised_session_is_rejected_even_with_the_current_token() {
    given(a_compromised_session())
        .when(refresh("rt-2", "rt-3", 300))
        .then_expect_error(SessionError::Revoked);
}

#[test]
fn reusing_an_old_token_on_a_compromised_session_records_nothing_more() {
    given(a_compromised_session())
        .when(refresh("rt-1", "rt-3", 300))
        .then_expect_error(SessionError::Revoked);
}

#[test]
fn reusing_an_old_token_on_a_revoked_session_is_rejected() {
    let mut history = a_rotated_session();
    history.push(revoked());

    given(history)
        .when(refresh("rt-1", "rt-3", 600))
        .then_expect_error(SessionError::Revoked);
}

#[test]
fn refreshing_a_session_that_was_never_started_is_not_found() {
    given(vec![])
        .when(refresh("rt-1", "rt-2", 100))
        .then_expect_error(SessionError::NotFound);
}

// ---------------------------------------------------------------------------------------------
// Revoke.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_owner_may_revoke_their_session() {
    given(an_active_session())
        .when(revoke(owner()))
        .then_expect_events(vec![revoked()]);
}

#[test]
fn an_admin_may_revoke_another_users_session() {
    given(an_active_session())
        .when(revoke(admin()))
        .then_expect_events(vec![revoked()]);
}

#[test]
fn the_system_actor_may_revoke_any_session() {
    given(an_active_session())
        .when(revoke(Actor::System))
        .then_expect_events(vec![revoked()]);
}

#[test]
fn revoking_another_users_session_is_forbidden() {
    given(an_active_session())
        .when(revoke(other_user()))
        .then_expect_error(SessionError::Forbidden);
}

#[test]
fn revoking_another_users_already_revoked_session_is_still_forbidden() {
    given(a_revoked_session())
        .when(revoke(other_user()))
        .then_expect_error(SessionError::Forbidden);
}

#[test]
fn revoking_a_session_that_was_never_started_is_not_found() {
    given(vec![])
        .when(revoke(owner()))
        .then_expect_error(SessionError::NotFound);
}

#[test]
fn revoking_an_already_revoked_session_records_no_events() {
    given(a_revoked_session())
        .when(revoke(owner()))
        .then_expect_events(vec![]);
}

#[test]
fn revoking_a_compromised_session_records_no_events() {
    given(a_compromised_session())
        .when(revoke(owner()))
        .then_expect_events(vec![]);
}

// ---------------------------------------------------------------------------------------------
// MarkCompromised.
// ---------------------------------------------------------------------------------------------

#[test]
fn marking_an_active_session_compromised_records_it() {
    given(an_active_session())
        .when(mark_compromised(300))
        .then_expect_events(vec![compromised(300)]);
}

#[test]
fn marking_a_revoked_session_compromised_records_it() {
    given(a_revoked_session())
        .when(mark_compromised(600))
        .then_expect_events(vec![compromised(600)]);
}

#[test]
fn marking_an_already_compromised_session_compromised_records_no_events() {
    given(a_compromised_session())
        .when(mark_compromised(300))
        .then_expect_events(vec![]);
}

#[test]
fn marking_a_session_that_was_never_started_compromised_is_not_found() {
    given(vec![])
        .when(mark_compromised(300))
        .then_expect_error(SessionError::NotFound);
}

// ---------------------------------------------------------------------------------------------
// Errors, replay and the stored form.
// ---------------------------------------------------------------------------------------------

#[test]
fn session_errors_map_to_their_stable_codes_and_kinds() {
    let cases = [
        (SessionError::NotFound, "NOT_FOUND", ErrorKind::NotFound),
        (
            SessionError::AlreadyStarted,
            "CONFLICT",
            ErrorKind::Conflict,
        ),
        (
            SessionError::Revoked,
            "UNAUTHORIZED",
            ErrorKind::Unauthenticated,
        ),
        (
            SessionError::Expired,
            "TOKEN_EXPIRED",
            ErrorKind::Unauthenticated,
        ),
        (
            SessionError::UnknownToken,
            "UNAUTHORIZED",
            ErrorKind::Unauthenticated,
        ),
        // Another user's session is reported as absent, so ids cannot be probed.
        (SessionError::Forbidden, "NOT_FOUND", ErrorKind::NotFound),
    ];

    for (error, code, kind) in cases {
        assert_eq!(error.code(), code, "code of {error:?}");
        assert_eq!(error.kind(), kind, "kind of {error:?}");
    }
}

async fn handle(session: &mut Session, command: SessionCommand) -> Vec<SessionEvent> {
    let sink = EventSink::default();
    session
        .handle(command, &(), &sink)
        .await
        .expect("command is accepted");
    sink.collect().await
}

#[tokio::test]
async fn replaying_the_recorded_events_rebuilds_the_same_session() {
    let mut live = Session::default();
    let mut recorded = Vec::new();

    for command in [
        start(),
        refresh("rt-1", "rt-2", 100),
        refresh("rt-2", "rt-3", 200),
        refresh("rt-1", "rt-4", 300),
        revoke(owner()),
    ] {
        recorded.extend(handle(&mut live, command).await);
    }
    let mut replayed = Session::default();
    for event in recorded.clone() {
        replayed.apply(event);
    }

    assert_eq!(replayed, live);
    assert_eq!(
        recorded.len(),
        4,
        "the revoke of a compromised session is a no-op"
    );
    assert_eq!(replayed.version, recorded.len() as u64);
    assert_eq!(replayed.status, SessionStatus::Compromised);
    assert_eq!(replayed.current_refresh_hash, "rt-3");
    assert_eq!(replayed.rotated_refresh_hashes, vec!["rt-1", "rt-2"]);
    assert_eq!(replayed.expires_at, Some(at(200 + 30 * DAY)));
    assert_eq!(replayed.last_used_at, Some(at(200)));
    assert!(!replayed.is_active());
}

#[test]
fn a_started_session_is_active_until_revoked() {
    let mut session = Session::default();
    assert!(!session.is_active());

    session.apply(started());
    assert!(session.is_active());
    assert_eq!(session.user_id, Some(owner_id()));
    assert_eq!(session.ip.as_deref(), Some("203.0.113.7"));

    session.apply(revoked());
    assert!(!session.is_active());
    assert_eq!(session.status, SessionStatus::Revoked);
    assert_eq!(session.version, 2);
}

#[test]
fn each_session_event_is_stored_under_its_public_type_name() {
    let events = vec![
        started(),
        refreshed("rt-2", 100),
        revoked(),
        compromised(200),
    ];
    let mut seen = HashSet::new();

    for event in events {
        let json = serde_json::to_value(&event).unwrap();
        let object = json.as_object().expect("an event serialises as an object");
        let keys: Vec<&String> = object.keys().collect();
        assert_eq!(keys, vec![&event.event_type()], "outer key of {event:?}");
        assert!(event.event_type().starts_with("session."));
        assert_eq!(event.event_version(), crate::EVENT_VERSION);
        let back: SessionEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        seen.insert(event.event_type());
    }

    assert_eq!(seen.len(), 4, "every variant is covered exactly once");
}
