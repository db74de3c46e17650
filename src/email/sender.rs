//! The sender worker: claims due outbox rows, renders each message (deriving its link's token
//! at that moment), hands it to the mailer and records the outcome. Transient failures retry
//! with exponential backoff from 1 s, capped at 1 min, for 24 h; a permanent refusal (5xx)
//! fails that message alone.
//!
//! One instance sends at a time (an advisory-lock leader like the projectors); the claim's
//! `SKIP LOCKED` and lease would also keep two senders apart. A delivered row is `sent` and is
//! never claimed again, so a restart re-sends nothing that was delivered; the one window left
//! is a crash between the server's 250 and the `sent` update, where SMTP allows no better than
//! at-least-once (the Message-ID is the same, so clients can collapse the copy).

use std::sync::Arc;
use std::time::Duration;

use aggregates::UserId;
use chrono::Utc;
use futures::StreamExt;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tracing::Instrument;

use crate::email::mailer::{Mailer, Outgoing, SendError};
use crate::email::store::{self, Claimed};
use crate::email::templates::{render, EmailKind};
use crate::email::tokens::TokenKey;
use crate::telemetry::{propagation, spans};

/// Messages on their way at once, within lettre's pool of 10 connections (which it reuses).
const IN_FLIGHT: usize = 8;
/// Rows claimed per step: no more than are sent at once, so none waits in a claimed batch
/// while its lease runs out and another sender could claim it too.
const BATCH: i64 = IN_FLIGHT as i64;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// The longest the sender sleeps without a wake-up (new rows notify it at once).
const MAX_WAIT: Duration = Duration::from_secs(5);

pub struct Sender {
    pool: PgPool,
    database_url: String,
    mailer: Mailer,
    tokens: Arc<TokenKey>,
    app_base_url: String,
}

/// The delay before attempt `attempts + 1`: 1 s, 2 s, 4 s, ... capped at a minute.
pub fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(6);
    (FIRST_RETRY * 2u32.pow(doublings)).min(MAX_RETRY)
}

impl Sender {
    pub fn new(
        pool: PgPool,
        database_url: String,
        mailer: Mailer,
        tokens: Arc<TokenKey>,
        app_base_url: String,
    ) -> Self {
        Self {
            pool,
            database_url,
            mailer,
            tokens,
            app_base_url,
        }
    }

    /// Sends one batch of due messages; returns how many it claimed (0 when none was due).
    pub async fn step(&self) -> Result<usize, sqlx::Error> {
        let batch = store::claim(&self.pool, BATCH).await?;
        let claimed = batch.len();
        futures::stream::iter(batch)
            .for_each_concurrent(IN_FLIGHT, |message| self.deliver(message))
            .await;
        Ok(claimed)
    }

    async fn deliver(&self, message: Claimed) {
        let span = spans::email_send(
            message.traceparent.as_deref(),
            &message.kind,
            message.attempts,
        );
        let attempted = self.attempt(&message).instrument(span.clone()).await;
        if attempted.is_err() && propagation::enabled() {
            span.record("otel.status_code", "error");
        }
        let recorded = match attempted {
            Ok(()) => {
                metrics::counter!("chronicle_emails_total", "outcome" => "sent").increment(1);
                store::mark_sent(&self.pool, message.id).await
            }
            Err(SendError::Permanent(error)) => {
                tracing::warn!(email = %message.id, kind = message.kind, %error, "email refused; marked failed");
                metrics::counter!("chronicle_emails_total", "outcome" => "failed").increment(1);
                store::mark_failed(&self.pool, message.id, &error).await
            }
            Err(SendError::Transient(error)) => {
                let next = Utc::now()
                    + chrono::Duration::from_std(backoff(message.attempts))
                        .unwrap_or_else(|_| chrono::Duration::seconds(60));
                if next > message.retry_until {
                    metrics::counter!("chronicle_emails_total", "outcome" => "failed").increment(1);
                    let error = format!("gave up after 24 h: {error}");
                    store::mark_failed(&self.pool, message.id, &error).await
                } else {
                    tracing::info!(email = %message.id, attempts = message.attempts, %error, "email not sent yet; will retry");
                    store::reschedule(&self.pool, message.id, &error, next).await
                }
            }
        };
        if let Err(e) = recorded {
            // The lease brings the row back; at worst a delivered message goes out twice.
            tracing::error!(email = %message.id, error = %e, "cannot record an email's outcome");
        }
    }

    async fn attempt(&self, message: &Claimed) -> Result<(), SendError> {
        let kind = EmailKind::parse(&message.kind)
            .ok_or_else(|| SendError::Permanent(format!("unknown kind {}", message.kind)))?;
        let user = UserId::from_uuid(message.user_id);
        let link = match (kind.token_kind(), message.token_nonce.as_deref()) {
            (Some(token_kind), Some(nonce)) => {
                let token = self.tokens.token(token_kind, user, nonce);
                Some(match kind {
                    EmailKind::PasswordReset => {
                        format!("{}/reset-password?token={token}", self.app_base_url)
                    }
                    _ => format!(
                        "{}/verify-email?user={user}&token={token}",
                        self.app_base_url
                    ),
                })
            }
            (Some(_), None) => {
                return Err(SendError::Permanent(
                    "the message has no token nonce".into(),
                ))
            }
            (None, _) => None,
        };
        let body = render(kind, &message.recipient, link.as_deref())
            .map_err(|e| SendError::Permanent(format!("rendering: {e}")))?;
        self.mailer
            .send(Outgoing {
                to: &message.recipient,
                subject: &message.subject,
                message_id: &message.message_id,
                body,
            })
            .await
    }

    /// Sends until the task is dropped, while this instance leads.
    pub async fn run(self: Arc<Self>) {
        let terms = projections::leader::TermLog::default();
        loop {
            let mut leadership =
                projections::leader::acquire_unfenced(&self.database_url, "email-sender", &terms)
                    .await;
            // Sends in flight finish and record their outcome when leadership is lost: dropping
            // one that the server already accepted would send it again once its lease ran out.
            leadership
                .hold_winding_down(|stop| self.send_while_leading(stop))
                .await;
            leadership.end(&terms).await;
        }
    }

    /// Claims and sends until told to stop; a step under way is finished first.
    async fn send_while_leading(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut listener = self.listen().await;
        while !*stop.borrow() {
            match self.step().await {
                Ok(0) => {
                    tokio::select! {
                        () = self.idle(&mut listener) => {}
                        _ = stop.changed() => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "email sender cannot reach the database; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(FIRST_RETRY) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen("chronicle_emails").await.ok()?;
        Some(listener)
    }

    /// Waits for new rows (notified at their commit) or the next retry, whichever is first.
    async fn idle(&self, listener: &mut Option<PgListener>) {
        let wait = match store::next_due(&self.pool).await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(10), MAX_WAIT),
            _ => MAX_WAIT,
        };
        match listener {
            Some(l) => {
                if let Ok(Err(e)) = tokio::time::timeout(wait, l.recv()).await {
                    tracing::warn!(error = %e, "email sender lost its notifications; polling");
                    *listener = None;
                }
            }
            None => {
                tokio::time::sleep(wait).await;
                *listener = self.listen().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_one_second_doubling_up_to_a_minute() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();

        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
