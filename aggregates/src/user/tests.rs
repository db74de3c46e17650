#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

use crate::actor::{Actor, Role};
use crate::ids::UserId;
use crate::user::{
    EmailRegistry, IssuedToken, PasswordVerifier, PendingToken, ServiceError, User, UserChanges,
    UserCommand, UserError, UserEvent, UserServices, UserStatus, REQUESTS_PER_HOUR,
};
use crate::values::{Bio, Email, UserName};

// ---------------------------------------------------------------------------------------------
// Test doubles for the services the aggregate needs.
// ---------------------------------------------------------------------------------------------

/// Claims each address for the first user that asks; the same user may claim it again.
#[derive(Default)]
struct InMemoryEmailRegistry {
    claims: Mutex<HashMap<String, UserId>>,
}

impl InMemoryEmailRegistry {
    fn with_claim(email: &str, user_id: UserId) -> Self {
        let registry = Self::default();
        registry
            .claims
            .lock()
            .unwrap()
            .insert(email.to_owned(), user_id);
        registry
    }
}

#[async_trait]
impl EmailRegistry for InMemoryEmailRegistry {
    async fn claim(&self, email: &Email, user_id: UserId) -> Result<bool, ServiceError> {
        let mut claims = self.claims.lock().unwrap();
        let owner = *claims.entry(email.as_str().to_owned()).or_insert(user_id);
        Ok(owner == user_id)
    }
}

/// A "hash" is `hash:` followed by the password: deterministic and instant.
struct PrefixPasswordVerifier;

#[async_trait]
impl PasswordVerifier for PrefixPasswordVerifier {
    async fn verify(&self, password: &str, hash: &str) -> Result<bool, ServiceError> {
        Ok(hash == format!("hash:{password}"))
    }
}

/// Both services at once, always failing, for the `ServiceUnavailable` paths.
struct FailingService;

#[async_trait]
impl EmailRegistry for FailingService {
    async fn claim(&self, _email: &Email, _user_id: UserId) -> Result<bool, ServiceError> {
        Err(ServiceError("registry down".to_owned()))
    }
}

#[async_trait]
impl PasswordVerifier for FailingService {
    async fn verify(&self, _password: &str, _hash: &str) -> Result<bool, ServiceError> {
        Err(ServiceError("hasher down".to_owned()))
    }
}

fn services() -> UserServices {
    UserServices {
        emails: Arc::new(InMemoryEmailRegistry::default()),
        passwords: Arc::new(PrefixPasswordVerifier),
    }
}

fn services_with_registry(registry: InMemoryEmailRegistry) -> UserServices {
    UserServices {
        emails: Arc::new(registry),
        passwords: Arc::new(PrefixPasswordVerifier),
    }
}

