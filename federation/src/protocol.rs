//! Messages members exchange over the request-response protocol: joining,
//! anti-entropy (summary → versions → pull/push), nothing else. Plain serde
//! types; the libp2p shell picks the encoding.

use crate::cert::Cert;
use crate::network::NetworkId;
use crate::record::NodeId;
use crate::sync::{Summary, Versions};
use serde::{Deserialize, Serialize};

/// A newcomer presenting its invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The network named by the token.
    pub network: NetworkId,
    /// Which invite.
    pub invite: [u8; 16],
    /// The invite's secret.
    pub secret: [u8; 32],
    /// The newcomer's WireGuard public key.
    pub wg_key: [u8; 32],
    /// The newcomer's name.
    pub name: String,
}

/// A request to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Admit me.
    Join(JoinRequest),
    /// Anti-entropy step 1.
    Summary(Summary),
    /// Send me these writers' records.
    Pull(Vec<NodeId>),
    /// Records you may lack.
    Push(Vec<Vec<u8>>),
    /// A CLI query answered as if asked locally (JSON text, `--via`).
    Query(String),
}

/// A member's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Welcome: your chain and the network's state.
    Admitted {
        /// The newcomer's certificate chain.
        chain: Vec<Cert>,
        /// Every record the admitting member holds.
        records: Vec<Vec<u8>>,
    },
    /// No, and why (one sentence for the user).
    Refused(String),
    /// Anti-entropy step 2.
    Versions(Versions),
    /// Records asked for.
    Records(Vec<Vec<u8>>),
    /// The answer to a query (JSON text).
    Answer(String),
    /// Done.
    Ack,
}

impl Request {
    /// Payload bytes this request carries (for traffic counters).
    pub fn payload_len(&self) -> usize {
        match self {
            Request::Join(j) => 96 + j.name.len(),
            Request::Summary(s) => 8 * s.0.len(),
            Request::Pull(ids) => 32 * ids.len(),
            Request::Push(records) => records.iter().map(Vec::len).sum(),
            Request::Query(q) => q.len(),
        }
    }
}
