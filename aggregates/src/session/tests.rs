#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

use crate::actor::{Actor, Role};
use crate::ids::{SessionId, UserId};
use crate::session::{Session, SessionCommand, SessionError, SessionEvent, SessionStatus};

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

/// The defaults of `REFRESH_REUSE_GRACE` and `SESSION_MAX_AGE`.
const GRACE: i64 = 10;
const MAX_AGE: i64 = 90 * DAY;

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
    start_with_max_age(MAX_AGE)
}

fn start_with_max_age(max_age: i64) -> SessionCommand {
    SessionCommand::Start {
        session_id: session_id(),
        user_id: owner_id(),
        role: Role::User,
        refresh_token_hash: "rt-1".to_owned(),
        ip: Some("203.0.113.7".to_owned()),
        user_agent: Some("curl/8".to_owned()),
        expires_at: at(30 * DAY),
        max_age: TimeDelta::seconds(max_age),
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
        within_grace: false,
    }
}

/// A token handed out for one retired moments before.
fn refreshed_in_grace(new_hash: &str, seconds: i64) -> SessionEvent {
    SessionEvent::Refreshed {
        refresh_token_hash: new_hash.to_owned(),
        expires_at: at(seconds + 30 * DAY),
        refreshed_at: at(seconds),
        within_grace: true,
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
    refresh_with(presented, new_hash, seconds, GRACE, MAX_AGE)
}

/// A refresh under a chosen grace and maximum age (in seconds).
fn refresh_with(
    presented: &str,
    new_hash: &str,
    seconds: i64,
    grace: i64,
    max_age: i64,
) -> SessionCommand {
    SessionCommand::Refresh {
        presented_hash: presented.to_owned(),
        new_refresh_token_hash: new_hash.to_owned(),
        expires_at: at(seconds + 30 * DAY),
        reuse_grace: TimeDelta::seconds(grace),
        max_age: TimeDelta::seconds(max_age),
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
// Refresh: the reuse grace window.
// ---------------------------------------------------------------------------------------------

/// `rt-1` retired at 100 for `rt-2`; a second caller of `rt-1` got `rt-3` at 105.
fn a_session_forked_in_grace() -> Vec<SessionEvent> {
    vec![
        started(),
        refreshed("rt-2", 100),
        refreshed_in_grace("rt-3", 105),
    ]
}

#[test]
fn a_token_retired_moments_ago_gets_a_fresh_token_for_the_same_session() {
    given(a_rotated_session())
        .when(refresh("rt-1", "rt-3", 100 + GRACE - 1))
        .then_expect_events(vec![refreshed_in_grace("rt-3", 100 + GRACE - 1)]);
}

#[test]
fn a_retired_token_presented_as_the_grace_window_closes_is_reuse() {
    given(a_rotated_session())
        .when(refresh("rt-1", "rt-3", 100 + GRACE))
        .then_expect_events(vec![compromised(100 + GRACE)]);
}

#[test]
fn a_zero_grace_treats_a_token_retired_the_same_instant_as_reuse() {
    given(a_rotated_session())
        .when(refresh_with("rt-1", "rt-3", 100, 0, MAX_AGE))
        .then_expect_events(vec![compromised(100)]);
}

#[test]
fn only_the_token_retired_last_gets_grace_not_older_ones() {
    let mut history = a_rotated_session();
    history.push(refreshed("rt-3", 200));

    given(history)
        .when(refresh("rt-1", "rt-4", 201))
        .then_expect_events(vec![compromised(201)]);
}

#[test]
fn the_token_of_the_other_caller_stays_live_after_a_grace_refresh() {
    given(a_session_forked_in_grace())
        .when(refresh("rt-2", "rt-4", 900))
        .then_expect_events(vec![refreshed("rt-4", 900)]);
}

#[test]
fn the_token_handed_out_in_grace_rotates_like_any_live_token() {
    given(a_session_forked_in_grace())
        .when(refresh("rt-3", "rt-4", 900))
        .then_expect_events(vec![refreshed("rt-4", 900)]);
}

#[test]
fn the_next_rotation_retires_the_fork_so_its_later_use_is_reuse() {
    let mut history = a_session_forked_in_grace();
    history.push(refreshed("rt-4", 900));

    given(history)
        .when(refresh("rt-3", "rt-5", 1_000))
        .then_expect_events(vec![compromised(1_000)]);
}

#[test]
fn a_fork_retired_moments_ago_is_itself_within_grace() {
    let mut history = a_session_forked_in_grace();
    history.push(refreshed("rt-4", 900));

    given(history)
        .when(refresh("rt-3", "rt-5", 901))
        .then_expect_events(vec![refreshed_in_grace("rt-5", 901)]);
}

#[test]
fn a_grace_refresh_does_not_extend_the_window_of_the_retired_token() {
    given(a_session_forked_in_grace())
        .when(refresh("rt-1", "rt-4", 100 + GRACE))
        .then_expect_events(vec![compromised(100 + GRACE)]);
}

#[test]
fn a_grace_refresh_of_a_session_past_its_maximum_age_is_expired() {
    given(a_rotated_session())
        .when(refresh_with("rt-1", "rt-3", 105, GRACE, 103))
        .then_expect_error(SessionError::Expired);
}

#[test]
fn a_retired_token_on_a_revoked_session_gets_no_grace() {
    let mut history = a_rotated_session();
    history.push(revoked());

    given(history)
        .when(refresh("rt-1", "rt-3", 101))
        .then_expect_error(SessionError::Revoked);
}

#[tokio::test]
async fn after_a_fork_both_tokens_are_live_until_the_next_rotation_retires_both() {
    let mut session = Session::default();
    for event in a_session_forked_in_grace() {
        session.apply(event);
    }
    assert_eq!(session.current_refresh_hash, "rt-2");
    assert_eq!(session.sibling_refresh_hashes, vec!["rt-3"]);

    let events = handle(&mut session, refresh("rt-3", "rt-4", 900)).await;

    assert_eq!(events, vec![refreshed("rt-4", 900)]);
    assert_eq!(session.current_refresh_hash, "rt-4");
    assert!(session.sibling_refresh_hashes.is_empty());
    let retired: Vec<(&str, DateTime<Utc>)> = session
        .retired_refresh_tokens
        .iter()
        .map(|t| (t.hash.as_str(), t.retired_at))
        .collect();
    assert_eq!(
        retired,
        vec![("rt-1", at(100)), ("rt-2", at(900)), ("rt-3", at(900))]
    );
}

// ---------------------------------------------------------------------------------------------
// The maximum age.
// ---------------------------------------------------------------------------------------------

#[test]
fn starting_a_session_caps_its_expiry_at_the_maximum_age() {
    let mut expected = started();
    if let SessionEvent::Started { expires_at, .. } = &mut expected {
        *expires_at = at(2);
    }

    given(vec![])
        .when(start_with_max_age(2))
        .then_expect_events(vec![expected]);
}

#[test]
fn a_refresh_never_extends_a_session_past_its_maximum_age() {
    let mut expected = refreshed("rt-2", 80 * DAY);
    if let SessionEvent::Refreshed { expires_at, .. } = &mut expected {
        *expires_at = at(MAX_AGE);
    }

    let history = vec![
        started(),
        refreshed("rt-1b", 29 * DAY),
        refreshed("rt-1", 58 * DAY),
    ];

    given(history)
        .when(refresh("rt-1", "rt-2", 80 * DAY))
        .then_expect_events(vec![expected]);
}

#[test]
fn a_session_refreshed_all_along_ends_at_its_maximum_age() {
    let history = vec![
        started(),
        refreshed("rt-2", 29 * DAY),
        refreshed("rt-3", 58 * DAY),
        refreshed("rt-4", 87 * DAY),
    ];

    given(history)
        .when(refresh("rt-4", "rt-5", MAX_AGE))
        .then_expect_error(SessionError::Expired);
}

#[test]
fn a_shortened_maximum_age_also_ends_sessions_already_running() {
    given(a_rotated_session())
        .when(refresh_with("rt-2", "rt-3", 10 * DAY, GRACE, 10 * DAY))
        .then_expect_error(SessionError::Expired);
}

#[test]
fn reuse_after_the_maximum_age_is_still_detected() {
    given(a_rotated_session())
        .when(refresh("rt-1", "rt-3", MAX_AGE + DAY))
        .then_expect_events(vec![compromised(MAX_AGE + DAY)]);
}

#[test]
fn a_session_ends_its_maximum_age_after_it_started() {
    let mut session = Session::default();
    assert_eq!(session.ends_at(TimeDelta::seconds(MAX_AGE)), None);

    session.apply(started());

    assert_eq!(
        session.ends_at(TimeDelta::seconds(MAX_AGE)),
        Some(at(MAX_AGE))
    );
    assert_eq!(
        session.ends_at(TimeDelta::MAX),
        Some(DateTime::<Utc>::MAX_UTC),
        "an absurd maximum age saturates instead of overflowing"
    );
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
    let retired: Vec<&str> = replayed
        .retired_refresh_tokens
        .iter()
        .map(|t| t.hash.as_str())
        .collect();
    assert_eq!(retired, vec!["rt-1", "rt-2"]);
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
    let grace_form = serde_json::to_value(refreshed_in_grace("rt-3", 105)).unwrap();
    let ordinary_form = serde_json::to_value(refreshed("rt-2", 100)).unwrap();
    assert_eq!(grace_form["session.refreshed"]["within_grace"], true);
    assert!(
        ordinary_form["session.refreshed"]
            .get("within_grace")
            .is_none(),
        "ordinary refreshes keep the stored form they always had"
    );
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
