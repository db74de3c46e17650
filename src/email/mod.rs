//! Transactional email: link tokens that reach only the mailbox, an outbox fed from the event
//! log, templates, and the SMTP sender.

pub mod tokens;
