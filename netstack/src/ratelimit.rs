//! Per-source token buckets for handshake messages, so one source cannot
//! keep the device busy with Diffie-Hellman work: [`RateLimiter::proven`]
//! for messages that carry a valid cookie when one is demanded (WireGuard:
//! 20 per second per source, burst 5), and [`RateLimiter::strangers`] for
//! initiations while the device is not under load (a source over its share
//! must show a cookie first, so a flood from one source costs cookie
//! replies, not a Diffie-Hellman each, long before the device as a whole
//! is under load). A source is an IPv4 address or an IPv6 /64 (one host
//! may hold a whole /64), except relays' virtual endpoints, each its own.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
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
    /// `per_second` messages per source (1 to 1,000 a second), `burst` at
    /// once.
    fn new(per_second: u64, burst: u64) -> Self {
        Self {
            cost: 1_000_000_000 / per_second.clamp(1, 1_000),
            burst: burst.clamp(1, 1_000),
            buckets: HashMap::new(),
        }
    }

    /// For messages with a valid cookie when one was demanded: 20 a second
    /// per source, 5 at once (WireGuard's figures).
    pub fn proven() -> Self {
        Self::new(20, 5)
    }

    /// For initiations while the device is not under load: 40 a second
    /// per source, 40 at once (as many peers behind one address may
    /// handshake together after a restart).
    pub fn strangers() -> Self {
        Self::new(40, 40)
    }

    /// True if `from` may have one more handshake message processed now.
    pub fn allow(&mut self, from: SocketAddr, now: Instant) -> bool {
        let ip = source(&from);
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

/// The source `from` counts against: its IPv4 address, its IPv6 /64, or
/// the whole virtual endpoint of a relayed path.
fn source(from: &SocketAddr) -> IpAddr {
    match from {
        SocketAddr::V6(a) if !crate::relay::is_virtual(from) => {
            let s = a.ip().segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        other => other.ip(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: [u8; 4]) -> SocketAddr {
        SocketAddr::from((ip, 51820))
    }

    #[test]
    fn burst_then_steady_rate_per_source() {
        let mut r = RateLimiter::proven();
        let now = Instant::now();
        let (a, b) = (at([198, 18, 0, 1]), at([198, 18, 0, 2]));
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
    fn an_ipv6_source_is_its_64_but_each_relayed_path_is_its_own() {
        let mut r = RateLimiter::proven();
        let now = Instant::now();
        let host = |last: u16| {
            SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last), 51820))
        };
        let spent = (0..10u16).filter(|i| r.allow(host(*i), now)).count();
        assert_eq!(spent, 5, "addresses of one /64 share a bucket");
        let relayed: Vec<SocketAddr> = (0..10).map(crate::relay::virtual_endpoint).collect();
        assert!(
            relayed.iter().all(|v| r.allow(*v, now)),
            "each virtual endpoint has a bucket of its own"
        );
    }

    #[test]
    fn table_is_bounded() {
        let mut r = RateLimiter::proven();
        let now = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 100) {
            r.allow(at(i.to_be_bytes()), now);
        }
        assert!(r.buckets.len() <= MAX_SOURCES);
        let later = now + Duration::from_secs(2);
        assert!(r.allow(at([1, 2, 3, 4]), later), "idle sources are swept");
    }
}
