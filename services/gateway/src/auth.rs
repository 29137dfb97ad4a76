//! Bearer tokens: extraction, and the per-worker cache of verified identities.
//!
//! Verifying an Ed25519 JWT costs more than proxying a request, so each worker remembers the
//! tokens it verified, keyed by the token bytes, with the identity headers already built. The
//! cache is a plain `HashMap` in a `RefCell`: a worker is one thread, so no lock is needed.
//!
//! An entry is only as good as the key that verified it: each remembers its `kid` and the
//! key-set generation of the shared verifier it was verified under. A hit costs one atomic
//! load to see that the generation is unchanged; when it moved (a JWKS refresh changed the
//! keys), the entry is kept only if its key is still published, so every worker stops
//! accepting a token as soon as the verifier they share drops its key.

use std::collections::HashMap;

use http::HeaderValue;
use platform::auth::{Claims, JwtVerifier};
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

/// Verified tokens of one worker, bounded, never answering with an expired entry or one whose
/// key the verifier no longer trusts.
pub(crate) struct TokenCache {
    /// foldhash, not SipHash: hashing the token was a tenth of a cached request's work, and
    /// only verified tokens become keys, so clients cannot choose colliding ones.
    entries: HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
    capacity: usize,
}

struct Entry {
    identity: Identity,
    /// The key that verified the token.
    kid: Box<str>,
    /// The verifier's key-set generation when the entry was last known good.
    generation: u64,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::with_capacity_and_hasher(capacity.min(1024), Default::default()),
            capacity: capacity.max(1),
        }
    }

    /// The identity of `token` if it was verified, has not expired at `now` (Unix seconds),
    /// and its key is still one `keys` trusts.
    pub(crate) fn get(&mut self, token: &[u8], now: i64, keys: &JwtVerifier) -> Option<Identity> {
        let generation = keys.generation();
        let entry = self.entries.get_mut(token)?;
        if entry.identity.exp > now {
            if entry.generation == generation {
                return Some(entry.identity.clone());
            }
            // The key set changed since this entry was checked: rare, once per entry.
            if let Some(current) = keys.still_trusts(&entry.kid, entry.generation) {
                entry.generation = current;
                return Some(entry.identity.clone());
            }
        }
        self.entries.remove(token);
        None
    }

    /// Remembers a token verified by `kid` under key-set `generation`; when full, drops
    /// expired entries, then arbitrary ones.
    pub(crate) fn insert(
        &mut self,
        token: &[u8],
        identity: Identity,
        kid: &str,
        generation: u64,
        now: i64,
    ) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, entry| entry.identity.exp > now);
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
        let entry = Entry {
            identity,
            kid: kid.into(),
            generation,
        };
        self.entries.insert(token.into(), entry);
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
    use platform::auth::{public_jwks, Ed25519Key, JwkSet, Role};

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

    fn verifier(keys: &[&Ed25519Key]) -> JwtVerifier {
        JwtVerifier::with_keys(&jwks(keys), "i", "a").unwrap()
    }

    fn jwks(keys: &[&Ed25519Key]) -> JwkSet {
        public_jwks(keys.iter().copied())
    }

    #[test]
    fn expired_entries_are_never_used() {
        let key = Ed25519Key::generate().unwrap();
        let keys = verifier(&[&key]);
        let mut cache = TokenCache::new(10);
        cache.insert(b"t", identity(100), key.kid(), keys.generation(), 50);
        assert!(cache.get(b"t", 99, &keys).is_some());
        assert!(cache.get(b"t", 100, &keys).is_none());
        assert!(
            cache.get(b"t", 50, &keys).is_none(),
            "the expired entry was removed"
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let key = Ed25519Key::generate().unwrap();
        let keys = verifier(&[&key]);
        let mut cache = TokenCache::new(20);
        for i in 0..100u32 {
            cache.insert(&i.to_be_bytes(), identity(1000), key.kid(), 1, 0);
            assert!(cache.len() <= 20);
        }
        assert!(
            cache.get(&99u32.to_be_bytes(), 0, &keys).is_some(),
            "the newest entry is kept"
        );
    }

    #[test]
    fn an_entry_goes_when_its_key_leaves_the_key_set() {
        let old = Ed25519Key::generate().unwrap();
        let new = Ed25519Key::generate().unwrap();
        let keys = verifier(&[&old]);
        let mut cache = TokenCache::new(10);
        cache.insert(b"old", identity(100), old.kid(), keys.generation(), 0);

        // The next key is published beside the old one: the entry stays.
        keys.set_keys(&jwks(&[&old, &new])).unwrap();
        assert!(cache.get(b"old", 0, &keys).is_some());
        cache.insert(b"new", identity(100), new.kid(), keys.generation(), 0);

        // The old key is retired: its tokens go, the new key's stay.
        keys.set_keys(&jwks(&[&new])).unwrap();
        assert!(cache.get(b"old", 0, &keys).is_none());
        assert!(cache.get(b"new", 0, &keys).is_some());
        assert_eq!(cache.len(), 1, "the entry was removed, not only skipped");

        // Re-publishing the old key does not resurrect the removed entry.
        keys.set_keys(&jwks(&[&old, &new])).unwrap();
        assert!(cache.get(b"old", 0, &keys).is_none());
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
