//! Per-account sign-in throttling: failed sign-ins counted per normalised email in Postgres.
//!
//! The per-IP limit stops one address; this stops many addresses guessing one account's
//! password. The count lives in Postgres (one row per account tried, a fixed 15-minute window),
//! so every instance behind a load balancer enforces the same limit. Unknown emails are counted
//! exactly like known ones, and the row's key is an HMAC of the email, so neither the answers
//! nor the table tell whether an account exists.
//!
//! An attempt is counted before its password is checked and the count is given back when the
//! password was right: counting afterwards would let a burst of parallel guesses all pass the
//! check before any of them was recorded.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;

/// The window `LOGIN_FAILURES_PER_ACCOUNT` counts over (API.md: per 15 minutes).
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// What the count says about one sign-in attempt.
#[derive(Debug)]
pub enum Verdict {
    /// Check the password; hand the attempt to [`succeeded`] if it was right.
    Allowed(Attempt),
    /// Too many failures in this window: refuse without checking anything.
    Throttled { retry_after_secs: u64 },
}

/// A counted attempt, to be given back if it succeeds.
#[derive(Debug)]
pub struct Attempt {
    account: Vec<u8>,
    window_started: DateTime<Utc>,
}

/// The account's key: HMAC-SHA256 of the normalised (trimmed, lower-cased, as `Email::parse`
/// does) email under the JWT secret, so a reader of the database cannot test emails against it.
pub fn account_key(secret: &[u8], email: &str) -> Result<Vec<u8>, hmac::digest::InvalidLength> {
    let normalised = email.trim().to_lowercase();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)?;
    mac.update(b"chronicle login throttle\0");
    mac.update(normalised.as_bytes());
    Ok(mac.finalize().into_bytes().to_vec())
}

/// Counts an attempt on `account` (from [`account_key`]; one upsert by primary key). `limit` 0
/// turns throttling off.
pub async fn begin(pool: &PgPool, limit: u32, account: Vec<u8>) -> Result<Verdict, sqlx::Error> {
    if limit == 0 {
        return Ok(Verdict::Allowed(Attempt {
            account: Vec::new(),
            window_started: DateTime::<Utc>::MIN_UTC,
        }));
    }
    // A row whose window has passed starts a new one. The count saturates one past the limit:
    // refused attempts need not be counted further, and cannot overflow it.
    let (failures, window_started, remaining): (i32, DateTime<Utc>, f64) = sqlx::query_as(
        "INSERT INTO login_throttle AS t (account, window_started, failures)
         VALUES ($1, now(), 1)
         ON CONFLICT (account) DO UPDATE SET
             window_started = CASE WHEN t.window_started <= now() - make_interval(secs => $2)
                                   THEN now() ELSE t.window_started END,
             failures = CASE WHEN t.window_started <= now() - make_interval(secs => $2)
                             THEN 1 ELSE least(t.failures + 1, $3) END
         RETURNING failures, window_started,
                   extract(epoch FROM window_started + make_interval(secs => $2) - now())::float8",
    )
    .bind(&account)
    .bind(WINDOW.as_secs_f64())
    .bind(i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX))
    .fetch_one(pool)
    .await?;
    if i64::from(failures) > i64::from(limit) {
        return Ok(Verdict::Throttled {
            retry_after_secs: remaining.ceil().max(1.0) as u64,
        });
    }
    Ok(Verdict::Allowed(Attempt {
        account,
        window_started,
    }))
}

/// The attempt signed in: it was no failure, so its count is given back (in its own window
/// only; a window that has since restarted owes it nothing).
pub async fn succeeded(pool: &PgPool, attempt: Attempt) -> Result<(), sqlx::Error> {
    if attempt.account.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE login_throttle SET failures = failures - 1
          WHERE account = $1 AND window_started = $2 AND failures > 0",
    )
    .bind(&attempt.account)
    .bind(attempt.window_started)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes rows whose window has passed, now and then, so the table holds only accounts tried
/// in the last window.
pub async fn sweep(pool: PgPool) {
    let mut interval = tokio::time::interval(Duration::from_secs(300));
    loop {
        interval.tick().await;
        let swept = sqlx::query(
            "DELETE FROM login_throttle WHERE window_started <= now() - make_interval(secs => $1)",
        )
        .bind(WINDOW.as_secs_f64())
        .execute(&pool)
        .await;
        if let Err(e) = swept {
            tracing::warn!(error = %e, "login throttle sweep failed");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_account_is_keyed_by_its_normalised_email_under_the_secret() {
        let secret = b"0123456789abcdef0123456789abcdef";

        let a = account_key(secret, "  Ada@Example.COM ").unwrap();
        let b = account_key(secret, "ada@example.com").unwrap();
        let other = account_key(secret, "bob@example.com").unwrap();
        let other_secret =
            account_key(b"fedcba9876543210fedcba9876543210", "ada@example.com").unwrap();

        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        assert_ne!(a, other);
        assert_ne!(a, other_secret);
    }
}
