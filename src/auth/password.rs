//! argon2id password hashing, kept off the async runtime and bounded in concurrency, so a burst
//! of sign-ins cannot starve other requests.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password worker pool is gone")]
    Closed,
}

pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Verified against when the email is unknown, so the answer takes as long as for a real user.
    dummy_hash: OnceCell<String>,
}

impl Passwords {
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy_hash: OnceCell::new(),
        }
    }

    /// OWASP's argon2id parameters: 19 MiB, 2 iterations, 1 lane.
    fn argon2() -> Argon2<'static> {
        let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| PasswordError::Closed)
    }

    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Self::argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Hash(e.to_string()))
        })
        .await?
    }

    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool, PasswordError> {
        let password = password.to_owned();
        let hash = hash.to_owned();
        self.blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            Self::argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .await
    }

    /// Burns the same time as a real verification and always fails.
    pub async fn verify_dummy(&self, password: &str) -> Result<bool, PasswordError> {
        let dummy = self
            .dummy_hash
            .get_or_try_init(|| self.hash("chronicle-dummy-password-for-timing"))
            .await?
            .clone();
        self.verify(password, &dummy).await.map(|_| false)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only_and_is_argon2id() {
        let passwords = Passwords::new(2);

        let hash = passwords.hash("correct horse").await.unwrap();

        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(passwords.verify("correct horse", &hash).await.unwrap());
        assert!(!passwords.verify("wrong horse", &hash).await.unwrap());
        assert!(!passwords.verify_dummy("correct horse").await.unwrap());
    }
}
