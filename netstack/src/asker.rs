//! The asking side of the endpoint echo ([`crate::echo`]), sans-IO: every
//! second a few members with a direct endpoint are asked where our
//! datagrams reach them from. Their answers tell this node its reflexive
//! endpoints (behind a NAT, the NAT's public address), that it moved (a
//! member that saw us at one endpoint now sees us at another), and — with
//! questions padded to the tunnel's size while a path is not known to
//! carry it — how wide each path is ([`crate::pmtu`]).
//!
//! A question can also check one path: [`Asker::verify`] asks a member at
//! a given endpoint (a direct candidate of a relayed peer); the answer
//! proves datagrams cross that path both ways ([`Outcome::Verified`]).
//!
//! Towards a relayed peer behind a NAT, [`Asker::punch`] opens the way
//! instead of knocking: questions with a TTL that passes our own NAT but
//! dies before the peer's (a datagram reaching a router's own stack
//! unasked leaves a conntrack entry there that takes the very port its
//! host's reply flow needs), then a call through the relay
//! ([`Asker::poll_call`]) that makes the peer ask us straight away, now
//! that our NAT expects it.
//!
//! [`Asker::handle_timeout`] picks whom to ask ([`Asker::poll_question`]);
//! the caller sends the questions and feeds the answers back
//! ([`Asker::handle_answer`]); conclusions come out of
//! [`Asker::poll_outcome`].

use crate::echo::REQUEST_LEN;
use crate::pmtu::PathProbe;
use crate::PublicKey;
use rand_core::RngCore;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Members asked per round.
pub const PER_ROUND: usize = 3;
/// One round this often.
pub const EVERY: Duration = Duration::from_secs(1);
/// Questions whose answers are awaited, at most (older ones are forgotten).
const MAX_ASKED: usize = 64;
/// A question unanswered this long is counted as lost.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// A reflexive endpoint is kept this long after it was last reported.
pub const OBSERVED_FOR: Duration = Duration::from_secs(20);
/// Reflexive endpoints remembered at once, at most.
const MAX_OBSERVED: usize = 64;
/// Reflexive endpoints published, at most.
pub const MAX_REFLEXIVE: usize = 4;
/// IPv4 and UDP headers: what a padded question travels in.
pub const IPV4_UDP: u16 = 28;
/// TTLs of a punch: past a NAT one or two hops away, short of a peer's
/// NAT across the internet (many more hops away).
pub const PUNCH_TTLS: [u8; 2] = [2, 3];

/// A question to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question {
    /// To whom.
    pub peer: PublicKey,
    /// Its nonce.
    pub nonce: u64,
    /// Padded to this many bytes (at most [`REQUEST_LEN`]: not padded).
    pub len: u16,
    /// Where to send it (`None`: the member's current direct endpoint).
    pub to: Option<SocketAddr>,
    /// The IP TTL to send it with (`None`: the socket's own).
    pub ttl: Option<u8>,
}

/// What the answers showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A member that saw us at `from` now sees us at `to`: this node's
    /// address or its NAT's moved.
    Moved {
        /// Where it saw us before.
        from: SocketAddr,
        /// Where it sees us now.
        to: SocketAddr,
    },
    /// A member sees us at an endpoint not reported before.
    Seen(SocketAddr),
    /// The narrowest path found changed: the largest UDP payload it
    /// carries as an IPv4 packet size, or `None` when every path carries
    /// the tunnel's size.
    PathMtu(Option<u16>),
    /// `peer` answered the question sent to it at `endpoint` ([`Asker::verify`]).
    Verified {
        /// The member.
        peer: PublicKey,
        /// The endpoint the question went to.
        endpoint: SocketAddr,
    },
}

#[derive(Debug, Clone, Copy)]
struct Asked {
    nonce: u64,
    peer: PublicKey,
    len: u16,
    at: Instant,
    /// The endpoint a path check went to.
    to: Option<SocketAddr>,
}