fn failing_services() -> UserServices {
    UserServices {
        emails: Arc::new(FailingService),
        passwords: Arc::new(FailingService),
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------------------------

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery";
/// The aggregate only ever sees token hashes; these stand for the SHA-256 of a mailed token.
const TOKEN: &str = "verify-token-1";

fn ada_id() -> UserId {
    UserId::from_uuid(Uuid::from_u128(1))
}

fn other_id() -> UserId {
    UserId::from_uuid(Uuid::from_u128(2))
}

fn admin_id() -> UserId {
    UserId::from_uuid(Uuid::from_u128(99))
}

/// `seconds` after a fixed instant (2023-11-14T22:13:20Z).
fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

fn ada() -> Actor {
    Actor::User {
        id: ada_id(),
        role: Role::User,
    }
}

fn other_user() -> Actor {
    Actor::User {
        id: other_id(),
        role: Role::User,
    }
}

fn admin() -> Actor {
    Actor::User {
        id: admin_id(),
        role: Role::Admin,
    }
}

fn hash_of(password: &str) -> String {
    format!("hash:{password}")
}

fn name(raw: &str) -> UserName {
    UserName::parse(raw).unwrap()
}

fn bio(raw: &str) -> Bio {
    Bio::parse(raw).unwrap()
}

fn register_command() -> UserCommand {
    UserCommand::Register {
        user_id: ada_id(),
        email: Email::parse(EMAIL).unwrap(),
        name: name("Ada"),
        role: Role::User,
        password_hash: hash_of(PASSWORD),
        verification: issued(TOKEN, at(3600)),
        at: at(0),
    }
}

fn registered() -> UserEvent {
    UserEvent::Registered {
        user_id: ada_id(),
        email: EMAIL.to_owned(),
        name: "Ada".to_owned(),
        role: Role::User,
        password_hash: hash_of(PASSWORD),
        registered_at: at(0),
    }
}

fn issued(hash: &str, expires_at: DateTime<Utc>) -> IssuedToken {
    IssuedToken {
        nonce: format!("nonce-of-{hash}"),
        hash: hash.to_owned(),
        expires_at,
    }
}

fn verification_requested_at(
    hash: &str,
    expires_at: DateTime<Utc>,
    requested_at: DateTime<Utc>,
) -> UserEvent {
    UserEvent::EmailVerificationRequested {
        email: EMAIL.to_owned(),
        token_nonce: Some(format!("nonce-of-{hash}")),
        token_hash: Some(hash.to_owned()),
        expires_at,
        requested_at,
    }
}

fn verification_requested(hash: &str, expires_at: DateTime<Utc>) -> UserEvent {
    verification_requested_at(hash, expires_at, at(0))
}

fn reset_requested(hash: &str, requested_at: DateTime<Utc>) -> UserEvent {
    UserEvent::PasswordResetRequested {
        email: EMAIL.to_owned(),
        token_nonce: format!("nonce-of-{hash}"),
        token_hash: hash.to_owned(),
        expires_at: requested_at + chrono::Duration::hours(1),
        requested_at,
    }
}

fn email_verified() -> UserEvent {
    UserEvent::EmailVerified {
        email: EMAIL.to_owned(),
        verified_at: at(60),
    }
}

fn deactivated() -> UserEvent {
    UserEvent::Deactivated {
        deactivated_at: at(120),
    }
}

/// What `Register` leaves behind: version 2, email unverified, token `TOKEN` valid for an hour.
fn a_registered_user() -> Vec<UserEvent> {
    vec![registered(), verification_requested(TOKEN, at(3600))]
}

fn a_verified_user() -> Vec<UserEvent> {
    let mut events = a_registered_user();
    events.push(email_verified());
    events
}

fn a_deactivated_user() -> Vec<UserEvent> {
    let mut events = a_registered_user();
    events.push(deactivated());
    events
}

fn given(events: Vec<UserEvent>) -> AggregateTestExecutor<User> {
    TestFramework::<User>::with(services()).given(events)
}

fn update(actor: Actor, changes: UserChanges) -> UserCommand {
    UserCommand::Update {
        actor,
        expected_version: None,
        changes,
        at: at(300),
    }
}

fn request_verification(actor: Actor) -> UserCommand {
    UserCommand::RequestEmailVerification {
        actor,
        token: issued("verify-token-2", at(7200)),
        at: at(300),
    }
}

fn verify(actor: Actor, token: &str, moment: DateTime<Utc>) -> UserCommand {
    UserCommand::VerifyEmail {
        actor,
        token_hash: token.to_owned(),
        at: moment,
    }
}

fn change_password(actor: Actor, current: &str) -> UserCommand {
    UserCommand::ChangePassword {
        actor,
        current_password: current.to_owned(),
        new_password_hash: hash_of("a brand new password"),
        at: at(300),
    }
}

fn deactivate(actor: Actor, expected_version: Option<u64>) -> UserCommand {
    UserCommand::Deactivate {
        actor,
        expected_version,
        at: at(300),
    }
}

// ---------------------------------------------------------------------------------------------
// Register.
// ---------------------------------------------------------------------------------------------

#[test]
fn registering_records_the_registration_and_an_email_verification_request() {
    TestFramework::<User>::with(services())
        .given_no_previous_events()
        .when(register_command())
        .then_expect_events(vec![registered(), verification_requested(TOKEN, at(3600))]);
}

#[test]
fn registering_stores_the_normalised_email() {
    let command = UserCommand::Register {
        user_id: ada_id(),
        email: Email::parse("  Ada@Example.COM ").unwrap(),
        name: name("Ada"),
        role: Role::User,
        password_hash: hash_of(PASSWORD),
        verification: issued(TOKEN, at(3600)),
        at: at(0),
    };

    TestFramework::<User>::with(services())
        .given_no_previous_events()
        .when(command)
        .then_expect_events(vec![registered(), verification_requested(TOKEN, at(3600))]);
}

#[test]
fn registering_an_already_registered_user_is_rejected() {
    given(a_registered_user())
        .when(register_command())
        .then_expect_error(UserError::AlreadyRegistered);
}

#[test]
fn registering_with_an_email_claimed_by_another_user_is_rejected() {
    let registry = InMemoryEmailRegistry::with_claim(EMAIL, other_id());

    TestFramework::<User>::with(services_with_registry(registry))
        .given_no_previous_events()
        .when(register_command())
        .then_expect_error(UserError::EmailTaken);
}

#[test]
fn retrying_a_registration_whose_email_the_same_user_already_claimed_succeeds() {
    let registry = InMemoryEmailRegistry::with_claim(EMAIL, ada_id());

    TestFramework::<User>::with(services_with_registry(registry))
        .given_no_previous_events()
        .when(register_command())
        .then_expect_events(vec![registered(), verification_requested(TOKEN, at(3600))]);
}

#[test]
fn registering_while_the_email_registry_is_down_reports_the_service_as_unavailable() {
    TestFramework::<User>::with(failing_services())
        .given_no_previous_events()
        .when(register_command())
        .then_expect_error(UserError::ServiceUnavailable("registry down".to_owned()));
}

// ---------------------------------------------------------------------------------------------
// Update.
// ---------------------------------------------------------------------------------------------

#[test]
fn changing_ones_own_name_records_an_update_with_the_whole_profile() {
    let changes = UserChanges {
        name: Some(name("Ada Lovelace")),
        ..UserChanges::default()
    };

    given(a_registered_user())
        .when(update(ada(), changes))
        .then_expect_events(vec![UserEvent::Updated {
            name: "Ada Lovelace".to_owned(),
            bio: String::new(),
            updated_at: at(300),
        }]);
}

#[test]
fn changing_only_the_bio_keeps_the_name() {
    let changes = UserChanges {
        bio: Some(bio("Analyst.")),
        ..UserChanges::default()
    };

    given(a_registered_user())
        .when(update(ada(), changes))
        .then_expect_events(vec![UserEvent::Updated {
            name: "Ada".to_owned(),
            bio: "Analyst.".to_owned(),
            updated_at: at(300),
        }]);
}

#[test]
fn an_empty_bio_clears_the_bio() {
    let mut history = a_registered_user();
    history.push(UserEvent::Updated {
        name: "Ada".to_owned(),
        bio: "Analyst.".to_owned(),
        updated_at: at(200),
    });
    let changes = UserChanges {
        bio: Some(bio("")),
        ..UserChanges::default()
    };

    given(history)
        .when(update(ada(), changes))
        .then_expect_events(vec![UserEvent::Updated {
            name: "Ada".to_owned(),
            bio: String::new(),
            updated_at: at(300),
        }]);
}

#[test]
fn an_update_to_the_current_values_records_no_events() {
    let changes = UserChanges {
        name: Some(name("Ada")),
        bio: Some(bio("")),
        role: Some(Role::User),
        status: Some(UserStatus::Active),
    };

    given(a_registered_user())
        .when(update(admin(), changes))
        .then_expect_events(vec![]);
}

#[test]
fn an_update_without_changes_records_no_events() {
    given(a_registered_user())
        .when(update(ada(), UserChanges::default()))
        .then_expect_events(vec![]);
}

#[test]
fn updating_an_unregistered_user_is_not_found() {
    given(vec![])
        .when(update(admin(), UserChanges::default()))
        .then_expect_error(UserError::NotFound);
}

#[test]
fn updating_another_users_profile_is_forbidden() {
    let changes = UserChanges {
        name: Some(name("Mallory")),
        ..UserChanges::default()
    };

    given(a_registered_user())
        .when(update(other_user(), changes))
        .then_expect_error(UserError::Forbidden);
}

#[test]
fn an_admin_may_update_another_users_profile() {
    let changes = UserChanges {
        name: Some(name("Countess")),
        ..UserChanges::default()
    };

    given(a_registered_user())
        .when(update(admin(), changes))
        .then_expect_events(vec![UserEvent::Updated {
            name: "Countess".to_owned(),
            bio: String::new(),
            updated_at: at(300),
        }]);
}

#[test]
fn the_system_actor_may_update_any_profile() {
    let changes = UserChanges {
        name: Some(name("Countess")),
        ..UserChanges::default()
    };

    given(a_registered_user())
        .when(update(Actor::System, changes))
        .then_expect_events(vec![UserEvent::Updated {
            name: "Countess".to_owned(),
            bio: String::new(),
            updated_at: at(300),
        }]);
}

#[test]
fn updating_with_a_stale_expected_version_is_rejected_with_the_current_version() {
    let command = UserCommand::Update {
        actor: ada(),
        expected_version: Some(1),
        changes: UserChanges {
            name: Some(name("Ada Lovelace")),
            ..UserChanges::default()
        },
        at: at(300),
    };

    given(a_registered_user())
        .when(command)
        .then_expect_error(UserError::VersionMismatch { current: 2 });
}

#[test]
fn updating_with_the_current_expected_version_succeeds() {
    let command = UserCommand::Update {
        actor: ada(),
        expected_version: Some(2),
        changes: UserChanges {
            name: Some(name("Ada Lovelace")),
            ..UserChanges::default()
        },
        at: at(300),
    };

    given(a_registered_user())
        .when(command)
        .then_expect_events(vec![UserEvent::Updated {
            name: "Ada Lovelace".to_owned(),
            bio: String::new(),
            updated_at: at(300),
        }]);
}

#[test]
fn a_user_changing_their_own_role_is_forbidden() {
    let changes = UserChanges {
        role: Some(Role::Admin),
        ..UserChanges::default()
    };

    given(a_registered_user())
        .when(update(ada(), changes))
        .then_expect_error(UserError::Forbidden);
}

#[test]
fn a_user_changing_their_own_status_is_forbidden_even_to_the_current_one() {
    let changes = UserChanges {
        status: Some(UserStatus::Active),
        ..UserChanges::default()
    };

    given(a_registered_user())
        .when(update(ada(), changes))
        .then_expect_error(UserError::Forbidden);
}

#[test]
fn an_admin_changing_a_role_records_the_role_change() {
    let changes = UserChanges {
        role: Some(Role::Admin),
        ..UserChanges::default()
    };

    given(a_registered_user())
        .when(update(admin(), changes))
        .then_expect_events(vec![UserEvent::RoleChanged {
            role: Role::Admin,
            changed_at: at(300),
        }]);
}

#[test]
fn an_admin_deactivating_a_user_through_an_update_records_the_deactivation() {
    let changes = UserChanges {
        status: Some(UserStatus::Deactivated),
        ..UserChanges::default()
    };

    given(a_registered_user())
        .when(update(admin(), changes))
        .then_expect_events(vec![UserEvent::Deactivated {
            deactivated_at: at(300),
        }]);
}

#[test]
fn an_update_changing_profile_role_and_status_records_all_of_them_in_order() {
    let changes = UserChanges {
        name: Some(name("Ada Lovelace")),
        bio: None,
        role: Some(Role::Admin),
        status: Some(UserStatus::Deactivated),
    };

    given(a_registered_user())
        .when(update(admin(), changes))
        .then_expect_events(vec![
            UserEvent::Updated {
                name: "Ada Lovelace".to_owned(),
                bio: String::new(),
                updated_at: at(300),
            },
            UserEvent::RoleChanged {
                role: Role::Admin,
                changed_at: at(300),
            },
            UserEvent::Deactivated {
                deactivated_at: at(300),
            },
        ]);
}

#[test]
fn an_admin_reactivating_a_deactivated_user_records_the_reactivation() {
    let changes = UserChanges {
        status: Some(UserStatus::Active),
        ..UserChanges::default()
    };

    given(a_deactivated_user())
        .when(update(admin(), changes))
        .then_expect_events(vec![UserEvent::Reactivated {
            reactivated_at: at(300),
        }]);
}

#[test]
fn reactivating_with_profile_changes_records_the_reactivation_first() {
    let changes = UserChanges {
        name: Some(name("Ada Lovelace")),
        status: Some(UserStatus::Active),
        ..UserChanges::default()
    };

    given(a_deactivated_user())
        .when(update(admin(), changes))
        .then_expect_events(vec![
            UserEvent::Reactivated {
                reactivated_at: at(300),
            },
            UserEvent::Updated {
                name: "Ada Lovelace".to_owned(),
                bio: String::new(),
                updated_at: at(300),
            },
        ]);
}

#[test]
fn a_deactivated_user_cannot_reactivate_themselves() {
    let changes = UserChanges {
        status: Some(UserStatus::Active),
        ..UserChanges::default()
    };

    given(a_deactivated_user())
        .when(update(ada(), changes))
        .then_expect_error(UserError::Forbidden);
}

#[test]
fn a_deactivated_user_updating_their_profile_is_rejected() {
    let changes = UserChanges {
        name: Some(name("Ada Lovelace")),
        ..UserChanges::default()
    };

    given(a_deactivated_user())
        .when(update(ada(), changes))
        .then_expect_error(UserError::Deactivated);
}

#[test]
fn an_admin_editing_a_deactivated_profile_without_reactivating_it_is_rejected() {
    let changes = UserChanges {
        name: Some(name("Ada Lovelace")),
        ..UserChanges::default()
    };

    given(a_deactivated_user())
        .when(update(admin(), changes))
        .then_expect_error(UserError::Deactivated);
}

#[test]
fn deactivating_an_already_deactivated_user_through_an_update_is_rejected() {
    let changes = UserChanges {
        status: Some(UserStatus::Deactivated),
        ..UserChanges::default()
    };

    given(a_deactivated_user())
        .when(update(admin(), changes))
        .then_expect_error(UserError::Deactivated);
}

// ---------------------------------------------------------------------------------------------
// RequestEmailVerification.
// ---------------------------------------------------------------------------------------------

#[test]
fn requesting_email_verification_records_a_new_token_for_the_users_email() {
    given(a_registered_user())
        .when(request_verification(ada()))
        .then_expect_events(vec![verification_requested_at(
            "verify-token-2",
            at(7200),
            at(300),
        )]);
}

#[test]
fn an_admin_may_request_email_verification_for_a_user() {
    given(a_registered_user())
        .when(request_verification(admin()))
        .then_expect_events(vec![verification_requested_at(
            "verify-token-2",
            at(7200),
            at(300),
        )]);
}

#[test]
fn requesting_email_verification_for_another_user_is_forbidden() {
    given(a_registered_user())
        .when(request_verification(other_user()))
        .then_expect_error(UserError::Forbidden);
}

#[test]
fn requesting_email_verification_for_an_unregistered_user_is_not_found() {
    given(vec![])
        .when(request_verification(admin()))
        .then_expect_error(UserError::NotFound);
}

#[test]
fn requesting_email_verification_for_a_deactivated_user_is_rejected() {
    given(a_deactivated_user())
        .when(request_verification(ada()))
        .then_expect_error(UserError::Deactivated);
}

#[test]
fn requesting_email_verification_once_verified_is_rejected() {
    given(a_verified_user())
        .when(request_verification(ada()))
        .then_expect_error(UserError::AlreadyVerified);
}

// ---------------------------------------------------------------------------------------------
// VerifyEmail.
// ---------------------------------------------------------------------------------------------

#[test]
fn verifying_with_the_pending_token_before_it_expires_verifies_the_email() {
    given(a_registered_user())
        .when(verify(ada(), TOKEN, at(60)))
        .then_expect_events(vec![email_verified()]);
}

#[test]
fn verifying_with_a_wrong_token_is_rejected() {
    given(a_registered_user())
        .when(verify(ada(), "verify-token-X", at(60)))
        .then_expect_error(UserError::InvalidVerificationToken);
}

#[test]
fn verifying_with_a_prefix_of_the_token_is_rejected() {
    given(a_registered_user())
        .when(verify(ada(), "verify-token", at(60)))
        .then_expect_error(UserError::InvalidVerificationToken);
}

#[test]
fn verifying_at_the_moment_the_token_expires_is_rejected() {
    given(a_registered_user())
        .when(verify(ada(), TOKEN, at(3600)))
        .then_expect_error(UserError::InvalidVerificationToken);
}

#[test]
fn verifying_after_the_token_expired_is_rejected() {
    given(a_registered_user())
        .when(verify(ada(), TOKEN, at(86_400)))
        .then_expect_error(UserError::InvalidVerificationToken);
}

#[test]
fn a_token_superseded_by_a_newer_request_no_longer_verifies() {
    let mut history = a_registered_user();
    history.push(verification_requested("verify-token-2", at(7200)));

    given(history)
        .when(verify(ada(), TOKEN, at(60)))
        .then_expect_error(UserError::InvalidVerificationToken);
}

#[test]
fn verifying_without_a_pending_request_is_rejected() {
    given(vec![registered()])
        .when(verify(ada(), TOKEN, at(60)))
        .then_expect_error(UserError::InvalidVerificationToken);
}

#[test]
fn verifying_an_already_verified_email_is_rejected_like_a_used_token() {
    given(a_verified_user())
        .when(verify(ada(), TOKEN, at(90)))
        .then_expect_error(UserError::InvalidVerificationToken);
}

#[test]
fn an_admin_cannot_verify_a_users_email_even_with_the_token() {
    given(a_registered_user())
        .when(verify(admin(), TOKEN, at(60)))
        .then_expect_error(UserError::Forbidden);
}

#[test]
fn another_user_cannot_verify_a_users_email() {
    given(a_registered_user())
        .when(verify(other_user(), TOKEN, at(60)))
        .then_expect_error(UserError::Forbidden);
}

#[test]
fn verifying_the_email_of_an_unregistered_user_is_not_found() {
    given(vec![])
        .when(verify(ada(), TOKEN, at(60)))
        .then_expect_error(UserError::NotFound);
}

#[test]
fn a_deactivated_user_cannot_verify_their_email() {
    given(a_deactivated_user())
        .when(verify(ada(), TOKEN, at(60)))
        .then_expect_error(UserError::Deactivated);
}

// ---------------------------------------------------------------------------------------------
// Tokens stay out of the log; resends are limited.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_verification_request_records_the_tokens_nonce_and_hash_but_no_token() {
    let json = serde_json::to_value(verification_requested(TOKEN, at(3600))).unwrap();
    let fields = json["user.email_verification_requested"]
        .as_object()
        .unwrap();

    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "email",
            "expires_at",
            "requested_at",
            "token_hash",
            "token_nonce"
        ]
    );
}

