//! What a relay forwards, sans-IO: only between members that share a
//! circle, within bounds, metered per circle.
//!
//! The caller puts every member in circles (a bit set, [`Circles`]): its
//! own network's members in [`OWN`], and for each federation partner one
//! more circle holding that partner's exposed members and the own members
//! exposed to it. Two members are relayed to each other only if they share
//! a circle: an agreement in force connects them, or they are of one
//! network. A partner's lent relay, or a member of a network two partners
//! do not share, is in no common circle and gets nothing through (peering
//! is not transitive). Bytes are metered per circle (per agreement).
//!
//! Bounds: at most [`MAX_PAIRS`] pairs relayed at once (a pair idle for
//! [`PAIR_IDLE`] is forgotten), and [`RATE`] bytes per second with a
//! burst of [`BURST`] for all pairs together; past them a datagram is
//! refused and counted.

use crate::relay::KeyId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A member's circles: bit `i` set means it is in circle `i`.
pub type Circles = u64;
/// The own network's circle.
pub const OWN: Circles = 1;
/// Circles at most (bits of [`Circles`]).
pub const MAX_CIRCLES: usize = 64;
/// Pairs relayed at once, at most.
pub const MAX_PAIRS: usize = 4096;
/// A pair that sent nothing this long no longer counts.
pub const PAIR_IDLE: Duration = Duration::from_secs(120);
/// Bytes relayed per second, at most, once the burst is spent (1 Gbit/s).
pub const RATE: u64 = 125_000_000;
/// Bytes that may be relayed at once beyond the rate.
pub const BURST: u64 = 16 * 1024 * 1024;

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The two members share no circle: nothing connects them.
    Unconnected,
    /// [`MAX_PAIRS`] pairs are relayed already.
    TooManyPairs,
    /// The byte budget ([`RATE`], [`BURST`]) is spent.
    OverRate,
}

/// Refusals so far, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused {
    /// Pairs nothing connects.
    pub unconnected: u64,
    /// Past [`MAX_PAIRS`].
    pub too_many_pairs: u64,
    /// Past the byte budget.
    pub over_rate: u64,
}

/// The relay's rules and meters.
#[derive(Debug, Clone)]
pub struct Forwarding {
    circles: HashMap<KeyId, Circles>,
    pairs: HashMap<(KeyId, KeyId), Instant>,
    tokens: u64,
    refilled: Option<Instant>,
    metered: [u64; MAX_CIRCLES],
    refused: Refused,
}

impl Default for Forwarding {
    fn default() -> Self {
        Self {
            circles: HashMap::new(),
            pairs: HashMap::new(),
            tokens: BURST,
            refilled: None,
            metered: [0; MAX_CIRCLES],
            refused: Refused::default(),
        }
    }
}

impl Forwarding {
    /// Sets every member's circles (a member not given is in none).
    pub fn set_circles(&mut self, circles: impl IntoIterator<Item = (KeyId, Circles)>) {
        self.circles = circles.into_iter().collect();
        let known = &self.circles;
        self.pairs
            .retain(|(a, b), _| known.contains_key(a) && known.contains_key(b));
    }

    /// The circles of member `id` (none if unknown).
    pub fn circles_of(&self, id: &KeyId) -> Circles {
        self.circles.get(id).copied().unwrap_or(0)
    }

    /// May `len` bytes go from `source` to `target` now? Counts and meters
    /// what it decides.
    pub fn admit(
        &mut self,
        source: KeyId,
        target: KeyId,
        len: usize,
        now: Instant,
    ) -> Result<(), Refusal> {
        let shared = self.circles_of(&source) & self.circles_of(&target);
        let result = self.check(shared, (source, target), len, now);
        match result {
            Ok(()) => {
                // The lowest shared circle pays: one's own network first.
                let circle = usize::try_from(shared.trailing_zeros()).unwrap_or(0);
                if let Some(m) = self.metered.get_mut(circle) {
                    *m = m.saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
                }
            }
            Err(Refusal::Unconnected) => self.refused.unconnected += 1,
            Err(Refusal::TooManyPairs) => self.refused.too_many_pairs += 1,
            Err(Refusal::OverRate) => self.refused.over_rate += 1,
        }
        result
    }

