//! Access tokens: HS256 JWTs with issuer, audience, expiry and id, checked strictly.

use aggregates::{Role, SessionId, UserId};
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Access tokens live 15 minutes; revocation covers the time in between.
pub const ACCESS_TOKEN_SECONDS: i64 = 900;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: uuid::Uuid,
    pub sid: uuid::Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid")]
    Invalid,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl JwtKeys {
    pub fn new(secret: &[u8], issuer: &str, audience: &str) -> Self {
        // Only HS256 is accepted: `alg: none` and algorithm-confusion tokens fail here.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        // RFC 7519: a token is refused from the second `exp` names on (the crate's default
        // accepts it through that second), so a token capped at a session's end dies with it.
        validation.reject_tokens_expiring_in_less_than = 1;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    pub fn issue(
        &self,
        user: UserId,
        session: SessionId,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_until(user, session, role, now, None)
            .map(|(token, _)| token)
    }

    /// Like [`JwtKeys::issue`], but never valid past `session_ends` (the session's end, so no
    /// access token outlives it). Returns the token and its lifetime in seconds.
    pub fn issue_until(
        &self,
        user: UserId,
        session: SessionId,
        role: Role,
        now: DateTime<Utc>,
        session_ends: Option<DateTime<Utc>>,
    ) -> Result<(String, i64), jsonwebtoken::errors::Error> {
        let full = now.timestamp() + ACCESS_TOKEN_SECONDS;
        // Rounded down, so the token never lasts past the end even by a fraction of a second.
        let exp = session_ends.map_or(full, |end| full.min(end.timestamp()));
        let claims = Claims {
            sub: *user.as_uuid(),
            sid: *session.as_uuid(),
            role,
            iat: now.timestamp(),
            exp,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, (exp - now.timestamp()).max(0)))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) if !data.claims.jti.is_empty() => Ok(data.claims),
            Ok(_) => Err(TokenError::Invalid),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&[7u8; 32], "chronicle", "chronicle-api")
    }

    fn ids() -> (UserId, SessionId) {
        (
            UserId::from_uuid(uuid::Uuid::now_v7()),
            SessionId::from_uuid(uuid::Uuid::now_v7()),
        )
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let (user, session) = ids();

        let token = keys()
            .issue(user, session, Role::Admin, Utc::now())
            .unwrap();
        let claims = keys().verify(&token).unwrap();

        assert_eq!(claims.sub, *user.as_uuid());
        assert_eq!(claims.sid, *session.as_uuid());
        assert_eq!(claims.role, Role::Admin);
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn an_access_token_never_outlives_its_session() {
        let (user, session) = ids();
        let now = Utc::now();
        let ends = now + chrono::Duration::seconds(60);

        let (token, lifetime) = keys()
            .issue_until(user, session, Role::User, now, Some(ends))
            .unwrap();
        let claims = keys().verify(&token).unwrap();
        let (_, full) = keys()
            .issue_until(
                user,
                session,
                Role::User,
                now,
                Some(now + chrono::Duration::days(1)),
            )
            .unwrap();

        assert_eq!(claims.exp, ends.timestamp());
        assert_eq!(lifetime, 60);
        assert_eq!(full, ACCESS_TOKEN_SECONDS);
    }

    #[test]
    fn expired_foreign_and_tampered_tokens_are_refused() {
        let (user, session) = ids();
        let long_ago = Utc::now() - chrono::Duration::hours(1);
        let expired = keys().issue(user, session, Role::User, long_ago).unwrap();
        let other_audience = JwtKeys::new(&[7u8; 32], "chronicle", "elsewhere")
            .issue(user, session, Role::User, Utc::now())
            .unwrap();
        let other_key = JwtKeys::new(&[8u8; 32], "chronicle", "chronicle-api")
            .issue(user, session, Role::User, Utc::now())
            .unwrap();

        assert_eq!(keys().verify(&expired).unwrap_err(), TokenError::Expired);
        assert_eq!(
            keys().verify(&other_audience).unwrap_err(),
            TokenError::Invalid
        );
        assert_eq!(keys().verify(&other_key).unwrap_err(), TokenError::Invalid);
        assert_eq!(keys().verify("not.a.jwt").unwrap_err(), TokenError::Invalid);
    }
}
