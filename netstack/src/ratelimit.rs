//! Per-source token buckets for handshake messages, so one address cannot
//! keep the device busy with Diffie-Hellman work: [`RateLimiter::proven`]
//! for messages that carry a valid cookie while we are under load
//! (WireGuard: 20 per second per address, burst 5), and
//! [`RateLimiter::strangers`] for messages without one while we are not (a
//! source over its share must show a cookie first, so a flood from one
//! address costs cookie replies, not a Diffie-Hellman each, long before
//! the device as a whole is under load).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most sources tracked; beyond this, new sources are refused until idle
/// ones are swept.
const MAX_SOURCES: usize = 4096;

/// The limiter: one bucket per source address.
#[derive(Debug)]
pub struct RateLimiter {
    /// Nanoseconds of refill one message costs.
    cost: u64,
    /// Messages a source may send at once.
    burst: u64,
    buckets: HashMap<IpAddr, (u64, Instant)>,
}

impl RateLimiter {
    /// `per_second` messages per source, `burst` at once.
    fn new(per_second: u64, burst: u64) -> Self {
        Self {
            cost: 1_000_000_000 / per_second.max(1),
            burst: burst.max(1),
            buckets: HashMap::new(),
        }
    }

    /// For messages with a valid cookie under load: 20 a second per
    /// source, 5 at once (WireGuard's figures).
    pub fn proven() -> Self {
        Self::new(20, 5)
    }

    /// For messages without a cookie while the device is not under load:
    /// 40 a second per source, 40 at once (as many peers behind one
    /// address may handshake together after a restart).
    pub fn strangers() -> Self {
        Self::new(40, 40)
    }

    /// True if `ip` may have one more handshake message processed now.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let full_bucket = self.burst * self.cost;
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&ip) {
            let full = Duration::from_nanos(full_bucket);
            self.buckets
                .retain(|_, (_, last)| now.saturating_duration_since(*last) < full);
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((full_bucket, now));
        let refill =
            u64::try_from(now.saturating_duration_since(*last).as_nanos()).unwrap_or(u64::MAX);
        *tokens = tokens.saturating_add(refill).min(full_bucket);
        *last = now;
        if *tokens >= self.cost {
            *tokens -= self.cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate_per_source() {
        let mut r = RateLimiter::proven();
        let now = Instant::now();
        let a = IpAddr::from([198, 18, 0, 1]);
        let b = IpAddr::from([198, 18, 0, 2]);
        assert_eq!((0..10).filter(|_| r.allow(a, now)).count(), 5);
        assert!(r.allow(b, now), "another source has its own bucket");
        let later = now + Duration::from_millis(100);
        assert_eq!(
            (0..10).filter(|_| r.allow(a, later)).count(),
            2,
            "20/s refills 2 in 100 ms"
        );
    }

    #[test]
    fn table_is_bounded() {
        let mut r = RateLimiter::proven();
        let now = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 100) {
            r.allow(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(r.buckets.len() <= MAX_SOURCES);
        let later = now + Duration::from_secs(2);
        assert!(
            r.allow(IpAddr::from([1, 2, 3, 4]), later),
            "idle sources are swept"
        );
    }
}
