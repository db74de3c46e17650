//! The outbox's writer: a reader of the event log (run by the projector runner, with its
//! checkpoint and leadership) that turns the events asking for email into outbox rows.
//!
//! Why a log reader rather than rows written by the command: the commands append through
//! cqrs-es, whose transaction cannot take other writes, and the log is the only source of
//! truth: whatever is in it gets its email (a 2xx command's events are in it), whatever is
//! not (a message someone else publishes on NATS) gets none. The rows and the checkpoint
//! commit together, so a crash neither loses nor doubles a message.

use aggregates::user::UserEvent;
use async_trait::async_trait;
use projections::log::StoredEvent;
use projections::projector::{ProjectionError, Projector};
use sqlx::PgConnection;

use crate::email::templates::EmailKind;

pub const NAME: &str = "email_outbox";

pub struct EmailOutbox {
    /// The right-hand side of Message-IDs: the domain of `MAIL_FROM`.
    message_domain: String,
}

impl EmailOutbox {
    pub fn new(mail_from: &str) -> Self {
        let address = mail_from
            .rsplit_once('<')
            .map_or(mail_from, |(_, rest)| rest.trim_end_matches('>'));
        let message_domain = address
            .rsplit_once('@')
            .map_or("localhost", |(_, domain)| domain)
            .trim()
            .to_owned();
        Self { message_domain }
    }

    async fn enqueue(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
        user_id: uuid::Uuid,
        kind: EmailKind,
        recipient: &str,
        token: Option<(&str, Option<&str>)>,
    ) -> Result<(), sqlx::Error> {
        let id = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO email_outbox
                 (id, event_id, kind, user_id, recipient, subject, token_nonce, token_hash, message_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (event_id, kind) DO NOTHING",
        )
        .bind(id)
        .bind(event.event_id)
        .bind(kind.as_str())
        .bind(user_id)
        .bind(recipient)
        .bind(kind.subject())
        .bind(token.map(|(nonce, _)| nonce))
        .bind(token.and_then(|(_, hash)| hash))
        .bind(format!("<{}@{}>", id.simple(), self.message_domain))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Projector for EmailOutbox {
    fn name(&self) -> &'static str {
        NAME
    }

    /// None: emptying the outbox and replaying the log would mail everyone again. The runner
    /// is not in `projections::all_projectors`, so no reset or rebuild reaches it.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn handles(&self, event: &StoredEvent) -> bool {
        event.aggregate_type == "user"
            && matches!(
                event.event_type.as_str(),
                "user.registered"
                    | "user.email_verification_requested"
                    | "user.password_reset_requested"
                    | "user.password_changed"
            )
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for event in events.iter().filter(|e| self.handles(e)) {
            let user_event: UserEvent = serde_json::from_value(event.payload.clone())
                .map_err(|e| ProjectionError::bad_event(event, e))?;
            let user_id: uuid::Uuid = event
                .aggregate_id
                .parse()
                .map_err(|e| ProjectionError::bad_event(event, e))?;
            match user_event {
                UserEvent::Registered { email, .. } => {
                    sqlx::query(
                        "INSERT INTO email_recipients (user_id, email) VALUES ($1, $2)
                         ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email",
                    )
                    .bind(user_id)
                    .bind(&email)
                    .execute(&mut *conn)
                    .await?;
                }
                UserEvent::EmailVerificationRequested {
                    email,
                    token_nonce: Some(nonce),
                    ..
                } => {
                    // Register appends user.registered and this request as sequences 1 and 2:
                    // that request is the welcome, any later one a resend.
                    let kind = if event.sequence == 2 {
                        EmailKind::Welcome
                    } else {
                        EmailKind::Verification
                    };
                    self.enqueue(conn, event, user_id, kind, &email, Some((&nonce, None)))
                        .await?;
                }
                UserEvent::PasswordResetRequested {
                    email,
                    token_nonce,
                    token_hash,
                    ..
                } => {
                    self.enqueue(
                        conn,
                        event,
                        user_id,
                        EmailKind::PasswordReset,
                        &email,
                        Some((&token_nonce, Some(&token_hash))),
                    )
                    .await?;
                }
                UserEvent::PasswordChanged { .. } => {
                    let recipient: Option<String> = sqlx::query_scalar(
                        "SELECT email FROM email_recipients WHERE user_id = $1
                         UNION ALL SELECT email FROM users_view WHERE id = $1
                         LIMIT 1",
                    )
                    .bind(user_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                    match recipient {
                        Some(to) => {
                            self.enqueue(
                                conn,
                                event,
                                user_id,
                                EmailKind::PasswordChanged,
                                &to,
                                None,
                            )
                            .await?
                        }
                        None => tracing::warn!(
                            user = %user_id,
                            "no address known for a password change notice; not sent"
                        ),
                    }
                }
                // Requests stored with a plaintext token predate email: nothing to send.
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_use_the_domain_of_mail_from() {
        assert_eq!(
            EmailOutbox::new("Chronicle <no-reply@mail.example.com>").message_domain,
            "mail.example.com"
        );
        assert_eq!(
            EmailOutbox::new("bare@example.org").message_domain,
            "example.org"
        );
    }
}
