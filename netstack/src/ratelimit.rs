//! Per-source token buckets for handshake messages that carry a valid cookie
//! while we are under load (WireGuard: 20 per second per address, burst 5),
//! so one address that holds a cookie cannot keep the device busy with
//! Diffie-Hellman work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Handshake messages per second one source may send under load.
const PER_SECOND: u64 = 20;
/// Messages a source may send at once.
const BURST: u64 = 5;
/// Nanoseconds of refill one message costs.
const COST: u64 = 1_000_000_000 / PER_SECOND;
/// Most sources tracked; beyond this, new sources are refused until idle
/// ones are swept (each source needed a cookie sent to its address).
const MAX_SOURCES: usize = 4096;

/// The limiter: one bucket per source address.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<IpAddr, (u64, Instant)>,
}

impl RateLimiter {
    /// True if `ip` may have one more handshake message processed now.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&ip) {
            let full = Duration::from_nanos(BURST * COST);
            self.buckets
                .retain(|_, (_, last)| now.saturating_duration_since(*last) < full);
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((BURST * COST, now));
        let refill =
            u64::try_from(now.saturating_duration_since(*last).as_nanos()).unwrap_or(u64::MAX);
        *tokens = tokens.saturating_add(refill).min(BURST * COST);
        *last = now;
        if *tokens >= COST {
            *tokens -= COST;
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
        let mut r = RateLimiter::default();
        let now = Instant::now();
        let a = IpAddr::from([198, 18, 0, 1]);
        let b = IpAddr::from([198, 18, 0, 2]);
        assert_eq!((0..10).filter(|_| r.allow(a, now)).count(), BURST as usize);
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
        let mut r = RateLimiter::default();
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