    fn check(
        &mut self,
        shared: Circles,
        pair: (KeyId, KeyId),
        len: usize,
        now: Instant,
    ) -> Result<(), Refusal> {
        if shared == 0 {
            return Err(Refusal::Unconnected);
        }
        if !self.pairs.contains_key(&pair) && self.pairs.len() >= MAX_PAIRS {
            self.pairs
                .retain(|_, used| now.saturating_duration_since(*used) < PAIR_IDLE);
            if self.pairs.len() >= MAX_PAIRS {
                return Err(Refusal::TooManyPairs);
            }
        }
        self.refill(now);
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        if self.tokens < len {
            return Err(Refusal::OverRate);
        }
        self.tokens -= len;
        self.pairs.insert(pair, now);
        Ok(())
    }

    fn refill(&mut self, now: Instant) {
        let Some(last) = self.refilled else {
            self.refilled = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(last);
        let earned = u64::try_from(elapsed.as_micros().saturating_mul(u128::from(RATE)) / 1_000_000)
            .unwrap_or(u64::MAX);
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(BURST);
            self.refilled = Some(now);
        }
    }

    /// Bytes relayed so far per circle (index: circle number).
    pub fn metered(&self) -> &[u64; MAX_CIRCLES] {
        &self.metered
    }

    /// Refusals so far.
    pub fn refused(&self) -> Refused {
        self.refused
    }

    /// Pairs relayed lately (within [`PAIR_IDLE`] of the last sweep).
    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: KeyId = [1; 8];
    const B: KeyId = [2; 8];
    const C: KeyId = [3; 8];
    const LENT: KeyId = [4; 8];

    #[test]
    fn only_members_sharing_a_circle_are_relayed_and_the_lowest_circle_pays() {
        let mut f = Forwarding::default();
        let partner = 1 << 1;
        // A: own and exposed to the partner; B: own only; C: the partner's
        // exposed member; LENT: the partner's lent relay (no circle).
        f.set_circles([(A, OWN | partner), (B, OWN), (C, partner), (LENT, 0)]);
        let now = Instant::now();
        assert_eq!(f.admit(A, B, 100, now), Ok(()));
        assert_eq!(f.admit(C, A, 50, now), Ok(()));
        assert_eq!(f.admit(C, B, 50, now), Err(Refusal::Unconnected));
        assert_eq!(f.admit(LENT, C, 50, now), Err(Refusal::Unconnected));
        assert_eq!(f.admit([9; 8], A, 50, now), Err(Refusal::Unconnected));
        assert_eq!(f.metered()[0], 100);
        assert_eq!(f.metered()[1], 50);
        assert_eq!(f.refused().unconnected, 3);
        assert_eq!(f.pairs(), 2);
    }

    #[test]
    fn the_byte_budget_refills_at_the_rate_and_never_beyond_the_burst() {
        let mut f = Forwarding::default();
        f.set_circles([(A, OWN), (B, OWN)]);
        let t0 = Instant::now();
        let burst = usize::try_from(BURST).unwrap();
        assert_eq!(f.admit(A, B, burst, t0), Ok(()));
        assert_eq!(f.admit(A, B, 1, t0), Err(Refusal::OverRate));
        let ms = Duration::from_millis(1);
        let per_ms = usize::try_from(RATE / 1000).unwrap();
        assert_eq!(f.admit(A, B, per_ms, t0 + ms), Ok(()));
        assert_eq!(f.admit(A, B, 1, t0 + ms), Err(Refusal::OverRate));
        // An idle hour earns one burst, no more.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(f.admit(A, B, burst, later), Ok(()));
        assert_eq!(f.admit(A, B, 1, later), Err(Refusal::OverRate));
        assert_eq!(f.refused().over_rate, 3);
    }

    #[test]
    fn pairs_are_bounded_and_idle_ones_make_room() {
        let mut f = Forwarding::default();
        let ids: Vec<KeyId> = (0..=MAX_PAIRS)
            .map(|i| {
                let mut id = [0u8; 8];
                id[..8].copy_from_slice(&u64::try_from(i).unwrap().to_le_bytes());
                id
            })
            .collect();
        f.set_circles(ids.iter().map(|id| (*id, OWN)).chain([(A, OWN)]));
        let t0 = Instant::now();
        for id in &ids[..MAX_PAIRS] {
            assert_eq!(f.admit(A, *id, 1, t0), Ok(()));
        }
        let last = ids[MAX_PAIRS];
        assert_eq!(f.admit(A, last, 1, t0), Err(Refusal::TooManyPairs));
        // A known pair still goes.
        assert_eq!(f.admit(A, ids[0], 1, t0), Ok(()));
        assert_eq!(f.refused().too_many_pairs, 1);
        assert_eq!(f.admit(A, last, 1, t0 + PAIR_IDLE), Ok(()));
    }
}
