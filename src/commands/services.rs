//! The server's implementations of the services the aggregates ask for.

use aggregates::user::{EmailRegistry, PasswordVerifier, ServiceError};
use aggregates::values::Email;
use aggregates::UserId;
use async_trait::async_trait;
use sqlx::PgPool;

use crate::auth::password::Passwords;

/// Email uniqueness through a table with the normalised email as primary key: the insert
/// either wins or conflicts, so twenty concurrent registrations give exactly one claim.
///
/// A claim is taken before the user's first event is appended. If the process dies in
/// between, the claim would block the address forever, so a claim older than five minutes
/// whose user has no events may be taken over (in the same statement, so still race-free).
pub struct PgEmailRegistry {
    pool: PgPool,
}

impl PgEmailRegistry {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The user an email belongs to, if a user with that email was ever registered.
    pub async fn owner_of(&self, email: &Email) -> Result<Option<UserId>, sqlx::Error> {
        let owner: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT user_id FROM email_claims WHERE email = $1")
                .bind(email.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(owner.map(UserId::from_uuid))
    }
}

#[async_trait]
impl EmailRegistry for PgEmailRegistry {
    async fn claim(&self, email: &Email, user_id: UserId) -> Result<bool, ServiceError> {
        let claimed: Option<uuid::Uuid> = sqlx::query_scalar(
            "INSERT INTO email_claims (email, user_id) VALUES ($1, $2)
             ON CONFLICT (email) DO UPDATE SET user_id = EXCLUDED.user_id, claimed_at = now()
              WHERE email_claims.user_id = EXCLUDED.user_id
                 OR (email_claims.claimed_at < now() - interval '5 minutes'
                     AND NOT EXISTS (SELECT 1 FROM events
                                      WHERE aggregate_type = 'user'
                                        AND aggregate_id = email_claims.user_id::text))
             RETURNING user_id",
        )
        .bind(email.as_str())
        .bind(user_id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| ServiceError(e.to_string()))?;
        Ok(claimed == Some(*user_id.as_uuid()))
    }
}

#[async_trait]
impl PasswordVerifier for Passwords {
    async fn verify(&self, password: &str, hash: &str) -> Result<bool, ServiceError> {
        Passwords::verify(self, password, hash)
            .await
            .map_err(|e| ServiceError(e.to_string()))
    }
}
