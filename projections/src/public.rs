//! The one function that turns a stored event into its public form. NATS messages, webhooks,
//! `/events` and `/history` all go through it, so a secret removed here is removed everywhere.

use serde_json::{json, Map, Value};

use crate::log::StoredEvent;

/// Fields that hold secrets, per event type. A new event type with a secret must be listed here
/// (the tests check every type the aggregates emit).
fn secret_fields(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "user.registered" | "user.password_changed" => &["password_hash"],
        // `verification_token` is the plaintext of events written before tokens left the log.
        "user.email_verification_requested" => &["token_nonce", "token_hash", "verification_token"],
        "user.password_reset_requested" => &["token_nonce", "token_hash"],
        "session.started" | "session.refreshed" => &["refresh_token_hash"],
        _ => &[],
    }
}

/// The event's data: the payload's inner object (payloads are `{"<type>": {...}}`) without
/// secrets.
pub fn public_data(event_type: &str, payload: &Value) -> Value {
    let inner = match payload {
        Value::Object(outer) if outer.len() == 1 => {
            outer.values().next().cloned().unwrap_or(Value::Null)
        }
        other => other.clone(),
    };
    match inner {
        Value::Object(mut fields) => {
            for secret in secret_fields(event_type) {
                fields.remove(*secret);
            }
            Value::Object(fields)
        }
        other => other,
    }
}

/// `{id, type, aggregate_type, aggregate_id, aggregate_version, position, recorded_at, data,
/// metadata: {correlation_id, actor_id}}`.
pub fn public_event(event: &StoredEvent) -> Value {
    let mut metadata = Map::new();
    for key in ["correlation_id", "actor_id"] {
        metadata.insert(
            key.to_owned(),
            event.metadata.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    json!({
        "id": event.event_id,
        "type": event.event_type,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "aggregate_version": event.sequence,
        "position": event.position.to_string(),
        "recorded_at": event.recorded_at,
        "data": public_data(&event.event_type, &event.payload),
        "metadata": Value::Object(metadata),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aggregates::session::SessionEvent;
    use aggregates::user::UserEvent;
    use aggregates::{Role, SessionId, UserId};
    use chrono::Utc;

    #[test]
    fn secrets_of_every_event_that_carries_one_are_removed() {
        let now = Utc::now();
        let user = UserId::from_uuid(uuid::Uuid::now_v7());
        let events = vec![
            serde_json::to_value(UserEvent::Registered {
                user_id: user,
                email: "a@b.c".into(),
                name: "A".into(),
                role: Role::User,
                password_hash: "$argon2id$secret".into(),
                registered_at: now,
            })
            .unwrap(),
            serde_json::to_value(UserEvent::PasswordChanged {
                password_hash: "$argon2id$secret".into(),
                changed_at: now,
            })
            .unwrap(),
            serde_json::to_value(UserEvent::EmailVerificationRequested {
                email: "a@b.c".into(),
                token_nonce: Some("secret-nonce".into()),
                token_hash: Some("secret-hash".into()),
                expires_at: now,
                requested_at: now,
            })
            .unwrap(),
            serde_json::to_value(UserEvent::PasswordResetRequested {
                email: "a@b.c".into(),
                token_nonce: "secret-nonce".into(),
                token_hash: "secret-hash".into(),
                expires_at: now,
                requested_at: now,
            })
            .unwrap(),
            // The stored shape of verification requests from before tokens left the log.
            json!({"user.email_verification_requested": {
                "email": "a@b.c", "verification_token": "secret-token",
                "expires_at": now, "requested_at": now}}),
            serde_json::to_value(SessionEvent::Started {
                session_id: SessionId::from_uuid(uuid::Uuid::now_v7()),
                user_id: user,
                role: Role::User,
                refresh_token_hash: "secret".into(),
                ip: None,
                user_agent: None,
                expires_at: now,
                started_at: now,
            })
            .unwrap(),
            serde_json::to_value(SessionEvent::Refreshed {
                refresh_token_hash: "secret".into(),
                expires_at: now,
                refreshed_at: now,
                within_grace: true,
            })
            .unwrap(),
        ];

        for payload in events {
            let event_type = payload.as_object().unwrap().keys().next().unwrap().clone();
            let data = public_data(&event_type, &payload);
            let text = data.to_string();
            assert!(!text.contains("secret"), "{event_type}: {text}");
            assert!(data.is_object());
        }
    }

    #[test]
    fn the_public_form_unwraps_the_payload_and_keeps_the_correlation_id() {
        let event = StoredEvent {
            event_id: uuid::Uuid::now_v7(),
            position: crate::Position::new(5, 9),
            aggregate_type: "post".into(),
            aggregate_id: "p1".into(),
            sequence: 3,
            event_type: "post.published".into(),
            event_version: "1.0".into(),
            payload: json!({"post.published": {"published_at": "2026-01-01T00:00:00Z"}}),
            metadata: json!({"correlation_id": "req-1", "actor_id": "u1", "internal": "x"}),
            recorded_at: Utc::now(),
        };

        let public = public_event(&event);

        assert_eq!(public["type"], "post.published");
        assert_eq!(public["position"], "5.9");
        assert_eq!(public["aggregate_version"], 3);
        assert_eq!(public["data"]["published_at"], "2026-01-01T00:00:00Z");
        assert_eq!(
            public["metadata"],
            json!({"correlation_id": "req-1", "actor_id": "u1"})
        );
    }
}
