//! Per-client rate limiting: a token bucket per user id (or IP), shared by all workers.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use crate::config::RateLimitConfig;

/// Who is being limited: the authenticated user when there is one, else the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    User(Uuid),
    Ip(IpAddr),
}

/// One token-bucket limiter (the global default, or a route's override).
pub(crate) struct Limiter {
    limiter: DefaultKeyedRateLimiter<ClientKey>,
    clock: DefaultClock,
}

impl Limiter {
    /// `None` when `per_second = 0` (disabled).
    pub(crate) fn new(config: &RateLimitConfig) -> Option<Self> {
        let per_second = NonZeroU32::new(config.per_second)?;
        let burst = NonZeroU32::new(config.burst).unwrap_or(per_second);
        Some(Self {
            limiter: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            ),
            clock: DefaultClock::default(),
        })
    }

    /// `Ok` to proceed, or `Err(seconds)` to wait (at least 1, as `Retry-After` wants).
    pub(crate) fn check(&self, key: &ClientKey) -> Result<(), u64> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            })
            .map_err(|secs| secs.max(1))
    }

    /// Forgets clients whose buckets are full again, bounding memory.
    pub(crate) fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_429_with_a_whole_second_retry() {
        let limiter = Limiter::new(&RateLimitConfig {
            per_second: 1,
            burst: 3,
        })
        .unwrap();
        let key = ClientKey::Ip([10, 0, 0, 1].into());
        for _ in 0..3 {
            assert!(limiter.check(&key).is_ok());
        }
        assert_eq!(limiter.check(&key), Err(1));
        // Another client has its own bucket.
        assert!(limiter.check(&ClientKey::User(Uuid::now_v7())).is_ok());
        limiter.prune();
    }

    #[test]
    fn zero_per_second_disables() {
        assert!(Limiter::new(&RateLimitConfig {
            per_second: 0,
            burst: 5
        })
        .is_none());
    }
}
