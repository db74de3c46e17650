//! What the command bus reports: commands by aggregate, command and outcome with their latency,
//! and the events they appended.

use std::time::Duration;

use crate::commands::CommandError;

/// Every value of the `outcome` label: `rejected` is a domain refusal, `conflict` a lost race
/// or a failed `If-Match`, `error` the database or a fault.
pub const OUTCOMES: &[&str] = &["ok", "rejected", "conflict", "error"];

/// Every command of each aggregate, as the `command` label reads it (`commands::CommandName`
/// without the aggregate), for creating the series at start.
pub const POST_COMMANDS: &[&str] = &[
    "create",
    "update",
    "replace",
    "publish",
    "unpublish",
    "delete",
];
pub const USER_COMMANDS: &[&str] = &[
    "register",
    "update",
    "request_email_verification",
    "verify_email",
    "request_password_reset",
    "reset_password",
    "change_password",
    "deactivate",
];
pub const SESSION_COMMANDS: &[&str] = &["start", "refresh", "revoke", "mark_compromised"];

/// The `command` label of a command named `aggregate.command` (the aggregate has its own label).
fn label(name: &'static str) -> &'static str {
    name.split_once('.').map_or(name, |(_, command)| command)
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

/// Counts and times one command (named as `commands::CommandName` names it), and the events it
/// appended.
pub fn record(
    aggregate: &'static str,
    name: &'static str,
    outcome: &'static str,
    took: Duration,
    appended: usize,
) {
    let command = label(name);
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
pub fn register(aggregate: &'static str, commands: &[&'static str]) {
    for command in commands {
        for outcome in OUTCOMES {
            metrics::counter!("chronicle_commands_total", "aggregate" => aggregate, "command" => *command, "outcome" => *outcome)
                .increment(0);
        }
        let _ = metrics::histogram!("chronicle_command_duration_seconds", "aggregate" => aggregate, "command" => *command, "outcome" => "ok");
    }
    metrics::counter!("chronicle_events_appended_total", "aggregate" => aggregate).increment(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_label_drops_the_aggregate_of_the_name() {
        assert_eq!(label("post.create"), "create");
        assert_eq!(
            label("user.request_password_reset"),
            "request_password_reset"
        );
        assert_eq!(label("plain"), "plain");
    }
}
