//! Bearer tokens: extraction, and the per-worker cache of verified identities.
//!
//! Verifying an Ed25519 JWT costs more than proxying a request, so each worker remembers the
//! tokens it verified, keyed by the token bytes, with the identity headers already built. The
//! cache is a plain `HashMap` in a `RefCell`: a worker is one thread, so no lock is needed.

use std::collections::HashMap;

use http::HeaderValue;
use platform::auth::Claims;
use uuid::Uuid;

/// What a verified token grants: the headers to forward and when it stops counting.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) user_id: Uuid,
    pub(crate) user_id_header: HeaderValue,
    pub(crate) roles_header: HeaderValue,
    /// Expiry, seconds since the Unix epoch.
    pub(crate) exp: i64,
}

impl Identity {
    pub(crate) fn from_claims(claims: &Claims) -> Option<Self> {
        let mut user_id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let user_id_text = claims.sub.hyphenated().encode_lower(&mut user_id);
        let roles = claims
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",");
        Some(Self {
            user_id: claims.sub,
            user_id_header: HeaderValue::from_str(user_id_text).ok()?,
            roles_header: HeaderValue::from_str(&roles).ok()?,
            exp: claims.exp,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header; `Err` for any other scheme.
pub(crate) fn bearer_token(header: &HeaderValue) -> Result<&[u8], ()> {
    let bytes = header.as_bytes();
    if bytes.len() > 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ") {
        let token = bytes[7..].trim_ascii();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    Err(())
}

/// Verified tokens of one worker, bounded, never answering with an expired entry.
pub(crate) struct TokenCache {
    /// foldhash, not SipHash: hashing the token was a tenth of a cached request's work, and
    /// only verified tokens become keys, so clients cannot choose colliding ones.
    entries: HashMap<Box<[u8]>, Identity, foldhash::fast::RandomState>,
    capacity: usize,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::with_capacity_and_hasher(capacity.min(1024), Default::default()),
            capacity: capacity.max(1),
        }
    }

    /// The identity of `token` if it was verified and has not expired at `now` (Unix seconds).
    pub(crate) fn get(&mut self, token: &[u8], now: i64) -> Option<Identity> {
        match self.entries.get(token) {
            Some(identity) if identity.exp > now => Some(identity.clone()),
            Some(_) => {
                self.entries.remove(token);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token; when full, drops expired entries, then arbitrary ones.
    pub(crate) fn insert(&mut self, token: &[u8], identity: Identity, now: i64) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, entry| entry.exp > now);
            // Still full: forget about a tenth, arbitrary ones (HashMap order is random
            // enough), so eviction stays amortised rather than per insert.
            if self.entries.len() >= self.capacity {
                let drop_count = (self.capacity / 10).max(1);
                let victims: Vec<Box<[u8]>> =
                    self.entries.keys().take(drop_count).cloned().collect();
                for victim in victims {
                    self.entries.remove(&victim);
                }
            }
        }
        self.entries.insert(token.into(), identity);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Seconds since the Unix epoch, as JWT `exp` counts.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::auth::Role;

    fn identity(exp: i64) -> Identity {
        Identity::from_claims(&Claims {
            sub: Uuid::now_v7(),
            roles: vec![Role::Customer, Role::Admin],
            iss: "i".into(),
            aud: "a".into(),
            iat: 0,
            exp,
        })
        .unwrap()
    }

    #[test]
    fn identity_headers_are_prebuilt() {
        let id = identity(10);
        assert_eq!(id.roles_header, "customer,admin");
        assert_eq!(id.user_id_header.to_str().unwrap(), id.user_id.to_string());
    }

    #[test]
    fn expired_entries_are_never_used() {
        let mut cache = TokenCache::new(10);
        cache.insert(b"t", identity(100), 50);
        assert!(cache.get(b"t", 99).is_some());
        assert!(cache.get(b"t", 100).is_none());
        assert!(
            cache.get(b"t", 50).is_none(),
            "the expired entry was removed"
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut cache = TokenCache::new(20);
        for i in 0..100u32 {
            cache.insert(&i.to_be_bytes(), identity(1000), 0);
            assert!(cache.len() <= 20);
        }
        assert!(
            cache.get(&99u32.to_be_bytes(), 0).is_some(),
            "the newest entry is kept"
        );
    }

    #[test]
    fn bearer_tokens_are_extracted() {
        assert_eq!(
            bearer_token(&HeaderValue::from_static("Bearer abc")),
            Ok(b"abc".as_slice())
        );
        assert_eq!(
            bearer_token(&HeaderValue::from_static("bearer  abc ")),
            Ok(b"abc".as_slice())
        );
        assert!(bearer_token(&HeaderValue::from_static("Basic abc")).is_err());
        assert!(bearer_token(&HeaderValue::from_static("Bearer ")).is_err());
    }
}
