//! This node's replica of the network's state, and the protocol that keeps
//! it in step with the other members' — sans-IO, in the style of
//! quinn-proto's `Connection`: the shell feeds in what arrives
//! (`handle_*`) and drains what to send ([`Replica::poll_transmit`]) and
//! what changed ([`Replica::poll_event`]); the clock and the random
//! generator come in as arguments.
//!
//! It is also the control plane's trust boundary: nothing of the network's
//! state leaves for a peer that is not an active member. A non-member may
//! only present an invite, and a node just admitted may introduce itself by
//! pushing its own record (whose certificate chain proves its membership);
//! everything else a non-member sends is refused with
//! [`Response::NotMember`] or ignored, and counted by kind
//! ([`Replica::refused`]). Every message each way is counted
//! ([`Replica::traffic`]).
//!
//! (About 710 lines: one state machine whose handlers each check the
//! sender's membership against the state they guard, and those checks read
//! best side by side; partner anti-entropy is in `replica/partner_sync.rs`,
//! the tests in `replica/tests.rs`.)

use crate::ledger::{Delta, Ledger, Status};
use crate::network::NetworkId;
use crate::partners::Partners;
use crate::protocol::{JoinRequest, Request, Response};
use crate::record::{NodeId, SignedRecord};
use crate::roster::Roster;
use crate::sync::{self, Summary};
use rand_core::RngCore;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Anti-entropy with one random member this often.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);
/// Anti-entropy with one member of each federated network this often.
pub const PARTNER_SYNC_EVERY: Duration = Duration::from_secs(2);
/// Partner members remembered as not knowing us, at most (cleared when
/// full: they answer "not a member" once more).
const MAX_STRANGERS: usize = 4096;
/// ... and for this many partner rounds (~2 min), then asked again.
const STRANGERS_KEPT_ROUNDS: u32 = 64;
/// Pushes of at most this many new records are passed on by gossip (an
/// urgent update: a member behind a NAT that just moved may reach only us).
pub const URGENT_PUSH: usize = 4;
/// Messages waiting to be sent, at most; more are dropped (anti-entropy
/// repairs what they carried) and counted.
const MAX_OUTBOX: usize = 4096;
/// Events waiting to be drained, at most (the shell drains after every
/// call, so only a call that accepts more records than this could fill it).
const MAX_EVENTS: usize = 2 * sync::MAX_BATCH;
/// Connected peers tracked, at most (the shell's connection limits keep
/// the real number far lower).
const MAX_PEERS: usize = 2048;

/// An answer counted as sent ([`Replica::answer`]); only this crate makes
/// one, so every answer a member sends is in its traffic counters:
///
/// ```compile_fail
/// // Outside the replica no answer can be made, so none is sent uncounted.
/// let _ = federation::replica::Answer(federation::protocol::Response::Ack);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Answer(pub Response);

/// Something to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A request to one peer.
    Request {
        /// The peer.
        to: NodeId,
        /// The request.
        request: Request,
    },
    /// A record to gossip to the members.
    Publish(Vec<u8>),
}

/// Something that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A record entered the state: store `bytes` durably and react to
    /// what `delta` says changed.
    Accepted {
        /// Whose record and what changed.
        delta: Delta,
        /// The encoded record.
        bytes: Vec<u8>,
    },
    /// What this node holds of a federated network changed (records came
    /// or went, an agreement began or ended): the peers follow.
    Partners,
    /// A federated network answered that it ended the agreement (the
    /// ending is checked): carry it in the own record, so this network
    /// learns it too.
    PartnerEnded(Box<crate::agreement::Ending>),
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Send this answer back.
    Answer(Answer),
    /// `subject` presents an invite issued here (itself, or through a
    /// member that forwarded it); the admission logic decides, and its
    /// answer goes back through [`Replica::answer`].
    Join {
        /// The newcomer (whose key the certificate names).
        subject: NodeId,
        /// Its request.
        join: JoinRequest,
    },
    /// A newcomer presents an invite another member issued: pass it on
    /// to `inviter` as [`Request::ForwardedJoin`] and relay its answer.
    Forward {
        /// The invite's issuer (a member).
        inviter: NodeId,
        /// The newcomer.
        subject: NodeId,
        /// Its request.
        join: JoinRequest,
    },
    /// A member's CLI query (`--via`); `admit` is true if that member may
    /// admit and revoke. Answered through [`Replica::answer`].
    Query {
        /// The query text.
        text: String,
        /// May the asker admit.
        admit: bool,
    },
    /// A member hands this node a re-issued certificate chain (`cladnet
    /// tag`); the agent checks and adopts it, answered through
    /// [`Replica::answer`].
    Reissue(Vec<crate::cert::Cert>),
    /// Another network delivers a federation agreement (anyone may: it
    /// proves itself by both authorities' signatures); the agent decides
    /// whether to carry it, answered through [`Replica::answer`].
    Federate {
        /// The agreement.
        agreement: Box<crate::agreement::Agreement>,
        /// Members of the accepting network, to reach it later.
        contacts: Vec<crate::contact::Contact>,
    },
    /// The other network of an agreement ended it; the agent checks the
    /// ending against the agreement and carries it, answered through
    /// [`Replica::answer`].
    EndFederation(Box<crate::agreement::Ending>),
}

