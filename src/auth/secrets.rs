//! Secrets kept at rest (webhook signing secrets, stored idempotent answers), sealed with
//! XChaCha20-Poly1305 under a key derived from `SECRETS_KEY`.
//!
//! Every sealed value is bound to where it lives (the `context`, used as associated data), so a
//! sealed value copied into another row or another caller's record does not open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

/// The form a sealed text takes in a text column (then hex); anything else is a legacy
/// plaintext value.
pub const SEALED_TEXT_PREFIX: &str = "sealed:v1:";
/// The first byte of a sealed binary value, so a later format can be told apart.
const BINARY_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
#[error("a sealed secret does not open under SECRETS_KEY (was it changed?)")]
pub struct OpenError;

pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    /// The AEAD key is stretched from `SECRETS_KEY` with HKDF, so any string of at least 32
    /// bytes (as config checks) gives a uniformly random key.
    pub fn new(secrets_key: &[u8]) -> Self {
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's output limit, so expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, secrets_key)
            .expand(b"chronicle secrets at rest v1", &mut key);
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Version byte, random 24-byte nonce (random nonces are safe at XChaCha's size), then the
    /// ciphertext with its tag.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext,
            aad: context,
        };
        // Encryption fails only for messages beyond 256 GiB.
        let ciphertext = self.cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(BINARY_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (&version, rest) = sealed.split_first().ok_or(OpenError)?;
        if version != BINARY_VERSION || rest.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError)?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| OpenError)
    }

    /// A text secret sealed for a text column. Hex rather than base64: its alphabet cannot
    /// spell a credential's marker (`whsec_`, `sk_live_`, a JWT's `eyJ`) by chance, so a scan of
    /// a database dump for those finds real leaks only.
    pub fn seal_text(&self, plaintext: &str, context: &[u8]) -> String {
        format!(
            "{SEALED_TEXT_PREFIX}{}",
            hex::encode(self.seal(plaintext.as_bytes(), context))
        )
    }

    /// Opens what [`SecretBox::seal_text`] made; a value without the sealed prefix is a legacy
    /// plaintext one (written before secrets were sealed) and is returned as it is, until the
    /// start-up pass re-seals it.
    pub fn open_text(&self, stored: &str, context: &[u8]) -> Result<String, OpenError> {
        let Some(encoded) = stored.strip_prefix(SEALED_TEXT_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let sealed = hex::decode(encoded).map_err(|_| OpenError)?;
        String::from_utf8(self.open(&sealed, context)?).map_err(|_| OpenError)
    }
}

pub fn is_sealed_text(stored: &str) -> bool {
    stored.starts_with(SEALED_TEXT_PREFIX)
}

/// The `SECRETS_KEY` used when none is set: derived from `JWT_SECRET`, and printable
/// (`chronicle secrets derive-key`) so an operator who rotates `JWT_SECRET` can pin the old one.
pub fn derive_secrets_key(jwt_secret: &[u8]) -> String {
    let mut key = [0u8; 32];
    let _ = Hkdf::<Sha256>::new(None, jwt_secret).expand(b"chronicle SECRETS_KEY v1", &mut key);
    URL_SAFE_NO_PAD.encode(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context() {
        let keys = SecretBox::new(b"0123456789abcdef0123456789abcdef");
        let sealed = keys.seal(b"whsec_abc", b"row-1");

        assert_eq!(keys.open(&sealed, b"row-1").unwrap(), b"whsec_abc");
        assert!(keys.open(&sealed, b"row-2").is_err());
        assert!(SecretBox::new(b"another key that is 32 bytes long!")
            .open(&sealed, b"row-1")
            .is_err());
        assert!(!sealed.windows(9).any(|w| w == b"whsec_abc"));
    }

    #[test]
    fn sealed_text_round_trips_and_legacy_plaintext_passes_through() {
        let keys = SecretBox::new(b"0123456789abcdef0123456789abcdef");
        let sealed = keys.seal_text("whsec_abc", b"ctx");

        assert!(is_sealed_text(&sealed));
        assert!(!sealed.contains("whsec_"));
        assert_eq!(keys.open_text(&sealed, b"ctx").unwrap(), "whsec_abc");
        assert_eq!(keys.open_text("whsec_old", b"ctx").unwrap(), "whsec_old");
    }

    #[test]
    fn the_derived_key_is_stable_and_long_enough_to_be_set_as_secrets_key() {
        let derived = derive_secrets_key(b"a jwt secret that is long enough, really");

        assert_eq!(
            derived,
            derive_secrets_key(b"a jwt secret that is long enough, really")
        );
        assert!(derived.len() >= 32);
    }
}
