//! Whom a newcomer asks to join, sans-IO. It connects to the inviter its
//! token names and asks it once connected; if the inviter is not reached
//! within [`INVITER_GRACE`], it also connects to the other members the
//! token names and asks the first one reached (that member passes the
//! join on to the inviter, so the invite is spent only there). One member
//! is asked at a time: a join is never presented twice, except after a
//! request failed without an answer. With nobody reached within
//! [`CONNECT_TIMEOUT`], it gives up. The same order serves any request
//! to the members a token names ([`Joining::among`]: a federation's
//! agreement handed to the other network).

use crate::record::NodeId;
use crate::token::Invite;
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// How long a newcomer tries to reach a member named in its token.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it tries the inviter alone.
pub const INVITER_GRACE: Duration = Duration::from_secs(1);

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Connect to this member (at the endpoints the token gives).
    Dial(NodeId),
    /// Send the join request to this member.
    Ask(NodeId),
    /// Nobody named in the token can be reached.
    GiveUp,
}

/// A join in progress.
#[derive(Debug)]
pub struct Joining {
    inviter: NodeId,
    named: Vec<NodeId>,
    reached: Vec<NodeId>,
    failed: BTreeSet<NodeId>,
    asking: Option<NodeId>,
    /// When the others are dialed too.
    others_at: Instant,
    others_dialed: bool,
    deadline: Instant,
    next: VecDeque<Action>,
    done: bool,
}

impl Joining {
    /// A join with `invite`, starting at `now` (the members are those of
    /// [`Invite::contacts`]): the inviter is dialed first.
    pub fn new(invite: &Invite, now: Instant) -> Self {
        let named = invite.contacts().iter().map(|c| c.id).collect();
        Self::among(invite.inviter, named, now)
    }

    /// Any other conversation with the members `named` (a token's),
    /// starting at `now`, in the same order: `first` as the inviter.
    pub fn among(first: NodeId, named: Vec<NodeId>, now: Instant) -> Self {
        Self {
            inviter: first,
            named,
            reached: Vec::new(),
            failed: BTreeSet::new(),
            asking: None,
            others_at: now + INVITER_GRACE,
            others_dialed: false,
            deadline: now + CONNECT_TIMEOUT,
            next: VecDeque::from([Action::Dial(first)]),
            done: false,
        }
    }

    /// A connection to `id` is up.
    pub fn handle_connected(&mut self, id: NodeId, now: Instant) {
        if self.named.contains(&id) && !self.reached.contains(&id) {
            self.reached.push(id);
        }
        self.decide(now);
    }

    /// The request to `id` failed without an answer (its connection
    /// closed): another member is asked if one is reached.
    pub fn handle_failed(&mut self, id: NodeId, now: Instant) {
        self.failed.insert(id);
        if self.asking == Some(id) {
            self.asking = None;
        }
        if id == self.inviter {
            self.others_at = now;
        }
        self.decide(now);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.decide(now);
    }

    /// When [`Joining::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done || self.asking.is_some() {
            return None;
        }
        if self.others_dialed {
            Some(self.deadline)
        } else {
            Some(self.others_at.min(self.deadline))
        }
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.next.pop_front()
    }

    fn decide(&mut self, now: Instant) {
        if self.done || self.asking.is_some() {
            return;
        }
        if !self.others_dialed && now >= self.others_at {
            self.others_dialed = true;
            let others = self.named.iter().filter(|id| **id != self.inviter);
            self.next.extend(others.map(|id| Action::Dial(*id)));
        }
        let usable = |id: &&NodeId| !self.failed.contains(id);
        let inviter = self
            .reached
            .iter()
            .filter(usable)
            .find(|id| **id == self.inviter);
        // Another member only once the inviter had its time alone.
        let other = self
            .reached
            .iter()
            .filter(usable)
            .find(|_| self.others_dialed);
        if let Some(id) = inviter.or(other).copied() {
            self.asking = Some(id);
            self.next.push_back(Action::Ask(id));
        } else if now >= self.deadline {
            self.done = true;
            self.next.push_back(Action::GiveUp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact::Contact;
    use crate::network::NetworkId;

    fn invite() -> Invite {
        Invite {
            network: NetworkId([1; 16]),
            authority: NodeId([2; 32]),
            inviter: NodeId([3; 32]),
            addrs: vec![],
            members: vec![
                Contact {
                    id: NodeId([4; 32]),
                    addrs: vec![],
                },
                Contact {
                    id: NodeId([5; 32]),
                    addrs: vec![],
                },
            ],
            id: [0; 16],
            secret: [0; 32],
            expires_ms: 0,
        }
    }

    fn actions(j: &mut Joining) -> Vec<Action> {
        std::iter::from_fn(|| j.poll_action()).collect()
    }

    #[test]
    fn the_inviter_is_dialed_and_asked_first_and_others_after_a_grace() {
        let t0 = Instant::now();
        let (inviter, a, b) = (NodeId([3; 32]), NodeId([4; 32]), NodeId([5; 32]));
        let mut j = Joining::new(&invite(), t0);
        assert_eq!(actions(&mut j), [Action::Dial(inviter)]);
        assert_eq!(j.poll_timeout(), Some(t0 + INVITER_GRACE));
        j.handle_connected(inviter, t0 + Duration::from_millis(300));
        assert_eq!(actions(&mut j), [Action::Ask(inviter)]);
        assert_eq!(j.poll_timeout(), None, "asking: one at a time");

        let mut j = Joining::new(&invite(), t0);
        actions(&mut j);
        j.handle_timeout(t0 + INVITER_GRACE);
        assert_eq!(actions(&mut j), [Action::Dial(a), Action::Dial(b)]);
        j.handle_connected(a, t0 + INVITER_GRACE);
        assert_eq!(actions(&mut j), [Action::Ask(a)]);
        j.handle_connected(inviter, t0 + INVITER_GRACE);
        assert_eq!(actions(&mut j), [], "never two at once");
        // The forwarder's connection dies unanswered: the inviter next.
        j.handle_failed(a, t0 + INVITER_GRACE);
        assert_eq!(actions(&mut j), [Action::Ask(inviter)]);

        // An inviter that fails at once: the others without waiting.
        let mut j = Joining::new(&invite(), t0);
        actions(&mut j);
        j.handle_failed(inviter, t0);
        assert_eq!(actions(&mut j), [Action::Dial(a), Action::Dial(b)]);
    }

    #[test]
    fn strangers_are_not_asked_and_nobody_reached_gives_up_once() {
        let t0 = Instant::now();
        let mut j = Joining::new(&invite(), t0);
        j.handle_connected(NodeId([9; 32]), t0);
        j.handle_timeout(t0 + INVITER_GRACE);
        assert_eq!(actions(&mut j).len(), 3, "dials only");
        assert_eq!(j.poll_timeout(), Some(t0 + CONNECT_TIMEOUT));
        j.handle_timeout(t0 + CONNECT_TIMEOUT);
        assert_eq!(actions(&mut j), [Action::GiveUp]);
        j.handle_timeout(t0 + CONNECT_TIMEOUT * 2);
        assert_eq!(actions(&mut j), []);
        assert_eq!(j.poll_timeout(), None);
    }
}
