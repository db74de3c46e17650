//! What the command bus reports: commands by aggregate, command and outcome with their latency,
//! and the events they appended.

use std::time::Duration;

use aggregates::post::PostCommand;
use aggregates::session::SessionCommand;
use aggregates::user::UserCommand;

use crate::commands::CommandError;

/// Every value of the `outcome` label: `rejected` is a domain refusal, `conflict` a lost race
/// or a failed `If-Match`, `error` the database or a fault.
pub const OUTCOMES: &[&str] = &["ok", "rejected", "conflict", "error"];

/// A command's name for the `command` label: a fixed set per aggregate, so the label space
/// stays bounded.
pub trait CommandName {
    /// Every name, for registering the series at start.
    const NAMES: &'static [&'static str];

    fn name(&self) -> &'static str;
}

impl CommandName for PostCommand {
    const NAMES: &'static [&'static str] = &[
        "create",
        "update",
        "replace",
        "publish",
        "unpublish",
        "delete",
    ];

    fn name(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::Update { .. } => "update",
            Self::Replace { .. } => "replace",
            Self::Publish { .. } => "publish",
            Self::Unpublish { .. } => "unpublish",
            Self::Delete { .. } => "delete",
        }
    }
}

impl CommandName for UserCommand {
    const NAMES: &'static [&'static str] = &[
        "register",
        "update",
        "request_email_verification",
        "verify_email",
        "request_password_reset",
        "reset_password",
        "change_password",
        "deactivate",
    ];

    fn name(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::Update { .. } => "update",
            Self::RequestEmailVerification { .. } => "request_email_verification",
            Self::VerifyEmail { .. } => "verify_email",
            Self::RequestPasswordReset { .. } => "request_password_reset",
            Self::ResetPassword { .. } => "reset_password",
            Self::ChangePassword { .. } => "change_password",
            Self::Deactivate { .. } => "deactivate",
        }
    }
}

impl CommandName for SessionCommand {
    const NAMES: &'static [&'static str] = &["start", "refresh", "revoke", "mark_compromised"];

    fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::Refresh { .. } => "refresh",
            Self::Revoke { .. } => "revoke",
            Self::MarkCompromised { .. } => "mark_compromised",
        }
    }
}

/// The `outcome` label of a command's result.
pub fn outcome<T, E: std::error::Error>(result: &Result<T, CommandError<E>>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(CommandError::Domain(_)) => "rejected",
        Err(CommandError::Conflict { .. }) => "conflict",
        Err(CommandError::Unavailable(_) | CommandError::Internal(_)) => "error",
    }
}

/// Counts and times one command, and the events it appended.
pub fn record(
    aggregate: &'static str,
    command: &'static str,
    outcome: &'static str,
    took: Duration,
    appended: usize,
) {
    metrics::counter!("chronicle_commands_total", "aggregate" => aggregate, "command" => command, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("chronicle_command_duration_seconds", "aggregate" => aggregate, "command" => command, "outcome" => outcome)
        .record(took.as_secs_f64());
    if appended > 0 {
        metrics::counter!("chronicle_events_appended_total", "aggregate" => aggregate)
            .increment(appended as u64);
        metrics::histogram!("chronicle_append_events").record(appended as f64);
    }
}

/// Creates an aggregate's command series at zero: every command with every outcome counted,
/// and the successful ones' latency.
pub fn register<C: CommandName>(aggregate: &'static str) {
    for command in C::NAMES {
        for outcome in OUTCOMES {
            metrics::counter!("chronicle_commands_total", "aggregate" => aggregate, "command" => *command, "outcome" => *outcome)
                .increment(0);
        }
        let _ = metrics::histogram!("chronicle_command_duration_seconds", "aggregate" => aggregate, "command" => *command, "outcome" => "ok");
    }
    metrics::counter!("chronicle_events_appended_total", "aggregate" => aggregate).increment(0);
}