#[test]
fn a_token_stored_in_plaintext_by_an_old_event_no_longer_verifies() {
    let legacy: UserEvent = serde_json::from_value(serde_json::json!({
        "user.email_verification_requested": {
            "email": EMAIL, "verification_token": "public-token",
            "expires_at": at(3600), "requested_at": at(0)
        }
    }))
    .unwrap();

    given(vec![registered(), legacy])
        .when(verify(ada(), "public-token", at(60)))
        .then_expect_error(UserError::InvalidVerificationToken);
}

fn resends(count: i64) -> Vec<UserEvent> {
    let mut history = a_registered_user();
    for i in 0..count {
        history.push(verification_requested_at(
            &format!("resend-{i}"),
            at(86_400),
            at(100 * (i + 1)),
        ));
    }
    history
}

#[test]
fn the_welcome_does_not_count_against_the_hourly_resend_limit() {
    given(resends(REQUESTS_PER_HOUR as i64 - 1))
        .when(request_verification(ada()))
        .then_expect_events(vec![verification_requested_at(
            "verify-token-2",
            at(7200),
            at(300),
        )]);
}

#[test]
fn a_sixth_verification_email_within_an_hour_is_rate_limited_until_the_first_leaves_the_hour() {
    let command = UserCommand::RequestEmailVerification {
        actor: ada(),
        token: issued("verify-token-6", at(7200)),
        at: at(600),
    };

    given(resends(REQUESTS_PER_HOUR as i64))
        .when(command)
        .then_expect_error(UserError::TooManyRequests {
            retry_after_secs: 3600 - 500,
        });
}

