//! Which members the control plane dials, and when: every
//! [`REDIAL_EVERY`], members in good standing that are not connected, in
//! random order, until [`MAX_CONTROL_PEERS`] members are connected (gossip
//! and repair need a few connections, not a full mesh of QUIC), at most
//! [`REDIAL_BATCH`] a round.

use federation::ledger::Member;
use federation::{NodeId, Status};
use rand_core::RngCore;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Redial disconnected members this often.
pub const REDIAL_EVERY: Duration = Duration::from_secs(4);
/// At most this many dials a round.
pub const REDIAL_BATCH: usize = 16;
/// Control-plane connections to members a member keeps.
pub const MAX_CONTROL_PEERS: usize = 24;

/// A member to dial and the control endpoints its record gives.
pub type Dial = (NodeId, Vec<SocketAddr>);

/// The redial timer.
#[derive(Debug)]
pub struct Redial {
    due: Instant,
}

impl Redial {
    /// The first round one period after `now` (the loop dials once at
    /// start by itself).
    pub fn new(now: Instant) -> Self {
        Self {
            due: now + REDIAL_EVERY,
        }
    }

    /// When the next round is due.
    pub fn poll_timeout(&self) -> Instant {
        self.due
    }

    /// The members to dial at `now`: none before the round is due.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        me: &NodeId,
        members: &[Member<'_>],
        connected: &BTreeSet<NodeId>,
        rng: &mut impl RngCore,
    ) -> Vec<Dial> {
        if now < self.due {
            return Vec::new();
        }
        self.due = now + REDIAL_EVERY;
        targets(me, members, connected, rng)
    }
}

/// Members in good standing other than `me` that are not `connected`,
/// shuffled, as many as the room left under [`MAX_CONTROL_PEERS`] (only
/// members count: strangers connecting must not stop us dialing) and
/// [`REDIAL_BATCH`] allow.
pub fn targets(
    me: &NodeId,
    members: &[Member<'_>],
    connected: &BTreeSet<NodeId>,
    rng: &mut impl RngCore,
) -> Vec<Dial> {
    let active = |m: &&Member<'_>| m.status == Status::Active && m.id != *me;
    let members_connected = members
        .iter()
        .filter(active)
        .filter(|m| connected.contains(&m.id))
        .count();
    let room = MAX_CONTROL_PEERS.saturating_sub(members_connected);
    let mut targets: Vec<Dial> = members
        .iter()
        .filter(active)
        .filter(|m| !connected.contains(&m.id))
        .map(|m| (m.id, m.record.control.clone()))
        .collect();
    // Fisher-Yates: every member gets its turn.
    for i in (1..targets.len()).rev() {
        let j = usize::try_from(rng.next_u64() % (i as u64 + 1)).unwrap_or(0);
        targets.swap(i, j);
    }
    targets.truncate(room.min(REDIAL_BATCH));
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use federation::fixture::TestNetwork;

    fn network(n: u8) -> federation::Ledger {
        let net = TestNetwork::new(9);
        let mut ledger = net.ledger();
        for i in 1..=n {
            ledger
                .ingest(&net.member(i).signed(1), 0)
                .expect("a valid member record");
        }
        ledger
    }

    fn rng() -> testbed::rng::Rng {
        testbed::rng::Rng::new(0x9e37_79b9_7f4a_7c15)
    }

    #[test]
    fn dials_only_members_it_is_not_connected_to_within_the_room_left() {
        let ledger = network(40);
        let members = ledger.members(0);
        let me = members[0].id;
        let ids: Vec<NodeId> = members
            .iter()
            .map(|m| m.id)
            .filter(|id| *id != me)
            .collect();
        // 20 members connected: room for 4 more.
        let connected: BTreeSet<NodeId> = ids[..20].iter().copied().collect();
        let dials = targets(&me, &members, &connected, &mut rng());
        assert_eq!(dials.len(), MAX_CONTROL_PEERS - 20);
        assert!(dials
            .iter()
            .all(|(id, _)| *id != me && !connected.contains(id)));
        // None connected: one batch.
        let dials = targets(&me, &members, &BTreeSet::new(), &mut rng());
        assert_eq!(dials.len(), REDIAL_BATCH);
        // Strangers connected take no room.
        let strangers: BTreeSet<NodeId> = (0..30u8).map(|i| NodeId([i; 32])).collect();
        assert_eq!(
            targets(&me, &members, &strangers, &mut rng()).len(),
            REDIAL_BATCH
        );
    }

    #[test]
    fn every_member_gets_its_turn() {
        let ledger = network(60);
        let members = ledger.members(0);
        let me = members[0].id;
        let mut seen = BTreeSet::new();
        let mut r = rng();
        for _ in 0..40 {
            seen.extend(
                targets(&me, &members, &BTreeSet::new(), &mut r)
                    .into_iter()
                    .map(|(id, _)| id),
            );
        }
        assert_eq!(seen.len(), members.len() - 1);
    }

    #[test]
    fn a_round_runs_when_due_and_not_before() {
        let ledger = network(3);
        let members = ledger.members(0);
        let me = members[0].id;
        let start = testbed::fake_time::origin();
        let mut redial = Redial::new(start);
        let none = BTreeSet::new();
        assert!(redial
            .handle_timeout(start, &me, &members, &none, &mut rng())
            .is_empty());
        let due = redial.poll_timeout();
        assert_eq!(due, start + REDIAL_EVERY);
        assert_eq!(
            redial
                .handle_timeout(due, &me, &members, &none, &mut rng())
                .len(),
            2,
            "the two others"
        );
        assert_eq!(redial.poll_timeout(), due + REDIAL_EVERY);
    }
}
