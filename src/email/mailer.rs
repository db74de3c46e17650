//! Where rendered messages go: an SMTP server through lettre, or (development without
//! `SMTP_URL`) the log.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Config, Environment};
use crate::email::templates::Rendered;

/// How long one SMTP exchange may take before the attempt counts as failed and is retried.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server refused for good (5xx), or the message cannot be built (a bad address):
    /// retrying would not help.
    #[error("{0}")]
    Permanent(String),
    /// Connection refused, timeouts, 4xx: worth another attempt.
    #[error("{0}")]
    Transient(String),
}

/// One outgoing message: the outbox row's addressing and the rendered parts.
pub struct Outgoing<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    pub message_id: &'a str,
    pub body: Rendered,
}

pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// Development without `SMTP_URL`: the message, link included, goes to the log.
    Log,
}

impl Mailer {
    /// `None` when nothing may be sent: production (and tests) without `SMTP_URL` keep the
    /// messages pending until it is set.
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        let settings = &config.email;
        let from: Mailbox = settings
            .mail_from
            .parse()
            .map_err(|e| format!("MAIL_FROM: {e}"))?;
        match &settings.smtp_url {
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| format!("SMTP_URL: {e}"))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                Ok(Some(Mailer::Smtp { transport, from }))
            }
            None if config.environment == Environment::Development => Ok(Some(Mailer::Log)),
            None => Ok(None),
        }
    }

    pub async fn send(&self, outgoing: Outgoing<'_>) -> Result<(), SendError> {
        match self {
            Mailer::Smtp { transport, from } => {
                let message = build(from, &outgoing)?;
                transport.send(message).await.map(|_| ()).map_err(classify)
            }
            Mailer::Log => {
                // The one place a token may reach a log (API.md): development without SMTP.
                tracing::info!(
                    to = outgoing.to,
                    subject = outgoing.subject,
                    message_id = outgoing.message_id,
                    text = %outgoing.body.text,
                    "email (SMTP_URL is not set: development writes emails to the log)"
                );
                Ok(())
            }
        }
    }
}

fn build(from: &Mailbox, outgoing: &Outgoing<'_>) -> Result<Message, SendError> {
    let to: Mailbox = outgoing
        .to
        .parse()
        .map_err(|e| SendError::Permanent(format!("recipient {:?}: {e}", outgoing.to)))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(outgoing.subject)
        .message_id(Some(outgoing.message_id.to_owned()))
        .multipart(MultiPart::alternative_plain_html(
            outgoing.body.text.clone(),
            outgoing.body.html.clone(),
        ))
        .map_err(|e| SendError::Permanent(format!("building the message: {e}")))
}

fn classify(error: lettre::transport::smtp::Error) -> SendError {
    let text = error.to_string();
    if error.is_permanent() {
        SendError::Permanent(text)
    } else {
        SendError::Transient(text)
    }
}
