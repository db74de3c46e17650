//! Link tokens for emails: derived from a server key and a per-request nonce, so no token is
//! ever stored, logged or put in an event, yet the sender can rebuild it after a crash.
//!
//! A token is `base64url(HMAC-SHA256(key, kind ‖ user ‖ nonce))`: 32 pseudo-random bytes that
//! only the holder of the key can produce. The event carries the nonce (useless without the
//! key) and the token's SHA-256 (what the aggregate compares a presented token with).

use aggregates::user::IssuedToken;
use aggregates::UserId;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::auth::tokens::{random_secret, sha256_hex};

/// A verification link works for 24 h (API.md, Users).
pub const VERIFICATION_TTL_HOURS: i64 = 24;
/// A password reset link works for 1 h (API.md, Authentication).
pub const RESET_TTL_HOURS: i64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Verification,
    PasswordReset,
}

impl TokenKind {
    /// Distinct labels keep a verification token from ever being a valid reset token.
    fn label(self) -> &'static [u8] {
        match self {
            TokenKind::Verification => b"verify-email",
            TokenKind::PasswordReset => b"reset-password",
        }
    }

    fn ttl(self) -> Duration {
        match self {
            TokenKind::Verification => Duration::hours(VERIFICATION_TTL_HOURS),
            TokenKind::PasswordReset => Duration::hours(RESET_TTL_HOURS),
        }
    }
}

/// The key tokens are derived under; itself derived from `SECRETS_KEY` (or `JWT_SECRET`) so
/// that it is used for nothing else.
pub struct TokenKey([u8; 32]);

impl TokenKey {
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = mac(secret);
        mac.update(b"chronicle email link tokens v1");
        Self(mac.finalize().into_bytes().into())
    }

    /// A fresh token for `user`: what goes into the command (never the token itself).
    pub fn issue(&self, kind: TokenKind, user: UserId, now: DateTime<Utc>) -> IssuedToken {
        let nonce = random_secret(16);
        let hash = hash(&self.token(kind, user, &nonce));
        IssuedToken {
            nonce,
            hash,
            expires_at: now + kind.ttl(),
        }
    }

    /// The token that `issue` made for this nonce; only the email sender calls this.
    pub fn token(&self, kind: TokenKind, user: UserId, nonce: &str) -> String {
        let mut mac = mac(&self.0);
        mac.update(kind.label());
        mac.update(&[0]);
        mac.update(user.as_uuid().as_bytes());
        mac.update(&[0]);
        mac.update(nonce.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// What the aggregate compares: the presented token's SHA-256.
pub fn hash(token: &str) -> String {
    sha256_hex(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_rebuilds_the_token_whose_hash_the_command_carried() {
        let key = TokenKey::derive(b"a server secret that is long enough!!");
        let user = UserId::from_uuid(uuid::Uuid::now_v7());

        let issued = key.issue(TokenKind::Verification, user, Utc::now());
        let token = key.token(TokenKind::Verification, user, &issued.nonce);

        assert_eq!(hash(&token), issued.hash);
        assert_eq!(token.len(), 43, "32 bytes, base64url");
        assert_ne!(
            key.token(TokenKind::PasswordReset, user, &issued.nonce),
            token
        );
        let other = TokenKey::derive(b"another server secret, long enough!!!");
        assert_ne!(
            other.token(TokenKind::Verification, user, &issued.nonce),
            token
        );
    }
}
