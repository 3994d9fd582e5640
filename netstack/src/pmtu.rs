//! Path MTU search towards one peer, driven by padded endpoint-echo
//! questions (`echo`): which size to probe next, and what answers and
//! silences say. Sizes are UDP payload lengths. The data-plane socket sends
//! with DF set and ignores ICMP "fragmentation needed" (Linux's
//! `IP_PMTUDISC_PROBE`), so a path narrower than the hosts' links silently
//! drops full-size tunnel datagrams: only probing finds it.

use std::time::{Duration, Instant};

/// Every IPv4 path carries 576-byte packets: 548 bytes of UDP payload.
pub const MIN_PROBE: u16 = 548;
/// Unanswered probes in a row after which a size counts as too big (a
/// loss or two under load is not proof).
const MISSES: u8 = 3;
/// A size found too big is tried again after this long (the path may
/// have changed, or the misses were losses after all).
pub const RETRY: Duration = Duration::from_secs(600);
/// The search stops when the largest answered and the smallest refused
/// size are this close.
const CLOSE: u16 = 8;

/// What is known about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathProbe {
    target: u16,
    ok: u16,
    bad: Option<(u16, Instant)>,
    misses: u8,
    /// The limit found before a retry, kept while the retry runs.
    held: Option<u16>,
    /// When the latest question the peer answered was sent.
    reached: Option<Instant>,
}

impl PathProbe {
    /// A path that should carry `target` bytes (the largest tunnel datagram
    /// of the overlay MTU).
    pub fn new(target: u16) -> Self {
        Self {
            target,
            ok: MIN_PROBE,
            bad: None,
            misses: 0,
            held: None,
            reached: None,
        }
    }

    /// Changes the size the path should carry.
    pub fn set_target(&mut self, target: u16) {
        self.target = target;
    }

    /// The next size to probe at `now`, or `None` when the path is known
    /// to carry the target or the search has converged below it.
    pub fn next(&mut self, now: Instant) -> Option<u16> {
        if self
            .bad
            .is_some_and(|(_, at)| now.saturating_duration_since(at) >= RETRY)
        {
            // Probe the target again; the limit holds meanwhile.
            self.held = self.limit();
            self.bad = None;
        }
        if self.ok >= self.target {
            return None;
        }
        match self.bad {
            None => Some(self.target),
            Some((b, _)) if b.saturating_sub(self.ok) <= CLOSE => None,
            Some((b, _)) => Some(self.ok + (b.min(self.target + 1) - self.ok) / 2),
        }
    }

    /// A probe of `len` bytes was answered.
    pub fn answered(&mut self, len: u16) {
        self.ok = self.ok.max(len);
        if self.bad.is_some_and(|(b, _)| b <= len) {
            self.bad = None;
        }
        if self.ok >= self.target {
            self.held = None; // the path carries the target (now)
        }
        self.misses = 0;
    }

    /// Some question sent at `sent_at` (a small one, say) was answered:
    /// the peer was reachable then.
    pub fn reached(&mut self, sent_at: Instant) {
        self.reached = Some(self.reached.map_or(sent_at, |r| r.max(sent_at)));
    }

    /// A probe of `len` bytes sent at `sent_at` got no answer in time
    /// (`now`). It counts against the size only if a question sent at the
    /// same time or later was answered: a peer that answers nothing (gone,
    /// or our own loop stalled) says nothing about sizes.
    pub fn unanswered(&mut self, len: u16, sent_at: Instant, now: Instant) {
        if len <= self.ok || self.reached.is_none_or(|r| r < sent_at) {
            return;
        }
        self.misses += 1;
        if self.misses >= MISSES {
            let b = self.bad.map_or(len, |(b, _)| b.min(len));
            self.bad = Some((b, now));
            self.misses = 0;
        }
    }

    /// The largest size the path carries, once probing has shown it to be
    /// narrower than sizes it was asked to carry.
    pub fn limit(&self) -> Option<u16> {
        self.bad
            .is_some_and(|(b, _)| b.saturating_sub(self.ok) <= CLOSE)
            .then_some(self.ok)
            .or(self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Probes a path that carries `carries` bytes until the search stops;
    /// returns the probe and how many probes it took.
    fn search(target: u16, carries: u16) -> (PathProbe, usize) {
        let mut p = PathProbe::new(target);
        let mut sent = 0;
        let now = Instant::now();
        while let Some(len) = p.next(now) {
            sent += 1;
            assert!(sent < 200, "the search does not end: {p:?}");
            p.reached(now); // the small question sent alongside
            if len <= carries {
                p.answered(len);
            } else {
                p.unanswered(len, now, now);
            }
        }
        (p, sent)
    }

    #[test]
    fn a_path_that_carries_the_target_needs_one_probe() {
        let (p, sent) = search(1432, 1500);
        assert_eq!((p.limit(), sent), (None, 1));
    }

    #[test]
    fn a_narrow_path_is_found_within_a_few_bytes() {
        let (p, _) = search(1432, 1372);
        let limit = p.limit().unwrap();
        assert!(limit <= 1372 && 1372 - limit <= CLOSE, "{limit}");
    }

    #[test]
    fn one_loss_is_not_a_limit_and_a_lower_target_keeps_the_limit() {
        let now = Instant::now();
        let mut p = PathProbe::new(1432);
        for _ in 0..5 {
            p.unanswered(1432, now, now);
        }
        assert_eq!(
            p.next(now),
            Some(1432),
            "a silent peer says nothing about sizes"
        );
        assert_eq!(p.limit(), None);
        p.reached(now);
        p.unanswered(1432, now, now);
        p.unanswered(1432, now, now);
        assert_eq!(
            p.next(now),
            Some(1432),
            "two misses: probe the same size again"
        );
        p.answered(1432);
        assert_eq!((p.next(now), p.limit()), (None, None));

        let (mut p, _) = search(1432, 1372);
        let limit = p.limit();
        // The overlay MTU went down to fit: the limit must stay, or the
        // MTU would climb back and oscillate.
        p.set_target(1300);
        assert_eq!((p.next(now), p.limit()), (None, limit));
        // Ten minutes on, the target is tried again (the path may be
        // wider now) while the limit holds; refused again, it stays.
        p.set_target(1432);
        let later = now + RETRY + Duration::from_secs(1);
        assert_eq!(p.next(later), Some(1432));
        assert_eq!(p.limit(), limit);
        while let Some(len) = p.next(later) {
            assert_eq!(p.limit(), limit, "the limit holds during the search");
            p.reached(later);
            if len <= 1372 {
                p.answered(len);
            } else {
                p.unanswered(len, later, later);
            }
        }
        assert_eq!(p.limit(), limit);
        // Once the path carries the target, the limit is gone.
        let much_later = later + RETRY;
        assert_eq!(p.next(much_later), Some(1432));
        p.answered(1432);
        assert_eq!((p.next(much_later), p.limit()), (None, None));
    }

    proptest! {
        #[test]
        fn the_search_ends_and_never_overstates_the_path(
            target in MIN_PROBE..9000u16,
            carries in MIN_PROBE..9100u16,
        ) {
            let (p, sent) = search(target, carries);
            prop_assert!(sent <= 3 * 16);
            match p.limit() {
                Some(l) => {
                    prop_assert!(l <= carries);
                    prop_assert!(carries < target);
                    prop_assert!(carries - l <= CLOSE);
                }
                None => prop_assert!(carries >= target),
            }
        }
    }
}
