//! Liveness, derived locally rather than gossiped: when this node last
//! heard from each member (a control-plane message, tunnel traffic, an
//! answered probe). Only members in good standing are tracked, so anyone
//! who merely connects cannot grow the table.

use crate::ledger::{Ledger, Status};
use crate::record::NodeId;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A member heard from within this long is alive.
pub const ALIVE_FOR: Duration = Duration::from_secs(35);
/// Then suspect until this long; then down.
pub const SUSPECT_FOR: Duration = Duration::from_secs(120);

/// How a member looks from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Heard from recently, or connected.
    Alive,
    /// Silent for a while.
    Suspect,
    /// Silent for long.
    Down,
    /// Left on purpose.
    Left,
    /// Revoked (or its certificate expired).
    Revoked,
}

impl Seen {
    /// Lower-case name for tables and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Seen::Alive => "alive",
            Seen::Suspect => "suspect",
            Seen::Down => "down",
            Seen::Left => "left",
            Seen::Revoked => "revoked",
        }
    }
}

/// When each member was last heard from.
#[derive(Debug, Clone)]
pub struct Liveness {
    heard: BTreeMap<NodeId, Instant>,
    started: Instant,
}

impl Liveness {
    /// Nobody heard from yet; `now` is when this node started.
    pub fn new(now: Instant) -> Self {
        Self {
            heard: BTreeMap::new(),
            started: now,
        }
    }

    /// `id` was heard from at `now`; ignored unless it is an active member.
    pub fn heard(&mut self, id: NodeId, now: Instant, ledger: &Ledger, now_ms: u64) {
        if ledger
            .member(&id, now_ms)
            .is_some_and(|m| m.status == Status::Active)
        {
            self.heard.insert(id, now);
        }
    }

    /// Forgets everyone who is no longer an active member.
    pub fn retain_members(&mut self, ledger: &Ledger, now_ms: u64) {
        self.heard.retain(|id, _| {
            ledger
                .member(id, now_ms)
                .is_some_and(|m| m.status == Status::Active)
        });
    }

    /// Members tracked.
    pub fn len(&self) -> usize {
        self.heard.len()
    }

    /// True if nobody is tracked.
    pub fn is_empty(&self) -> bool {
        self.heard.is_empty()
    }

    /// How long ago `id` was heard from.
    pub fn since(&self, id: &NodeId, now: Instant) -> Option<Duration> {
        self.heard
            .get(id)
            .map(|t| now.saturating_duration_since(*t))
    }

    /// How member `id` of standing `status` looks at `now`; `connected`
    /// if a control connection to it is up.
    pub fn seen(&self, id: &NodeId, status: Status, connected: bool, now: Instant) -> Seen {
        match status {
            Status::Left => Seen::Left,
            Status::Revoked | Status::Expired => Seen::Revoked,
            Status::Active if connected => Seen::Alive,
            Status::Active => match self.since(id, now) {
                Some(d) if d < ALIVE_FOR => Seen::Alive,
                Some(d) if d < SUSPECT_FOR => Seen::Suspect,
                None if now.saturating_duration_since(self.started) < ALIVE_FOR => Seen::Suspect,
                _ => Seen::Down,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::TestNetwork;
    use crate::record::NodeKey;

    #[test]
    fn only_members_are_tracked_and_departed_ones_are_forgotten() {
        let net = TestNetwork::new(5);
        let mut ledger = net.ledger();
        let a = net.member(1);
        ledger.ingest(&a.signed(1), 0).unwrap();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        // Anyone can connect; strangers must not grow the table.
        for _ in 0..10_000 {
            l.heard(NodeKey::generate().id(), t0, &ledger, 0);
        }
        assert_eq!(l.len(), 0, "strangers are tracked");
        l.heard(a.key.id(), t0, &ledger, 0);
        assert_eq!(l.len(), 1);
        let id = a.key.id();
        assert_eq!(
            l.seen(&id, Status::Active, false, t0 + ALIVE_FOR / 2),
            Seen::Alive
        );
        assert_eq!(
            l.seen(&id, Status::Active, false, t0 + ALIVE_FOR),
            Seen::Suspect
        );
        assert_eq!(
            l.seen(&id, Status::Active, false, t0 + SUSPECT_FOR),
            Seen::Down
        );
        assert_eq!(
            l.seen(&id, Status::Active, true, t0 + SUSPECT_FOR),
            Seen::Alive
        );
        // It leaves: forgotten.
        let mut left = a.record.clone();
        left.left_ms = Some(1);
        let bytes = a
            .key
            .sign(2, crate::member::Body::Member(left).to_bytes())
            .encode();
        ledger.ingest(&bytes, 0).unwrap();
        l.retain_members(&ledger, 0);
        assert!(l.is_empty());
    }
}
