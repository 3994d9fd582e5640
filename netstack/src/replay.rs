//! Sliding replay window for transport counters (RFC 6479 style bitmap), as
//! WireGuard uses: counters more than `WINDOW` behind the highest seen are
//! rejected, each counter inside the window is accepted once.

/// Number of 64-bit words in the bitmap (as in Linux and wireguard-go:
/// 8,128 counters of reordering tolerated, enough for GRO and multi-queue).
const WORDS: usize = 128;
/// How far behind the highest counter a packet may arrive and still count.
pub const WINDOW: u64 = ((WORDS - 1) * 64) as u64;

/// Replay protection state of one receiving session.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    next: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window: every counter is new.
    pub fn new() -> Self {
        Self {
            next: 0,
            bits: [0; WORDS],
        }
    }

    /// True if `counter` has not been seen and is not too old. Cheap pre-check
    /// before decryption; does not change the window.
    pub fn check(&self, counter: u64) -> bool {
        if counter >= self.next {
            return true;
        }
        if counter.saturating_add(WINDOW) < self.next {
            return false;
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] & (1 << bit) == 0
    }

    /// Records `counter` (after its packet authenticated). Returns false if it
    /// was a replay or too old, in which case the packet must be dropped.
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        if counter >= self.next {
            // Word of the highest counter seen so far (all zero if none).
            let cur_word = (self.next.saturating_sub(1) / 64) as usize;
            let new_word = (counter / 64) as usize;
            let clear = (new_word - cur_word).min(WORDS);
            for i in 1..=clear {
                self.bits[(cur_word + i) % WORDS] = 0;
            }
            self.next = counter.saturating_add(1);
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] |= 1 << bit;
        true
    }

    fn slot(counter: u64) -> (usize, u64) {
        (((counter / 64) as usize) % WORDS, counter % 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn accepts_each_counter_once() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(5));
        assert!(w.accept(3));
        assert!(!w.accept(3));
        assert!(w.accept(10_000));
        assert!(!w.accept(5), "far behind the window");
        assert!(w.accept(10_000 - WINDOW + 1));
        assert!(!w.accept(10_000 - WINDOW));
    }

    proptest! {
        /// The window agrees with a model that remembers every counter: a
        /// counter is accepted iff it is new and within WINDOW of the max seen.
        #[test]
        fn matches_reference_model(counters in proptest::collection::vec(0u64..20_000, 1..400)) {
            let mut w = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            let mut max: Option<u64> = None;
            for c in counters {
                let fresh = !seen.contains(&c);
                let in_window = max.is_none_or(|m| c + WINDOW > m);
                let expected = fresh && in_window;
                prop_assert_eq!(w.accept(c), expected, "counter {}", c);
                if expected {
                    seen.insert(c);
                    max = Some(max.map_or(c, |m| m.max(c)));
                }
            }
        }
    }
}
