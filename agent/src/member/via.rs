//! `--via`: queries forwarded to another member, waiting for its answer,
//! sans-IO. A query to a known member waits under its request id; one to a
//! control address of a node not known yet waits for the connection to
//! that address first. Every query is answered within [`TIMEOUT`], and at
//! most [`MAX_WAITING`] wait at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a forwarded query may take.
pub const TIMEOUT: Duration = Duration::from_secs(12);
/// Queries waiting at once, at most.
pub const MAX_WAITING: usize = 64;

/// Queries waiting: `K` names a request, `R` is where its answer goes.
pub struct Via<K, R> {
    sent: BTreeMap<K, (R, Instant)>,
    dialing: Vec<(SocketAddr, String, R, Instant)>,
}

impl<K: Ord + Copy, R> Via<K, R> {
    /// Nothing waiting.
    pub fn new() -> Self {
        Self {
            sent: BTreeMap::new(),
            dialing: Vec::new(),
        }
    }

    /// True if another query may wait.
    pub fn has_room(&self) -> bool {
        self.sent.len() + self.dialing.len() < MAX_WAITING
    }

    /// Query `id` went out; its answer goes to `reply`.
    pub fn sent(&mut self, id: K, reply: R, now: Instant) {
        self.sent.insert(id, (reply, now));
    }

    /// `query` waits for a connection to `addr`.
    pub fn dialing(&mut self, addr: SocketAddr, query: String, reply: R, now: Instant) {
        self.dialing.push((addr, query, reply, now));
    }

    /// A connection to `addr` is up: the queries waiting for it, to send
    /// now (then [`Via::sent`] each), with when they started.
    pub fn connected(&mut self, addr: SocketAddr) -> Vec<(String, R, Instant)> {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.dialing)
            .into_iter()
            .partition(|(a, ..)| *a == addr);
        self.dialing = waiting;
        ready.into_iter().map(|(_, q, r, at)| (q, r, at)).collect()
    }

    /// True if `id` waits for its answer here.
    pub fn waits(&self, id: &K) -> bool {
        self.sent.contains_key(id)
    }

    /// The answer (or failure) of `id` arrived: where it goes.
    pub fn answered(&mut self, id: &K) -> Option<R> {
        self.sent.remove(id).map(|(r, _)| r)
    }

    /// Queries older than [`TIMEOUT`] at `now`, with what to tell their
    /// askers.
    pub fn expire(&mut self, now: Instant) -> Vec<(R, String)> {
        let late = |at: &Instant| now.saturating_duration_since(*at) >= TIMEOUT;
        let ids: Vec<K> = self
            .sent
            .iter()
            .filter(|(_, (_, at))| late(at))
            .map(|(id, _)| *id)
            .collect();
        let mut out: Vec<(R, String)> = ids
            .iter()
            .filter_map(|id| self.sent.remove(id))
            .map(|(r, _)| (r, "that member did not answer in time".to_string()))
            .collect();
        let (old, fresh): (Vec<_>, Vec<_>) = std::mem::take(&mut self.dialing)
            .into_iter()
            .partition(|(.., at)| late(at));
        self.dialing = fresh;
        out.extend(old.into_iter().map(|(addr, _, r, _)| {
            (
                r,
                format!("nothing answers at {addr}: check the address and that its agent runs"),
            )
        }));
        out
    }

    /// When the oldest query times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sent
            .values()
            .map(|(_, at)| *at)
            .chain(self.dialing.iter().map(|(.., at)| *at))
            .min()
            .map(|at| at + TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_answered_once_or_time_out_and_are_bounded() {
        let t0 = testbed::fake_time::origin();
        let mut v: Via<u32, &str> = Via::new();
        assert_eq!(v.poll_timeout(), None);
        v.sent(1, "a", t0);
        let addr: SocketAddr = "198.18.0.4:51821".parse().unwrap();
        v.dialing(
            addr,
            "{\"cmd\":\"peers\"}".into(),
            "b",
            t0 + Duration::from_secs(1),
        );
        assert_eq!(v.poll_timeout(), Some(t0 + TIMEOUT));
        assert!(v.waits(&1) && !v.waits(&2));
        assert_eq!(v.answered(&1), Some("a"));
        assert_eq!(v.answered(&1), None, "once");
        assert!(v.connected("198.18.0.5:51821".parse().unwrap()).is_empty());
        let ready = v.connected(addr);
        assert_eq!(ready.len(), 1);
        v.sent(2, ready[0].1, ready[0].2);
        assert!(v.expire(t0 + TIMEOUT).is_empty(), "not yet");
        let late = v.expire(t0 + TIMEOUT + Duration::from_secs(1));
        assert_eq!(late.len(), 1);
        assert!(late[0].1.contains("did not answer"));
        for i in 0..MAX_WAITING as u32 {
            assert!(v.has_room());
            v.sent(100 + i, "x", t0);
        }
        assert!(!v.has_room());
    }
}