#[test]
fn a_verification_email_an_hour_after_the_oldest_resend_is_allowed_again() {
    let command = UserCommand::RequestEmailVerification {
        actor: ada(),
        token: issued("verify-token-6", at(7200)),
        at: at(3700),
    };

    given(resends(REQUESTS_PER_HOUR as i64))
        .when(command)
        .then_expect_events(vec![verification_requested_at(
            "verify-token-6",
            at(7200),
            at(3700),
        )]);
}

// ---------------------------------------------------------------------------------------------
// Password reset.
// ---------------------------------------------------------------------------------------------

fn request_reset(hash: &str, moment: DateTime<Utc>) -> UserCommand {
    UserCommand::RequestPasswordReset {
        token: issued(hash, moment + chrono::Duration::hours(1)),
        at: moment,
    }
}

fn reset(hash: &str, moment: DateTime<Utc>) -> UserCommand {
    UserCommand::ResetPassword {
        token_hash: hash.to_owned(),
        new_password_hash: hash_of("a reset password"),
        at: moment,
    }
}

fn reset_done(moment: DateTime<Utc>) -> UserEvent {
    UserEvent::PasswordChanged {
        password_hash: hash_of("a reset password"),
        changed_at: moment,
    }
}

#[test]
fn requesting_a_password_reset_records_a_token_hash_for_the_users_email() {
    given(a_registered_user())
        .when(request_reset("reset-1", at(100)))
        .then_expect_events(vec![reset_requested("reset-1", at(100))]);
}

