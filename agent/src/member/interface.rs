//! What passes between a [`super::Member`] and the daemon that drives it:
//! who it is ([`Identity`]), where it keeps what must survive a crash
//! ([`Storage`]), who asked ([`Asker`]) and what it asks the daemon to do
//! ([`Command`]).

use crate::api::Request;
use crate::statedir::Settings;
use federation::ledger::Network;
use federation::protocol::Request as Ask;
use federation::replica::Answer;
use federation::{NodeId, NodeKey};
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// Names a request this member sent, so its answer finds its way back.
pub type Tag = u64;
/// Names a local API request waiting for its answer.
pub type LocalId = u64;

/// Who asked something of this member, and where the answer goes: a
/// local API request, or another member's request (`R`: the shell's
/// reply handle, opaque here).
#[derive(Debug, PartialEq, Eq)]
pub enum Asker<R> {
    /// The local API (or HTTP) request `LocalId`.
    Local(LocalId),
    /// Another member's request.
    Remote(R),
}

/// Who this node is: its keys, its network and its settings.
pub struct Identity {
    /// This node's key.
    pub key: NodeKey,
    /// The network's authority key, on the node that holds it.
    pub authority: Option<NodeKey>,
    /// Its network.
    pub network: Network,
    /// Its settings (`init`/`join`, `cladnet set`).
    pub settings: Settings,
}

/// Where a member keeps what must survive a crash (the state directory's
/// store; a map in tests). Each call is durable when it returns.
pub trait Storage: Send {
    /// Stores this node's signed record as its own and in the records, in
    /// one transaction.
    fn own(&mut self, bytes: &[u8]) -> Result<(), String>;
    /// Stores records received from the network.
    fn records(&mut self, records: &[(NodeId, Vec<u8>)]) -> Result<(), String>;
    /// The invite `id` as stored, if any.
    fn invite(&self, id: &[u8; 16]) -> Result<Option<Vec<u8>>, String>;
    /// Stores the invite `id`.
    fn put_invite(&mut self, id: &[u8; 16], bytes: &[u8]) -> Result<(), String>;
    /// Stores new settings.
    fn settings(&mut self, settings: &Settings) -> Result<(), String>;
}

/// What the member asks the daemon to do.
#[derive(Debug)]
pub enum Command<R> {
    /// Connect the control plane to member `id` at `addrs`.
    Dial {
        /// The member.
        id: NodeId,
        /// Its control endpoints.
        addrs: Vec<SocketAddr>,
    },
    /// Connect to a control endpoint of a node not known yet; report it
    /// with [`Member::handle_connected`].
    DialAddress(SocketAddr),
    /// Close the control connections to a node.
    Disconnect(NodeId),
    /// Send `request` to `to`; its answer comes back through
    /// [`Member::handle_response`] (or [`Member::handle_failed`]) with `tag`.
    Request {
        /// Names the request.
        tag: Tag,
        /// To whom.
        to: NodeId,
        /// Its control endpoints.
        addrs: Vec<SocketAddr>,
        /// What.
        request: Ask,
    },
    /// Answer another member's request (counted by the replica).
    Respond {
        /// Where the answer goes.
        reply: R,
        /// The answer.
        answer: Answer,
    },
    /// Gossip a record.
    Publish(Vec<u8>),
    /// Change how a peer is reached (direct, through a relay), or check a
    /// direct candidate with an endpoint echo (its answer goes to
    /// `Member::handle_verified`).
    Route(federation::routes::Command),
    /// Only these members' gossip passes the control plane's boundary.
    SetMembers(BTreeSet<NodeId>),
    /// The ledger or this node's record changed: make the host and the
    /// data plane match (address, MTU, peers, routes, names).
    Apply,
    /// Re-read the host soon (where others see this node changed).
    Rescan,
    /// The settings of `--advertise auto` changed: look the public
    /// address up again ([`Member::handle_auto`] takes the answer).
    LookUpAuto,
    /// The answer line for local request `id`.
    Answer {
        /// Which request.
        id: LocalId,
        /// Its answer line.
        line: String,
    },
    /// Answer a request that only reads (status, members, peers...) from
    /// a view of the node with the data plane, then give the line to
    /// [`Member::answered`].
    Read {
        /// Who asked.
        asker: Asker<R>,
        /// What.
        request: Request,
    },
    /// The farewell has spread: stop.
    Exit,
}
