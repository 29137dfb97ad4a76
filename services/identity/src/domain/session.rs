//! Session rules: opaque refresh tokens (generation, hashing, when one may be used) and the
//! claims of access tokens.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use platform::auth::{Claims, Role};
use ring::rand::SecureRandom as _;
use uuid::Uuid;

/// Random bytes in a refresh token: 256 bits, beyond guessing.
const REFRESH_TOKEN_BYTES: usize = 32;

/// An opaque refresh token as handed to the client. Only its hash is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

impl RefreshToken {
    /// 32 bytes from the system CSPRNG, base64url without padding.
    pub fn generate() -> anyhow::Result<Self> {
        let mut bytes = [0u8; REFRESH_TOKEN_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        Ok(Self(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        hash_refresh_token(&self.0)
    }
}

/// The length of every token `generate` makes: 32 bytes as unpadded base64url.
pub const REFRESH_TOKEN_LEN: usize = 43;

/// Whether a presented string has the shape of a refresh token: anything else is a client
/// error (422), not an unknown token (401).
pub fn is_refresh_token_shaped(token: &str) -> bool {
    token.len() == REFRESH_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SHA-256 of a presented token, hex: what the database indexes. A plain hash suffices (no
/// salt, no slow KDF) because the token has 256 bits of entropy.
pub fn hash_refresh_token(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// What the store knows about a presented refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenState {
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Why a refresh token cannot be exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRejection {
    /// Already exchanged once: someone replays it, so the whole family must be revoked.
    Reused,
    Revoked,
    Expired,
}

impl RefreshTokenState {
    /// Whether the token may be exchanged at `now`. Revocation wins over reuse (the family is
    /// already dead), reuse over expiry (a replayed token is an alarm even when stale).
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), RefreshRejection> {
        if self.revoked_at.is_some() {
            return Err(RefreshRejection::Revoked);
        }
        if self.used_at.is_some() {
            return Err(RefreshRejection::Reused);
        }
        if now >= self.expires_at {
            return Err(RefreshRejection::Expired);
        }
        Ok(())
    }
}

/// Lifetimes and audience of the tokens identity issues.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

impl TokenPolicy {
    /// The claims of an access token issued at `now`.
    pub fn access_claims(&self, user_id: Uuid, roles: &[Role], now: DateTime<Utc>) -> Claims {
        Claims {
            sub: user_id,
            roles: roles.to_vec(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now.timestamp(),
            exp: (now + self.access_ttl).timestamp(),
        }
    }

    /// When a refresh token issued at `now` expires.
    pub fn refresh_expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.refresh_ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn fresh() -> RefreshTokenState {
        RefreshTokenState {
            expires_at: at(100),
            used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn generated_tokens_have_the_refresh_token_shape() {
        for _ in 0..100 {
            assert!(is_refresh_token_shaped(
                RefreshToken::generate().unwrap().as_str()
            ));
        }
        for bad in [
            "",
            "short",
            &"a".repeat(42),
            &"a".repeat(44),
            &format!("{}=", "a".repeat(42)),
        ] {
            assert!(!is_refresh_token_shaped(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_fresh_token_is_usable_until_it_expires() {
        assert_eq!(fresh().check(at(0)), Ok(()));
        assert_eq!(fresh().check(at(99)), Ok(()));
        assert_eq!(fresh().check(at(100)), Err(RefreshRejection::Expired));
    }

    #[test]
    fn a_used_token_is_reuse_even_after_expiry() {
        let used = RefreshTokenState {
            used_at: Some(at(10)),
            ..fresh()
        };
        assert_eq!(used.check(at(20)), Err(RefreshRejection::Reused));
        assert_eq!(used.check(at(500)), Err(RefreshRejection::Reused));
    }

    #[test]
    fn revocation_wins() {
        let revoked = RefreshTokenState {
            used_at: Some(at(10)),
            revoked_at: Some(at(11)),
            ..fresh()
        };
        assert_eq!(revoked.check(at(20)), Err(RefreshRejection::Revoked));
    }

    #[test]
    fn tokens_are_random_url_safe_and_hashed() {
        let a = RefreshToken::generate().unwrap();
        let b = RefreshToken::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 43);
        assert!(a
            .as_str()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(a.hash(), hash_refresh_token(a.as_str()));
        assert_eq!(a.hash().len(), 64);
        assert_ne!(a.hash(), b.hash());
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn access_claims_expire_after_the_ttl() {
        let policy = TokenPolicy {
            issuer: "iss".into(),
            audience: "aud".into(),
            access_ttl: Duration::seconds(900),
            refresh_ttl: Duration::days(30),
        };
        let user = Uuid::now_v7();
        let claims = policy.access_claims(user, &[Role::Customer], at(0));
        assert_eq!(claims.sub, user);
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.iss, "iss");
        assert_eq!(claims.aud, "aud");
        assert_eq!(policy.refresh_expiry(at(0)), at(30 * 24 * 3600));
    }
}