#[test]
fn a_deactivated_user_gets_no_password_reset() {
    given(a_deactivated_user())
        .when(request_reset("reset-1", at(200)))
        .then_expect_error(UserError::Deactivated);
}

#[test]
fn a_password_reset_for_an_unregistered_user_is_not_found() {
    given(vec![])
        .when(request_reset("reset-1", at(100)))
        .then_expect_error(UserError::NotFound);
}

#[test]
fn a_sixth_password_reset_within_an_hour_is_rate_limited() {
    let mut history = a_registered_user();
    for i in 0..REQUESTS_PER_HOUR as i64 {
        history.push(reset_requested(&format!("reset-{i}"), at(10 * (i + 1))));
    }

    given(history)
        .when(request_reset("reset-6", at(100)))
        .then_expect_error(UserError::TooManyRequests {
            retry_after_secs: 3600 - 90,
        });
}

#[test]
fn the_newest_reset_token_sets_the_new_password() {
    let mut history = a_registered_user();
    history.push(reset_requested("reset-1", at(100)));

    given(history)
        .when(reset("reset-1", at(200)))
        .then_expect_events(vec![reset_done(at(200))]);
}

#[test]
fn an_older_reset_token_stops_working_when_a_newer_one_is_requested() {
    let mut history = a_registered_user();
    history.push(reset_requested("reset-1", at(100)));
    history.push(reset_requested("reset-2", at(150)));

    given(history)
        .when(reset("reset-1", at(200)))
        .then_expect_error(UserError::InvalidResetToken);
}

