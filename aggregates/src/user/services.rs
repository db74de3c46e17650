//! What the user aggregate needs from outside, as traits the server implements.

use std::sync::Arc;

use async_trait::async_trait;

use crate::ids::UserId;
use crate::values::Email;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(pub String);

/// Claims an email for one user, race-free across every instance: of any number of concurrent
/// claims for one address, exactly one returns `true`.
#[async_trait]
pub trait EmailRegistry: Send + Sync {
    async fn claim(&self, email: &Email, user_id: UserId) -> Result<bool, ServiceError>;
}

/// Checks a password against a stored hash (slow on purpose; implementations keep it off the
/// async runtime).
#[async_trait]
pub trait PasswordVerifier: Send + Sync {
    async fn verify(&self, password: &str, hash: &str) -> Result<bool, ServiceError>;
}

#[derive(Clone)]
pub struct UserServices {
    pub emails: Arc<dyn EmailRegistry>,
    pub passwords: Arc<dyn PasswordVerifier>,
}
