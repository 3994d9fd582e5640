//! Whom a newcomer asks to join, sans-IO. It connects to every member its
//! token names at once (the inviter, then the others); it asks the inviter
//! as soon as that one answers, or — when only others do — the first of
//! them after [`INVITER_GRACE`] (that member forwards the join to the
//! inviter, so the invite is spent only there). One member is asked at a
//! time: a join is never presented twice, except after a request failed
//! without an answer. With nobody reached within [`CONNECT_TIMEOUT`], it
//! gives up.

use crate::record::NodeId;
use crate::token::Invite;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long a newcomer tries to reach a member named in its token.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it waits for the inviter once another member answered.
pub const INVITER_GRACE: Duration = Duration::from_secs(1);

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
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
    first_reached: Option<Instant>,
    deadline: Instant,
    next: Option<Action>,
    done: bool,
}

impl Joining {
    /// A join with `invite`, starting at `now` (connect to every member of
    /// [`Invite::contacts`]).
    pub fn new(invite: &Invite, now: Instant) -> Self {
        Self {
            inviter: invite.inviter,
            named: invite.contacts().iter().map(|c| c.id).collect(),
            reached: Vec::new(),
            failed: BTreeSet::new(),
            asking: None,
            first_reached: None,
            deadline: now + CONNECT_TIMEOUT,
            next: None,
            done: false,
        }
    }

    /// A connection to `id` is up.
    pub fn handle_connected(&mut self, id: NodeId, now: Instant) {
        if self.named.contains(&id) && !self.reached.contains(&id) {
            self.reached.push(id);
            self.first_reached.get_or_insert(now);
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
        let grace = self.first_reached.map(|t| t + INVITER_GRACE);
        Some(grace.map_or(self.deadline, |g| g.min(self.deadline)))
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.next.take()
    }

    fn decide(&mut self, now: Instant) {
        if self.done || self.asking.is_some() {
            return;
        }
        let usable = |id: &&NodeId| !self.failed.contains(id);
        let inviter = self.reached.iter().filter(usable).find(|id| **id == self.inviter);
        let waited = self.first_reached.is_some_and(|t| now >= t + INVITER_GRACE);
        let pick = inviter
            .or_else(|| self.reached.iter().filter(usable).find(|_| waited))
            .copied();
        if let Some(id) = pick {
            self.asking = Some(id);
            self.next = Some(Action::Ask(id));
        } else if now >= self.deadline {
            self.done = true;
            self.next = Some(Action::GiveUp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::NetworkId;
    use crate::token::Contact;

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

    #[test]
    fn the_inviter_is_asked_first_and_others_after_a_grace() {
        let t0 = Instant::now();
        let (inviter, other) = (NodeId([3; 32]), NodeId([4; 32]));
        let mut j = Joining::new(&invite(), t0);
        j.handle_connected(other, t0);
        assert_eq!(j.poll_action(), None, "the inviter may still answer");
        assert_eq!(j.poll_timeout(), Some(t0 + INVITER_GRACE));
        j.handle_connected(inviter, t0 + Duration::from_millis(300));
        assert_eq!(j.poll_action(), Some(Action::Ask(inviter)));
        assert_eq!(j.poll_timeout(), None, "asking: one at a time");

        let mut j = Joining::new(&invite(), t0);
        j.handle_connected(other, t0);
        j.handle_timeout(t0 + INVITER_GRACE);
        assert_eq!(j.poll_action(), Some(Action::Ask(other)));
        j.handle_connected(inviter, t0 + INVITER_GRACE);
        assert_eq!(j.poll_action(), None, "never two at once");
        // The forwarder's connection dies unanswered: the inviter next.
        j.handle_failed(other, t0 + INVITER_GRACE);
        assert_eq!(j.poll_action(), Some(Action::Ask(inviter)));
    }

    #[test]
    fn strangers_are_not_asked_and_nobody_reached_gives_up_once() {
        let t0 = Instant::now();
        let mut j = Joining::new(&invite(), t0);
        j.handle_connected(NodeId([9; 32]), t0);
        j.handle_timeout(t0 + INVITER_GRACE);
        assert_eq!(j.poll_action(), None);
        assert_eq!(j.poll_timeout(), Some(t0 + CONNECT_TIMEOUT));
        j.handle_timeout(t0 + CONNECT_TIMEOUT);
        assert_eq!(j.poll_action(), Some(Action::GiveUp));
        j.handle_timeout(t0 + CONNECT_TIMEOUT * 2);
        assert_eq!(j.poll_action(), None);
        assert_eq!(j.poll_timeout(), None);
    }
}