#[test]
fn a_used_reset_token_does_not_work_twice() {
    let mut history = a_registered_user();
    history.push(reset_requested("reset-1", at(100)));
    history.push(reset_done(at(200)));

    given(history)
        .when(reset("reset-1", at(250)))
        .then_expect_error(UserError::InvalidResetToken);
}

#[test]
fn a_reset_token_expires_after_an_hour() {
    let mut history = a_registered_user();
    history.push(reset_requested("reset-1", at(100)));

    given(history)
        .when(reset("reset-1", at(100 + 3600)))
        .then_expect_error(UserError::InvalidResetToken);
}

#[test]
fn a_reset_token_without_any_request_is_rejected() {
    given(a_registered_user())
        .when(reset(TOKEN, at(100)))
        .then_expect_error(UserError::InvalidResetToken);
}

#[test]
fn a_deactivated_users_reset_token_is_rejected_like_a_wrong_one() {
    let mut history = a_registered_user();
    history.push(reset_requested("reset-1", at(100)));
    history.push(deactivated());

    given(history)
        .when(reset("reset-1", at(130)))
        .then_expect_error(UserError::InvalidResetToken);
}

#[test]
fn a_password_change_with_the_current_password_retires_a_pending_reset_token() {
    let mut history = a_registered_user();
    history.push(reset_requested("reset-1", at(100)));
    history.push(UserEvent::PasswordChanged {
        password_hash: hash_of("changed by hand"),
        changed_at: at(110),
    });

    given(history)
        .when(reset("reset-1", at(120)))
        .then_expect_error(UserError::InvalidResetToken);
}

