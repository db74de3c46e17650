//! Refresh tokens and other random secrets. Refresh tokens are opaque to clients; inside they
//! name their session, so a refresh loads one aggregate without a lookup table. Only their
//! SHA-256 is ever stored.

use aggregates::SessionId;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const REFRESH_PREFIX: &str = "rt_";

/// `n` random bytes from the OS generator, base64url without padding.
pub fn random_secret(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256_hex(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn new_refresh_token(session: SessionId) -> String {
    format!(
        "{REFRESH_PREFIX}{}{}",
        session.as_uuid().simple(),
        random_secret(32)
    )
}

/// The session a refresh token claims to belong to; the hash check decides whether it does.
pub fn session_of_refresh_token(token: &str) -> Option<SessionId> {
    let rest = token.strip_prefix(REFRESH_PREFIX)?;
    let id = rest.get(..32)?;
    uuid::Uuid::try_parse(id).ok().map(SessionId::from_uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_token_names_its_session_and_differs_every_time() {
        let session = SessionId::from_uuid(uuid::Uuid::now_v7());

        let a = new_refresh_token(session);
        let b = new_refresh_token(session);

        assert_ne!(a, b);
        assert_eq!(session_of_refresh_token(&a), Some(session));
        assert_eq!(session_of_refresh_token("rt_nonsense"), None);
        assert_eq!(sha256_hex("abc").len(), 64);
    }
}
