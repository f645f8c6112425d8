//! Per-client-IP token bucket on session init: ECDH and signing are the expensive operations.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// `rate` tokens a second, at most `burst` held, one per session init.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: DashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        Self {
            rate: rate_per_sec,
            burst: f64::from(burst),
            buckets: DashMap::new(),
        }
    }

    /// Takes a token for `ip`, or says in how many whole seconds one will be there (at least 1).
    pub fn try_acquire(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let mut bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            // Saturating float-to-int cast; a wait is never negative here.
            Err((wait.ceil() as u64).max(1))
        }
    }

    /// Forgets buckets that are full again: they hold nothing a new bucket would not.
    pub fn sweep(&self, now: Instant) {
        let full_after = Duration::from_secs_f64((self.burst / self.rate).min(86_400.0));
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.updated) < full_after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_then_refill() {
        let limiter = RateLimiter::new(2.0, 3);
        let ip = IpAddr::from([10, 0, 0, 1]);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.try_acquire(ip, t0), Ok(()));
        }
        assert_eq!(limiter.try_acquire(ip, t0), Err(1));
        // Another IP has its own bucket.
        assert_eq!(limiter.try_acquire(IpAddr::from([10, 0, 0, 2]), t0), Ok(()));
        // Half a second at 2/s gives one token back.
        assert_eq!(
            limiter.try_acquire(ip, t0 + Duration::from_millis(500)),
            Ok(())
        );
        assert!(
            limiter
                .try_acquire(ip, t0 + Duration::from_millis(500))
                .is_err()
        );
        limiter.sweep(t0 + Duration::from_secs(10));
        assert!(limiter.buckets.is_empty());
    }
}