/// The verdict on a gossiped record, for the gossip layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New and valid: pass it on.
    Accept,
    /// Valid but not new (or from a peer we do not listen to): drop it.
    Ignore,
    /// Invalid: drop it and hold it against the sender.
    Reject,
}

/// Control-plane messages and payload bytes, each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Messages received (requests, responses, gossip).
    pub in_messages: u64,
    /// Payload bytes received.
    pub in_bytes: u64,
    /// Messages sent (requests, responses, gossip).
    pub out_messages: u64,
    /// Payload bytes sent.
    pub out_bytes: u64,
}

impl Traffic {
    fn incoming(&mut self, bytes: usize) {
        self.in_messages += 1;
        self.in_bytes += bytes as u64;
    }

    fn outgoing(&mut self, bytes: usize) {
        self.out_messages += 1;
        self.out_bytes += bytes as u64;
    }
}

/// What we keep about a connected peer.
#[derive(Debug, Default, Clone, Copy)]
struct Peer {
    /// We pushed it our own record after it did not know us.
    introduced: bool,
    /// It was revoked and was shown the records that revoke it.
    shown_proof: bool,
}

/// The replica and its protocol state.
pub struct Replica {
    ledger: Ledger,
    partners: Partners,
    me: NodeId,
    peers: BTreeMap<NodeId, Peer>,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    traffic: Traffic,
    refused: BTreeMap<&'static str, u64>,
    dropped: u64,
    next_sync: Option<Instant>,
    next_partner_sync: Option<Instant>,
    /// Partner members that answered they do not know us (restarted, or
    /// not mirroring our network): our own record goes with our summary.
    strangers: std::collections::BTreeSet<NodeId>,
    /// Partner rounds run.
    rounds: u32,
}

impl Replica {
    /// The replica of node `me` around `ledger` (as loaded from disk).
    pub fn new(ledger: Ledger, me: NodeId) -> Self {
        let mut partners = Partners::new(ledger.network().id);
        partners.follow(ledger.agreements());
        Self {
            ledger,
            partners,
            me,
            peers: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            traffic: Traffic::default(),
            refused: BTreeMap::new(),
            dropped: 0,
            next_sync: None,
            next_partner_sync: None,
            strangers: std::collections::BTreeSet::new(),
            rounds: 0,
        }
    }

    /// What this node holds of the federated networks.
    pub fn partners(&self) -> &Partners {
        &self.partners
    }