/// The asker's state.
#[derive(Debug, Default)]
pub struct Asker {
    asked: VecDeque<Asked>,
    probes: BTreeMap<PublicKey, PathProbe>,
    /// Where each member last saw us.
    echoed: BTreeMap<PublicKey, SocketAddr>,
    /// Reflexive endpoints: when first and last reported.
    observed: BTreeMap<SocketAddr, (Instant, Instant)>,
    cursor: usize,
    path_mtu: Option<u16>,
    questions: VecDeque<Question>,
    /// Calls to send through relays, after the questions: (peer, nonce).
    calls: VecDeque<(PublicKey, u64)>,
    outcomes: VecDeque<Outcome>,
    next_round: Option<Instant>,
}

impl Asker {
    /// Nothing asked yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// When [`Asker::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_round
    }

    /// A round, if due: questions to the next [`PER_ROUND`] of `direct`
    /// (members and their direct endpoints), each padded to `target` bytes
    /// too (the largest tunnel datagram, as a UDP payload) while its path
    /// is not known to carry it; nonces from `rng`. Questions unanswered
    /// for [`ANSWER_WITHIN`] count as lost.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        direct: &[(PublicKey, SocketAddr)],
        target: u16,
        rng: &mut impl RngCore,
    ) {
        if self.next_round.is_some_and(|t| now < t) {
            return;
        }
        self.next_round = Some(now + EVERY);
        self.expire(now);
        for i in 0..PER_ROUND.min(direct.len()) {
            let (peer, at) = direct[(self.cursor + i) % direct.len()];
            let probe = self
                .probes
                .entry(peer)
                .or_insert_with(|| PathProbe::new(target));
            probe.set_target(target);
            // Path MTU probes are IPv4 sizes; IPv6 paths are not probed.
            let padded = probe.next(now).filter(|_| at.is_ipv4());
            for len in [Some(0), padded].into_iter().flatten() {
                self.ask(peer, len, None, None, now, rng);
            }
        }
        self.cursor = self.cursor.wrapping_add(PER_ROUND);
    }

    /// Checks whether `peer` answers at `endpoint` (its answer comes out as
    /// [`Outcome::Verified`]).
    pub fn verify(
        &mut self,
        peer: PublicKey,
        endpoint: SocketAddr,
        now: Instant,
        rng: &mut impl RngCore,
    ) {
        self.ask(peer, 0, Some(endpoint), None, now, rng);
    }

    /// Opens our NAT towards the relayed `peer` at each of `endpoints` and
    /// calls it through its relay (see the module docs): questions with
    /// the [`PUNCH_TTLS`] (answered only where no NAT of the peer's stops
    /// them: [`Outcome::Verified`] then), then one call
    /// ([`Asker::poll_call`]).
    pub fn punch(
        &mut self,
        peer: PublicKey,
        endpoints: &[SocketAddr],
        now: Instant,
        rng: &mut impl RngCore,
    ) {
        for endpoint in endpoints {
            for ttl in PUNCH_TTLS {
                self.ask(peer, 0, Some(*endpoint), Some(ttl), now, rng);
            }
        }
        if self.calls.len() >= MAX_ASKED {
            self.calls.pop_front();
        }
        self.calls.push_back((peer, rng.next_u64()));
    }

    fn ask(
        &mut self,
        peer: PublicKey,
        len: u16,
        to: Option<SocketAddr>,
        ttl: Option<u8>,
        now: Instant,
        rng: &mut impl RngCore,
    ) {
        let nonce = rng.next_u64();
        if self.asked.len() >= MAX_ASKED {
            self.asked.pop_front();
        }
        let sent_len = len.max(u16::try_from(REQUEST_LEN).unwrap_or(u16::MAX));
        self.asked.push_back(Asked {
            nonce,
            peer,
            len: sent_len,
            at: now,
            to,
        });
        self.questions.push_back(Question {
            peer,
            nonce,
            len,
            to,
            ttl,
        });
    }

    /// Counts questions unanswered for [`ANSWER_WITHIN`] as lost: a lost
    /// padded question tells its path's search that size may not fit.
    fn expire(&mut self, now: Instant) {
        while let Some(q) = self.asked.front().copied() {
            if now.saturating_duration_since(q.at) < ANSWER_WITHIN {
                break;
            }
            self.asked.pop_front();
            if usize::from(q.len) > REQUEST_LEN {
                if let Some(p) = self.probes.get_mut(&q.peer) {
                    p.unanswered(q.len, q.at, now);
                }
            }
        }
        self.update_path_mtu();
    }

    fn update_path_mtu(&mut self) {
        let limit = self
            .probes
            .values()
            .filter_map(PathProbe::limit)
            .min()
            .map(|l| l + IPV4_UDP);
        if limit != self.path_mtu {
            self.path_mtu = limit;
            self.outcomes.push_back(Outcome::PathMtu(limit));
        }
    }

    /// The next question to send.
    pub fn poll_question(&mut self) -> Option<Question> {
        self.questions.pop_front()
    }

    /// The next call to send through a relay (peer, nonce), once every
    /// question waiting is sent: a punch goes out before its call.
    pub fn poll_call(&mut self) -> Option<(PublicKey, u64)> {
        if !self.questions.is_empty() {
            return None;
        }
        self.calls.pop_front()
    }

    /// `from` answered: it sees us at `seen`, our question arrived `len`
    /// bytes long. Answers to questions not asked (or answered already:
    /// a replay) are ignored.
    pub fn handle_answer(
        &mut self,
        from: PublicKey,
        nonce: u64,
        seen: SocketAddr,
        len: u16,
        now: Instant,
    ) {
        let Some(i) = self
            .asked
            .iter()
            .position(|q| q.nonce == nonce && q.peer == from)
        else {
            return;
        };
        let Some(question) = self.asked.remove(i) else {
            return;
        };
        if let Some(endpoint) = question.to {
            // A path check: where this path sees us says nothing about
            // the paths in use.
            self.outcomes.push_back(Outcome::Verified {
                peer: from,
                endpoint,
            });
            return;
        }
        if let Some(p) = self.probes.get_mut(&from) {
            p.reached(question.at);
            if usize::from(len) > REQUEST_LEN {
                p.answered(len);
            }
        }
        self.update_path_mtu();
        let before = self.echoed.insert(from, seen);
        if let Some((_, last)) = self.observed.get_mut(&seen) {
            *last = now;
            return;
        }
        if let Some(before) = before.filter(|b| *b != seen) {
            self.outcomes.push_back(Outcome::Moved {
                from: before,
                to: seen,
            });
        }
        if self.observed.len() < MAX_OBSERVED {
            self.observed.insert(seen, (now, now));
            self.outcomes.push_back(Outcome::Seen(seen));
        }
    }

    /// The next conclusion.
    pub fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcomes.pop_front()
    }

    /// The narrowest path found (see [`Outcome::PathMtu`]).
    pub fn path_mtu(&self) -> Option<u16> {
        self.path_mtu
    }

    /// This node's reflexive endpoints at `now`: where members saw it in
    /// the last [`OBSERVED_FOR`], other than at one of `own` addresses
    /// (same LAN, no NAT: nothing new), newest first so peers try a NAT's
    /// new address first; at most [`MAX_REFLEXIVE`].
    pub fn reflexive(&mut self, now: Instant, own: &[IpAddr]) -> Vec<SocketAddr> {
        self.observed
            .retain(|_, (_, last)| now.saturating_duration_since(*last) < OBSERVED_FOR);
        let mut seen: Vec<(SocketAddr, Instant)> = self
            .observed
            .iter()
            .filter(|(e, _)| !own.contains(&e.ip()))
            .map(|(e, (first, _))| (*e, *first))
            .collect();
        seen.sort_by_key(|(e, first)| (std::cmp::Reverse(*first), *e));
        seen.into_iter()
            .map(|(e, _)| e)
            .take(MAX_REFLEXIVE)
            .collect()
    }

    /// Forgets what the paths were found to carry (this host's own links
    /// changed: every path is probed afresh).
    pub fn forget_paths(&mut self) {
        self.probes.clear();
        self.asked.clear();
        self.update_path_mtu();
    }

    /// Forgets members for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(&PublicKey) -> bool) {
        self.echoed.retain(|k, _| keep(k));
        self.probes.retain(|k, _| keep(k));
        self.calls.retain(|(k, _)| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u64);

    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 += 1;
            self.0
        }
        fn fill_bytes(&mut self, d: &mut [u8]) {
            d.iter_mut().for_each(|b| *b = self.next_u64() as u8);
        }
        fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(d);
            Ok(())
        }
    }

    fn peers(n: u8) -> Vec<(PublicKey, SocketAddr)> {
        (1..=n)
            .map(|i| {
                (
                    PublicKey([i; 32]),
                    SocketAddr::from(([198, 18, 0, i], 51820)),
                )
            })
            .collect()
    }

    fn drain(a: &mut Asker) -> Vec<Question> {
        std::iter::from_fn(|| a.poll_question()).collect()
    }

    #[test]
    fn rounds_ask_a_few_members_in_turn_and_probe_until_paths_fit() {
        let (mut a, mut rng, t0) = (Asker::new(), Counter(0), Instant::now());
        let p = peers(5);
        a.handle_timeout(t0, &p, 1392, &mut rng);
        let q = drain(&mut a);
        // Three members, each a plain question and a padded probe.
        assert_eq!(q.len(), 6);
        assert_eq!(q.iter().filter(|q| q.len == 1392).count(), 3);
        a.handle_timeout(t0 + EVERY / 2, &p, 1392, &mut rng);
        assert!(drain(&mut a).is_empty(), "not due");
        // The probes are answered: those paths fit, only plain questions.
        for x in &q {
            let len = x.len.max(REQUEST_LEN as u16);
            a.handle_answer(
                x.peer,
                x.nonce,
                "203.0.113.9:4000".parse().unwrap(),
                len,
                t0,
            );
        }
        a.handle_timeout(t0 + EVERY * 5, &p, 1392, &mut rng);
        let next: Vec<_> = drain(&mut a);
        let asked: Vec<_> = next.iter().map(|q| q.peer).collect();
        assert!(
            asked.contains(&p[3].0) && asked.contains(&p[4].0),
            "round robin"
        );
        assert!(next.iter().filter(|q| q.peer == p[0].0).all(|q| q.len == 0));
    }

    #[test]
    fn answers_tell_reflexive_endpoints_moves_and_replays_nothing() {
        let (mut a, mut rng, t0) = (Asker::new(), Counter(0), Instant::now());
        let p = peers(1);
        let (k, own) = (p[0].0, "10.0.0.2".parse::<IpAddr>().unwrap());
        let nat: SocketAddr = "203.0.113.9:4000".parse().unwrap();
        a.handle_timeout(t0, &p, 0, &mut rng);
        let q = drain(&mut a);
        assert_eq!(q.len(), 1, "target 0: no probes");
        a.handle_answer(k, q[0].nonce, nat, 36, t0);
        assert_eq!(a.poll_outcome(), Some(Outcome::Seen(nat)));
        a.handle_answer(k, q[0].nonce, "203.0.113.66:1".parse().unwrap(), 36, t0);
        assert_eq!(a.poll_outcome(), None, "a replayed answer is ignored");
        assert_eq!(a.reflexive(t0, &[own]), vec![nat]);
        // Our NAT moves.
        let moved: SocketAddr = "203.0.113.10:4001".parse().unwrap();
        a.handle_timeout(t0 + EVERY, &p, 0, &mut rng);
        let q = drain(&mut a);
        a.handle_answer(k, q[0].nonce, moved, 36, t0 + EVERY);
        assert_eq!(
            a.poll_outcome(),
            Some(Outcome::Moved {
                from: nat,
                to: moved
            })
        );
        assert_eq!(a.poll_outcome(), Some(Outcome::Seen(moved)));
        assert_eq!(
            a.reflexive(t0 + EVERY, &[own]),
            vec![moved, nat],
            "newest first"
        );
        assert_eq!(
            a.reflexive(t0 + EVERY + OBSERVED_FOR, &[own]),
            Vec::<SocketAddr>::new()
        );
        // Seen at an address of our own: not reflexive.
        assert!(a.reflexive(t0, &[moved.ip(), nat.ip()]).is_empty());
    }

    #[test]
    fn lost_probes_narrow_the_path_and_say_so() {
        let (mut a, mut rng, mut now) = (Asker::new(), Counter(0), Instant::now());
        let p = peers(1);
        let mut limit = None;
        // The path carries 1372 bytes of UDP payload; nothing larger arrives.
        for _ in 0..120 {
            a.handle_timeout(now, &p, 1392, &mut rng);
            for q in drain(&mut a) {
                let len = q.len.max(REQUEST_LEN as u16);
                if len <= 1372 {
                    a.handle_answer(q.peer, q.nonce, "198.18.0.9:1".parse().unwrap(), len, now);
                }
            }
            while let Some(o) = a.poll_outcome() {
                if let Outcome::PathMtu(l) = o {
                    limit = l;
                }
            }
            now += EVERY;
        }
        let limit = limit.expect("a limit was found");
        assert!((1372 - 8 + 28..=1372 + 28).contains(&limit), "{limit}");
        assert_eq!(a.path_mtu(), Some(limit));
        // This host's links changed: the limit is forgotten at once.
        a.forget_paths();
        assert_eq!(a.poll_outcome(), Some(Outcome::PathMtu(None)));
        assert_eq!(a.path_mtu(), None);
    }

    #[test]
    fn a_punch_sends_short_lived_questions_before_its_call() {
        let (mut a, mut rng, t0) = (Asker::new(), Counter(0), Instant::now());
        let peer = peers(1)[0].0;
        let candidate: SocketAddr = "198.18.0.9:40000".parse().unwrap();
        let other: SocketAddr = "198.18.0.9:51820".parse().unwrap();
        a.punch(peer, &[candidate, other], t0, &mut rng);
        assert_eq!(a.poll_call(), None, "not before the punch is sent");
        let q = drain(&mut a);
        let sent: Vec<(Option<SocketAddr>, Option<u8>)> = q.iter().map(|q| (q.to, q.ttl)).collect();
        let ttls = PUNCH_TTLS.map(Some);
        let want: Vec<_> = [candidate, other]
            .iter()
            .flat_map(|e| ttls.iter().map(|t| (Some(*e), *t)))
            .collect();
        assert_eq!(sent, want, "every endpoint, every TTL");
        assert!(q.iter().all(|q| q.peer == peer));
        assert!(matches!(a.poll_call(), Some((p, _)) if p == peer));
        assert_eq!(a.poll_call(), None);
        // A punch that got through (no NAT of the peer's in the way) is a
        // verified path like any check.
        a.handle_answer(peer, q[1].nonce, "198.18.0.1:1".parse().unwrap(), 36, t0);
        assert_eq!(
            a.poll_outcome(),
            Some(Outcome::Verified {
                peer,
                endpoint: candidate
            })
        );
        // Calls to members gone are not sent.
        a.punch(peer, &[candidate], t0, &mut rng);
        drain(&mut a);
        a.retain(|_| false);
        assert_eq!(a.poll_call(), None);
    }

    #[test]
    fn a_path_check_answers_for_its_endpoint_only() {
        let t0 = Instant::now();
        let mut a = Asker::new();
        let mut rng = Counter(0);
        let peer = peers(1)[0].0;
        let candidate: SocketAddr = "198.18.0.9:40000".parse().unwrap();
        a.verify(peer, candidate, t0, &mut rng);
        let q = a.poll_question().unwrap();
        assert_eq!((q.peer, q.to), (peer, Some(candidate)));
        // The answer reports where that path sees us: not our reflexive
        // endpoint, only that the path works.
        let seen: SocketAddr = "198.18.0.5:61000".parse().unwrap();
        a.handle_answer(peer, q.nonce, seen, 0, t0);
        let out: Vec<Outcome> = std::iter::from_fn(|| a.poll_outcome()).collect();
        assert_eq!(
            out,
            [Outcome::Verified {
                peer,
                endpoint: candidate
            }]
        );
        assert!(a.reflexive(t0, &[]).is_empty());
        a.handle_answer(peer, q.nonce, seen, 0, t0);
        assert_eq!(a.poll_outcome(), None, "a replay");
    }
}
