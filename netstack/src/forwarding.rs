//! What a relay forwards, sans-IO: only between members an agreement (or
//! one network) connects, within bounds, metered per agreement.
//!
//! The caller puts every member in circles (a bit set, [`Circles`]): its
//! own network's members in [`OWN`]; for the `k`-th federation partner,
//! the own members exposed to it in [`ours(k)`](ours) and that partner's
//! exposed members in [`theirs(k)`](theirs). Two members are relayed to
//! each other only if both are own members, or one is on our side and the
//! other on the partner's side of the same agreement. So a partner cannot
//! relay its own pairs through us, a partner's lent relay (in no circle)
//! is never an end, and two partners of ours that are not each other's get
//! nothing through (peering is not transitive). Bytes are metered per
//! circle: [`OWN`]'s bit for own pairs, `theirs(k)`'s for the `k`-th
//! agreement.
//!
//! Bounds: at most [`MAX_PAIRS`] pairs relayed at once (a pair idle for
//! [`PAIR_IDLE`] is forgotten, looked for at most every [`SWEEP_EVERY`]),
//! and [`RATE`] bytes per second with a burst of [`BURST`] for all pairs
//! together; past them a datagram is refused and counted.

use crate::relay::KeyId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A member's circles: bit `i` set means it is in circle `i`.
pub type Circles = u64;
/// The own network's circle.
pub const OWN: Circles = 1;
/// Circles at most (bits of [`Circles`]).
pub const MAX_CIRCLES: usize = 64;
/// Agreements that get circles, at most (two bits each after [`OWN`]).
pub const MAX_AGREEMENTS: u32 = 31;
/// Every "our side" bit.
const OURS: Circles = 0xAAAA_AAAA_AAAA_AAAA;

/// The circle of the own members exposed under the `k`-th agreement
/// (none past [`MAX_AGREEMENTS`]).
pub fn ours(k: u32) -> Circles {
    if k < MAX_AGREEMENTS {
        1 << (2 * k + 1)
    } else {
        0
    }
}

/// The circle of the `k`-th partner's exposed members (none past
/// [`MAX_AGREEMENTS`]); its bit is where that agreement is metered.
pub fn theirs(k: u32) -> Circles {
    ours(k) << 1
}

/// The circle that pays for relaying between members in circles `a` and
/// `b`: [`OWN`] for two own members, else `theirs(k)` of an agreement with
/// one on each side; `None` if nothing connects them.
fn connecting(a: Circles, b: Circles) -> Option<u32> {
    if a & b & OWN != 0 {
        return Some(0);
    }
    let across = (((a & OURS) << 1) & b) | (((b & OURS) << 1) & a);
    (across != 0).then(|| across.trailing_zeros())
}
/// A full pair table is swept for idle pairs at most this often.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
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
    swept: Option<Instant>,
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
            swept: None,
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
        let circle = connecting(self.circles_of(&source), self.circles_of(&target));
        let result = self.check(circle.is_some(), (source, target), len, now);
        match result {
            Ok(()) => {
                let circle = circle.and_then(|c| usize::try_from(c).ok()).unwrap_or(0);
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
        connected: bool,
        pair: (KeyId, KeyId),
        len: usize,
        now: Instant,
    ) -> Result<(), Refusal> {
        if !connected {
            return Err(Refusal::Unconnected);
        }
        if !self.pairs.contains_key(&pair) && self.pairs.len() >= MAX_PAIRS {
            let due = self
                .swept
                .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY);
            if due {
                self.swept = Some(now);
                self.pairs
                    .retain(|_, used| now.saturating_duration_since(*used) < PAIR_IDLE);
            }
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
        let earned =
            u64::try_from(elapsed.as_micros().saturating_mul(u128::from(RATE)) / 1_000_000)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: KeyId = [1; 8];
    const B: KeyId = [2; 8];
    const C: KeyId = [3; 8];
    const LENT: KeyId = [4; 8];

    const D: KeyId = [5; 8];
    const G: KeyId = [6; 8];

    #[test]
    fn only_pairs_an_agreement_or_the_network_connects_are_relayed_and_metered_there() {
        let mut f = Forwarding::default();
        // A: own and exposed to partner 0; B: own only; C and D: partner
        // 0's exposed members; G: partner 1's exposed member; LENT: partner
        // 0's lent relay (no circle).
        f.set_circles([
            (A, OWN | ours(0)),
            (B, OWN),
            (C, theirs(0)),
            (D, theirs(0)),
            (G, theirs(1)),
            (LENT, 0),
        ]);
        let now = Instant::now();
        assert_eq!(f.admit(A, B, 100, now), Ok(()));
        assert_eq!(f.admit(C, A, 50, now), Ok(()));
        assert_eq!(f.admit(A, C, 30, now), Ok(()));
        for (x, y) in [(C, B), (C, D), (G, C), (G, A), (LENT, C), ([9; 8], A)] {
            assert_eq!(f.admit(x, y, 50, now), Err(Refusal::Unconnected));
        }
        assert_eq!(f.metered()[0], 100);
        assert_eq!(
            f.metered()[usize::try_from(theirs(0).trailing_zeros()).unwrap()],
            80
        );
        assert_eq!(f.refused().unconnected, 6);
        assert_eq!(
            ours(MAX_AGREEMENTS),
            0,
            "past the last agreement: no circle"
        );
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