    /// Everyone this node may have a tunnel with at `now_ms` (own members
    /// and the connected partners' exposed members).
    pub fn roster(&self, now_ms: u64) -> Roster<'_> {
        Roster::new(&self.ledger, &self.partners, self.me, now_ms)
    }

    /// Where to reach `id`'s control plane: its record's control endpoints
    /// (own network or a partner's), or what a member recorded of a
    /// partner's contact.
    pub fn control_addrs(&self, id: &NodeId, now_ms: u64) -> Vec<std::net::SocketAddr> {
        if let Some(m) = self.ledger.member(id, now_ms) {
            return m.record.control.clone();
        }
        for n in self.partners.networks() {
            if let Some(m) = self.partners.ledger(n).and_then(|l| l.member(id, now_ms)) {
                return m.record.control.clone();
            }
            if let Some(c) = self
                .ledger
                .partner_contacts(n, now_ms)
                .into_iter()
                .find(|c| c.id == *id)
            {
                return c.addrs;
            }
        }
        vec![]
    }

    /// The partners follow the agreements in force after a membership
    /// change (an agreement carried or ended).
    fn follow_agreements(&mut self) {
        if !self.partners.follow(self.ledger.agreements()).is_empty() {
            self.partner_changed();
        }
    }

    fn partner_changed(&mut self) {
        if self.events.len() < MAX_EVENTS && !self.events.contains(&Event::Partners) {
            self.events.push_back(Event::Partners);
        }
    }

    fn accepted(&mut self, delta: Delta, bytes: Vec<u8>) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(Event::Accepted { delta, bytes });
        }
        if delta.changes.membership {
            self.follow_agreements();
        }
    }

    /// The state with the network's rules.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// True if `id` is a member in good standing.
    pub fn is_member(&self, id: &NodeId, now_ms: u64) -> bool {
        self.ledger
            .member(id, now_ms)
            .is_some_and(|m| m.status == Status::Active)
    }

    /// This node's own standing (`None` before its record is known).
    pub fn standing(&self, now_ms: u64) -> Option<Status> {
        self.ledger.member(&self.me, now_ms).map(|m| m.status)
    }

    /// Messages and bytes each way.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// What non-members sent that was refused or ignored, by kind.
    pub fn refused(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.refused.iter().map(|(k, v)| (*k, *v))
    }

    /// Messages dropped because too many were waiting to be sent.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Peers currently connected.
    pub fn connected(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.keys()
    }

    fn refuse(&mut self, what: &'static str) {
        *self.refused.entry(what).or_default() += 1;
    }

    fn send(&mut self, t: Transmit) {
        if self.outbox.len() >= MAX_OUTBOX {
            self.dropped += 1;
            return;
        }
        self.outbox.push_back(t);
    }

    fn request(&mut self, to: NodeId, request: Request) {
        self.send(Transmit::Request { to, request });
    }

    fn summary_to(&mut self, to: NodeId) {
        let summary = sync::summary(self.ledger.state());
        self.request(to, Request::Summary(summary));
    }

    /// Offers records to the ledger; returns those that were new (each
    /// also becomes an event).
    fn ingest(&mut self, records: &[Vec<u8>], now_ms: u64) -> Vec<Vec<u8>> {
        let mut fresh = Vec::new();
        for bytes in records.iter().take(sync::MAX_BATCH) {
            if let Ok(Some(delta)) = self.ledger.ingest(bytes, now_ms) {
                fresh.push(bytes.clone());
                self.accepted(delta, bytes.clone());
            }
        }
        fresh
    }

    /// A connection to `peer` came up: a member gets our summary at once.
    pub fn handle_connected(&mut self, peer: NodeId, now_ms: u64) {
        if self.peers.len() < MAX_PEERS {
            self.peers.insert(peer, Peer::default());
        }
        if self.is_member(&peer, now_ms) {
            self.summary_to(peer);
        }
    }

    /// The last connection to `peer` closed.
    pub fn handle_disconnected(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
    }

    /// A gossiped record forwarded by `source`.
    pub fn handle_gossip(&mut self, source: &NodeId, bytes: &[u8], now_ms: u64) -> Verdict {
        self.traffic.incoming(bytes.len());
        if !self.is_member(source, now_ms) {
            self.refuse("gossip");
            return Verdict::Ignore;
        }
        match self.ledger.ingest(bytes, now_ms) {
            Ok(Some(delta)) => {
                self.accepted(delta, bytes.to_vec());
                Verdict::Accept
            }
            Ok(None) => Verdict::Ignore,
            Err(_) => Verdict::Reject,
        }
    }

    /// A request from `from` (authenticated by the transport).
    pub fn handle_request(&mut self, from: NodeId, request: Request, now_ms: u64) -> Inbound {
        self.traffic.incoming(request.payload_len());
        let member = self.is_member(&from, now_ms);
        let inbound = match request {
            Request::Join(join) => match join.inviter {
                Some(inviter) if inviter != self.me => {
                    if self.is_member(&inviter, now_ms) {
                        return Inbound::Forward {
                            inviter,
                            subject: from,
                            join,
                        };
                    }
                    Inbound::Answer(Answer(Response::Refused(
                        "the member that issued this invite is no longer part of the network: ask another member for a new invite".into(),
                    )))
                }
                _ => {
                    return Inbound::Join {
                        subject: from,
                        join,
                    }
                }
            },
            Request::Push(records) if !member => {
                // A node just admitted introduces itself: its own record,
                // and nothing else, may come from a non-member.
                let own = records.len() == 1
                    && SignedRecord::decode(&records[0]).is_ok_and(|r| r.writer == from);
                if !own {
                    self.refuse("push");
                    Inbound::Answer(Answer(self.not_member(&from, now_ms)))
                } else {
                    let fresh = self.ingest(&records, now_ms);
                    if self.is_member(&from, now_ms) {
                        fresh
                            .into_iter()
                            .for_each(|b| self.send(Transmit::Publish(b)));
                        self.summary_to(from);
                        Inbound::Answer(Answer(Response::Ack))
                    } else {
                        self.refuse("push");
                        Inbound::Answer(Answer(self.not_member(&from, now_ms)))
                    }
                }
            }
            Request::Federate {
                agreement,
                contacts,
            } => {
                return Inbound::Federate {
                    agreement,
                    contacts,
                }
            }
            Request::EndFederation(ending) => return Inbound::EndFederation(ending),
            Request::PartnerSummary {
                agreement,
                own,
                summary,
            } => Inbound::Answer(Answer(self.partner_summary(
                from,
                agreement,
                own.as_deref(),
                &summary,
                now_ms,
            ))),
            Request::PartnerLeaves { agreement, leaves } => Inbound::Answer(Answer(
                self.partner_leaves(&from, agreement, &leaves, now_ms),
            )),
            Request::PartnerPull { agreement, writers } => Inbound::Answer(Answer(
                self.partner_pull(&from, agreement, &writers, now_ms),
            )),
            _ if !member => {
                self.refuse(match request {
                    Request::Summary(_) => "summary",
                    Request::Leaves(_) => "leaves",
                    Request::Pull(_) => "pull",
                    Request::ForwardedJoin { .. } => "forwarded join",
                    Request::Reissue(_) => "reissue",
                    _ => "query",
                });
                Inbound::Answer(Answer(self.not_member(&from, now_ms)))
            }
            Request::ForwardedJoin { subject, join } => return Inbound::Join { subject, join },
            Request::Reissue(chain) => return Inbound::Reissue(chain),
            Request::Summary(s) => Inbound::Answer(Answer(Response::Versions(sync::differing(
                self.ledger.state(),
                &s,
            )))),
            Request::Leaves(leaves) => Inbound::Answer(Answer(Response::Versions(sync::leaves(
                self.ledger.state(),
                &leaves,
            )))),
            Request::Pull(writers) => Inbound::Answer(Answer(Response::Records(sync::records_of(
                self.ledger.state(),
                &writers,
            )))),
            Request::Push(records) => {
                let fresh = self.ingest(&records, now_ms);
                if fresh.len() <= URGENT_PUSH {
                    fresh
                        .into_iter()
                        .for_each(|b| self.send(Transmit::Publish(b)));
                }
                Inbound::Answer(Answer(Response::Ack))
            }
            Request::Query(text) => {
                let admit = self.ledger.member(&from, now_ms).is_some_and(|m| m.admit);
                return Inbound::Query { text, admit };
            }
        };
        match inbound {
            Inbound::Answer(Answer(response)) => Inbound::Answer(self.answer(response)),
            other => other,
        }
    }

    /// A request to `peer` failed without an answer (unreachable, or it
    /// no longer accepts us, e.g. revoked in its network and not yet known
    /// as such here): a partner member is passed over like one that does
    /// not know us, and another member of its network is asked at once.
    pub fn handle_failed(&mut self, peer: NodeId, now_ms: u64) {
        if !self.is_member(&peer, now_ms) {
            self.stranger(peer, now_ms);
        }
    }

    /// The refusal for a non-member: a revoked node is shown the records
    /// that revoke it, once per connection (so it knows, and can check);
    /// anyone else learns nothing.
    fn not_member(&mut self, from: &NodeId, now_ms: u64) -> Response {
        let revoked = self
            .ledger
            .member(from, now_ms)
            .is_some_and(|m| m.status == Status::Revoked);
        let first = self
            .peers
            .get_mut(from)
            .is_some_and(|p| !std::mem::replace(&mut p.shown_proof, true));
        if revoked && first {
            Response::Revoked(self.ledger.revocation_proof(from))
        } else {
            Response::NotMember
        }
    }

    /// Counts a request the caller sends itself (a forwarded query, whose
    /// answer it waits for under the transport's request id).
    pub fn count_request(&mut self, request: &Request) {
        self.traffic.outgoing(request.payload_len());
    }

    /// The answer to a request this node handles, counted as sent: the
    /// only form the transport sends an answer in, so none goes uncounted
    /// (answers to joins, queries, re-issues and agreements are made
    /// outside the replica).
    pub fn answer(&mut self, response: Response) -> Answer {
        self.traffic.outgoing(response.payload_len());
        Answer(response)
    }

    /// The answer `from` gave to one of our requests. Answers that belong
    /// to the replica (anti-entropy) are handled here; the others (query
    /// answers, refusals, admissions) are handed back.
    pub fn handle_response(
        &mut self,
        from: NodeId,
        response: Response,
        now_ms: u64,
    ) -> Option<Response> {
        self.traffic.incoming(response.payload_len());
        let member = self.is_member(&from, now_ms);
        match response {
            Response::Versions(v) if member => {
                let plan = sync::plan(self.ledger.state(), &v);
                if !plan.pull.is_empty() {
                    self.request(from, Request::Pull(plan.pull));
                }
                if !plan.push.is_empty() {
                    self.request(from, Request::Push(plan.push));
                }
                if !plan.leaves.is_empty() {
                    self.request(from, Request::Leaves(plan.leaves));
                }
            }
            Response::Records(records) if member => {
                self.ingest(&records, now_ms);
                // A full batch: the peer may hold more (a member just
                // admitted streams the state this way, batch after batch).
                if records.len() >= sync::MAX_BATCH {
                    self.summary_to(from);
                }
            }
            Response::Versions(_) | Response::Records(_) => self.refuse("response"),
            Response::NotMember => {
                // A partner member that does not know us (it restarted):
                // our record goes with the next summary to it.
                if !member {
                    self.stranger(from, now_ms);
                }
                if member {
                    self.introduce(from);
                }
                return Some(Response::NotMember);
            }
            Response::Revoked(proof) => {
                // Taken only if it checks out: the ledger verifies it.
                self.ingest(&proof, now_ms);
                return Some(Response::Revoked(vec![]));
            }
            Response::PartnerVersions {
                agreement,
                versions,
            } => self.handle_partner_versions(from, agreement, &versions, now_ms),
            Response::PartnerRecords { records, .. } => {
                self.handle_partner_records(&records, now_ms)
            }
            Response::Ended(ending) => self.handle_ended(ending),
            Response::Ack => {}
            other => return Some(other),
        }
        None
    }

    /// A member that does not know us yet (we were just admitted) gets our
    /// own record, once per connection; nobody else gets it.
    fn introduce(&mut self, to: NodeId) {
        let Some(peer) = self.peers.get_mut(&to) else {
            return;
        };
        if std::mem::replace(&mut peer.introduced, true) {
            return;
        }
        if let Some(own) = self.ledger.state().get(&self.me).map(SignedRecord::encode) {
            self.request(to, Request::Push(vec![own]));
        }
    }

    /// Publishes a new version of this node's own record: it enters the
    /// state, is gossiped, and if `urgent` (endpoints or the address
    /// changed) is pushed to every connected member as well, in case the
    /// gossip mesh is still re-forming.
    pub fn publish(
        &mut self,
        bytes: Vec<u8>,
        urgent: bool,
        now_ms: u64,
    ) -> Result<Option<Delta>, crate::ledger::Reject> {
        let delta = self.ledger.ingest(&bytes, now_ms)?;
        if delta.is_some_and(|d| d.changes.membership) {
            self.follow_agreements();
        }
        if urgent {
            for to in self.connected_members(now_ms) {
                self.request(to, Request::Push(vec![bytes.clone()]));
            }
        }
        self.send(Transmit::Publish(bytes));
        Ok(delta)
    }

    /// Connected peers that are members in good standing.
    fn connected_members(&self, now_ms: u64) -> Vec<NodeId> {
        self.peers
            .keys()
            .filter(|p| self.is_member(p, now_ms))
            .copied()
            .collect()
    }

    /// Runs the anti-entropy timers: every [`SYNC_EVERY`], a summary to one
    /// connected member picked with `rng`; every [`PARTNER_SYNC_EVERY`],
    /// a summary to one member of each federated network this node is
    /// exposed to.
    pub fn handle_timeout(&mut self, now: Instant, now_ms: u64, rng: &mut impl RngCore) {
        if self.next_partner_sync.is_none_or(|t| now >= t) {
            self.next_partner_sync = Some(now + PARTNER_SYNC_EVERY);
            self.sync_partners(now_ms, rng);
        }
        if self.next_sync.is_some_and(|t| now < t) {
            return;
        }
        self.next_sync = Some(now + SYNC_EVERY);
        let members = self.connected_members(now_ms);
        if members.is_empty() {
            return;
        }
        let pick = members[rng.next_u32() as usize % members.len()];
        self.summary_to(pick);
    }

    /// When [`Replica::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_sync, self.next_partner_sync) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next message to send (counted as sent).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.outbox.pop_front()?;
        let bytes = match &t {
            Transmit::Request { request, .. } => request.payload_len(),
            Transmit::Publish(b) => b.len(),
        };
        self.traffic.outgoing(bytes);
        Some(t)
    }

    /// The next change to react to.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

mod partner_sync;

#[cfg(test)]
mod tests;
