//! Transactional email: link tokens that reach only the mailbox, an outbox fed from the event
//! log, templates kept as files, and the SMTP sender.

pub mod mailer;
pub mod outbox;
pub mod sender;
pub mod store;
pub mod templates;
pub mod tokens;

/// Makes the email counters visible from the first scrape, at 0.
pub fn register_metrics() {
    let _ = crate::recorder::handle();
    for outcome in ["sent", "failed"] {
        metrics::counter!("chronicle_emails_total", "outcome" => outcome).increment(0);
    }
}