// ---------------------------------------------------------------------------------------------
// ChangePassword.
// ---------------------------------------------------------------------------------------------

#[test]
fn changing_the_password_with_the_current_one_records_the_new_hash() {
    given(a_registered_user())
        .when(change_password(ada(), PASSWORD))
        .then_expect_events(vec![UserEvent::PasswordChanged {
            password_hash: hash_of("a brand new password"),
            changed_at: at(300),
        }]);
}

#[test]
fn changing_the_password_with_a_wrong_current_password_is_rejected() {
    given(a_registered_user())
        .when(change_password(ada(), "not my password"))
        .then_expect_error(UserError::WrongPassword);
}

#[test]
fn the_previous_password_no_longer_authorises_a_change_after_a_change() {
    let mut history = a_registered_user();
    history.push(UserEvent::PasswordChanged {
        password_hash: hash_of("second password"),
        changed_at: at(200),
    });

    given(history)
        .when(change_password(ada(), PASSWORD))
        .then_expect_error(UserError::WrongPassword);
}

#[test]
fn an_admin_cannot_change_another_users_password() {
    given(a_registered_user())
        .when(change_password(admin(), PASSWORD))
        .then_expect_error(UserError::Forbidden);
}

#[test]
fn the_system_actor_cannot_change_a_users_password() {
    given(a_registered_user())
        .when(change_password(Actor::System, PASSWORD))
        .then_expect_error(UserError::Forbidden);
}

#[test]
fn changing_the_password_of_an_unregistered_user_is_not_found() {
    given(vec![])
        .when(change_password(ada(), PASSWORD))
        .then_expect_error(UserError::NotFound);
}

#[test]
fn a_deactivated_user_cannot_change_their_password() {
    given(a_deactivated_user())
        .when(change_password(ada(), PASSWORD))
        .then_expect_error(UserError::Deactivated);
}

#[test]
fn changing_the_password_while_the_verifier_is_down_reports_the_service_as_unavailable() {
    TestFramework::<User>::with(failing_services())
        .given(a_registered_user())
        .when(change_password(ada(), PASSWORD))
        .then_expect_error(UserError::ServiceUnavailable("hasher down".to_owned()));
}

// ---------------------------------------------------------------------------------------------
// Deactivate.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_user_may_deactivate_themselves() {
    given(a_registered_user())
        .when(deactivate(ada(), None))
        .then_expect_events(vec![UserEvent::Deactivated {
            deactivated_at: at(300),
        }]);
}

#[test]
fn an_admin_may_deactivate_a_user_at_the_current_version() {
    given(a_registered_user())
        .when(deactivate(admin(), Some(2)))
        .then_expect_events(vec![UserEvent::Deactivated {
            deactivated_at: at(300),
        }]);
}

#[test]
fn deactivating_another_user_is_forbidden() {
    given(a_registered_user())
        .when(deactivate(other_user(), None))
        .then_expect_error(UserError::Forbidden);
}

#[test]
fn deactivating_an_unregistered_user_is_not_found() {
    given(vec![])
        .when(deactivate(admin(), None))
        .then_expect_error(UserError::NotFound);
}

#[test]
fn deactivating_with_a_stale_expected_version_is_rejected() {
    given(a_registered_user())
        .when(deactivate(ada(), Some(5)))
        .then_expect_error(UserError::VersionMismatch { current: 2 });
}

#[test]
fn deactivating_an_already_deactivated_user_is_rejected() {
    given(a_deactivated_user())
        .when(deactivate(admin(), None))
        .then_expect_error(UserError::Deactivated);
}

// ---------------------------------------------------------------------------------------------
// Errors, replay and the stored form.
// ---------------------------------------------------------------------------------------------

async fn handle(user: &mut User, services: &UserServices, command: UserCommand) -> Vec<UserEvent> {
    let sink = EventSink::default();
    user.handle(command, services, &sink)
        .await
        .expect("command is accepted");
    sink.collect().await
}

#[tokio::test]
async fn replaying_the_recorded_events_rebuilds_the_same_user() {
    let services = services();
    let mut live = User::default();
    let mut recorded = Vec::new();

    for command in [
        register_command(),
        update(
            ada(),
            UserChanges {
                name: Some(name("Ada Lovelace")),
                bio: Some(bio("Analyst.")),
                ..UserChanges::default()
            },
        ),
        request_verification(admin()),
        verify(ada(), "verify-token-2", at(300)),
        change_password(ada(), PASSWORD),
        update(
            admin(),
            UserChanges {
                role: Some(Role::Admin),
                status: Some(UserStatus::Deactivated),
                ..UserChanges::default()
            },
        ),
        update(
            admin(),
            UserChanges {
                status: Some(UserStatus::Active),
                ..UserChanges::default()
            },
        ),
    ] {
        recorded.extend(handle(&mut live, &services, command).await);
    }
    let mut replayed = User::default();
    for event in recorded.clone() {
        replayed.apply(event);
    }

    assert_eq!(replayed, live);
    assert_eq!(replayed.version, recorded.len() as u64);
    assert_eq!(recorded.len(), 9);
    assert_eq!(replayed.id, Some(ada_id()));
    assert_eq!(replayed.name, "Ada Lovelace");
    assert_eq!(replayed.bio, "Analyst.");
    assert_eq!(replayed.role, Role::Admin);
    assert_eq!(replayed.status, UserStatus::Active);
    assert!(replayed.email_verified);
    assert_eq!(replayed.pending_verification, None);
    assert_eq!(replayed.password_hash, hash_of("a brand new password"));
    assert_eq!(replayed.created_at, Some(at(0)));
    assert_eq!(replayed.updated_at, Some(at(300)));
}

#[test]
fn registration_leaves_a_pending_verification_and_version_two() {
    let mut user = User::default();

    for event in a_registered_user() {
        user.apply(event);
    }

    assert_eq!(user.version, 2);
    assert!(!user.email_verified);
    assert_eq!(
        user.pending_verification,
        Some(PendingToken {
            token_hash: Some(TOKEN.to_owned()),
            expires_at: at(3600),
        })
    );
}

#[test]
fn each_user_event_is_stored_under_its_public_type_name() {
    let events = vec![
        registered(),
        UserEvent::Updated {
            name: "Ada".to_owned(),
            bio: "Analyst.".to_owned(),
            updated_at: at(1),
        },
        UserEvent::RoleChanged {
            role: Role::Admin,
            changed_at: at(2),
        },
        verification_requested(TOKEN, at(3600)),
        reset_requested("reset-1", at(5)),
        email_verified(),
        UserEvent::PasswordChanged {
            password_hash: hash_of("x"),
            changed_at: at(3),
        },
        deactivated(),
        UserEvent::Reactivated {
            reactivated_at: at(4),
        },
    ];
    let mut seen = HashSet::new();

    for event in events {
        let json = serde_json::to_value(&event).unwrap();
        let object = json.as_object().expect("an event serialises as an object");
        let keys: Vec<&String> = object.keys().collect();
        assert_eq!(keys, vec![&event.event_type()], "outer key of {event:?}");
        assert!(event.event_type().starts_with("user."));
        assert_eq!(event.event_version(), crate::EVENT_VERSION);
        let back: UserEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        seen.insert(event.event_type());
    }

    assert_eq!(seen.len(), 9, "every variant is covered exactly once");
}
