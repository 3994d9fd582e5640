//! Messages members exchange over the request-response protocol: joining,
//! anti-entropy (summary → versions → pull/push) and forwarded CLI queries.
//! Plain serde types; the libp2p shell picks the encoding.

use crate::agreement::{Agreement, Ending};
use crate::cert::Cert;
use crate::contact::Contact;
use crate::network::NetworkId;
use crate::record::NodeId;
use crate::sync::{Leaf, Summary, Versions};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Bytes an agreement stands for in traffic counters (two sides with
/// keys, ranges and names, two signatures, times).
pub const AGREEMENT_BYTES: usize = 2 * (16 + 32 + 5 + 32) + 2 * 64 + 3 * 8;

/// Bytes an ending stands for in traffic counters (agreement id, network,
/// time, signature).
pub const ENDING_BYTES: usize = 16 + 16 + 8 + 64;

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
    /// The overlay address it wants (`join --address`), checked before
    /// the invite is spent.
    #[serde(default)]
    pub address: Option<std::net::Ipv4Addr>,
    /// The member that issued the invite, when the newcomer asks another
    /// member (which forwards the join to it: only the issuer can spend
    /// the invite, so one-time use stays exact).
    #[serde(default)]
    pub inviter: Option<NodeId>,
}

/// A request to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Admit me.
    Join(JoinRequest),
    /// A member passes on the join of `subject` (a newcomer it is
    /// connected to, authenticated by the transport) to the invite's
    /// issuer; the answer goes back to the newcomer.
    ForwardedJoin {
        /// The newcomer.
        subject: NodeId,
        /// Its request.
        join: JoinRequest,
    },
    /// Anti-entropy step 1.
    Summary(Summary),
    /// Anti-entropy, after a split: your ranks in these leaves.
    Leaves(Vec<Leaf>),
    /// Send me these writers' records.
    Pull(Vec<NodeId>),
    /// Records you may lack.
    Push(Vec<Vec<u8>>),
    /// A CLI query answered as if asked locally (JSON text, `--via`).
    Query(String),
    /// Another network accepted this network's federation offer: the
    /// agreement, signed by both authorities, for the members of the
    /// offering network to carry, and members of the accepting network to
    /// reach it at (may come from a non-member).
    Federate {
        /// The agreement.
        agreement: Box<Agreement>,
        /// Members of the accepting network.
        contacts: Vec<Contact>,
    },
    /// The other network ended an agreement with this one (may come from
    /// a non-member).
    EndFederation(Box<Ending>),
    /// An admitter re-issued the receiver's certificate (`cladnet tag`):
    /// the new chain, for the receiver to check and adopt (members only).
    Reissue(Vec<Cert>),
    /// A member of a federated network, exposed to ours, compares what it
    /// holds of what our network exposes under `agreement` (step 1 of
    /// anti-entropy across networks); `own` is its own record, which
    /// proves it is an exposed member of its network (sent to a member
    /// the first time, and when it changed).
    PartnerSummary {
        /// The agreement's id.
        agreement: [u8; 16],
        /// The asker's own signed record, unless the member has it.
        own: Option<Vec<u8>>,
        /// What it holds of our exposed records.
        summary: Summary,
    },
    /// [`Request::Leaves`] across networks: the ranks of what your network
    /// exposes to mine in these leaves.
    PartnerLeaves {
        /// The agreement's id.
        agreement: [u8; 16],
        /// The leaves.
        leaves: Vec<Leaf>,
    },
    /// Send me these writers' records, if your network exposes them to mine.
    PartnerPull {
        /// The agreement's id.
        agreement: [u8; 16],
        /// The writers.
        writers: Vec<NodeId>,
    },
}

/// A member's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Welcome: your chain and the start of the network's state.
    Admitted {
        /// The newcomer's certificate chain.
        chain: Vec<Cert>,
        /// The first batch of the admitting member's records
        /// ([`crate::sync::first_records`]); anti-entropy brings the rest.
        records: Vec<Vec<u8>>,
        /// Every overlay address held, so the newcomer picks a free one
        /// before it holds every record.
        #[serde(default)]
        taken: Vec<Ipv4Addr>,
    },
    /// No, and why (one sentence for the user).
    Refused(String),
    /// "I do not know you as a member": only members take part in
    /// anti-entropy and queries. A member just admitted answers it by
    /// pushing its own record, which proves its membership.
    NotMember,
    /// "You were revoked": the signed records that revoke the asker, so
    /// it knows (and can check) why nobody answers it any more.
    Revoked(Vec<Vec<u8>>),
    /// Anti-entropy step 2.
    Versions(Versions),
    /// Records asked for.
    Records(Vec<Vec<u8>>),
    /// The answer to a query (JSON text).
    Answer(String),
    /// Done.
    Ack,
    /// Answer to [`Request::PartnerSummary`] and [`Request::PartnerLeaves`]:
    /// the ranks of what our network exposes, in the parts that differ.
    PartnerVersions {
        /// The agreement's id.
        agreement: [u8; 16],
        /// Ranks in the buckets that differ.
        versions: Versions,
    },
    /// Answer to [`Request::PartnerPull`]: the exposed records asked for.
    PartnerRecords {
        /// The agreement's id.
        agreement: [u8; 16],
        /// The records.
        records: Vec<Vec<u8>>,
    },
    /// Answer to a partner request under an agreement this network ended:
    /// the signed ending, so the asker's network learns it even when the
    /// `federate end` delivery missed it.
    Ended(Box<Ending>),
}

/// The id under which gossip de-duplicates a message carrying `data`:
/// a specified hash (BLAKE2s-256 under a domain tag, first 16 bytes), so
/// nodes built by different compilers or for other platforms agree on
/// which messages they have seen.
pub fn gossip_id(data: &[u8]) -> [u8; 16] {
    use blake2::digest::{FixedOutput, Update};
    let mut h = blake2::Blake2s256::default();
    Update::update(&mut h, b"cladnet/gossip/v1");
    Update::update(&mut h, data);
    let full: [u8; 32] = h.finalize_fixed().into();
    let mut id = [0u8; 16];
    id.copy_from_slice(&full[..16]);
    id
}

impl Request {
    /// Payload bytes this request carries (for traffic counters).
    pub fn payload_len(&self) -> usize {
        match self {
            Request::Join(j) => 96 + j.name.len(),
            Request::ForwardedJoin { join, .. } => 128 + join.name.len(),
            Request::Summary(s) => 8 * s.0.len(),
            Request::Leaves(leaves) => 2 * leaves.len(),
            Request::PartnerLeaves { leaves, .. } => 16 + 2 * leaves.len(),
            Request::Pull(ids) => 32 * ids.len(),
            Request::Push(records) => records.iter().map(Vec::len).sum(),
            Request::Query(q) => q.len(),
            Request::Federate { contacts, .. } => AGREEMENT_BYTES + 64 * contacts.len(),
            Request::EndFederation(_) => ENDING_BYTES,
            Request::PartnerSummary { own, summary, .. } => {
                16 + own.as_ref().map_or(0, Vec::len) + 8 * summary.0.len()
            }
            Request::PartnerPull { writers, .. } => 16 + 32 * writers.len(),
            Request::Reissue(chain) => crate::cert::CERT_BYTES * chain.len(),
        }
    }
}

impl Response {
    /// Payload bytes this response carries (for traffic counters).
    pub fn payload_len(&self) -> usize {
        match self {
            Response::Admitted {
                chain,
                records,
                taken,
            } => {
                chain.len() * crate::cert::CERT_BYTES
                    + records.iter().map(Vec::len).sum::<usize>()
                    + 4 * taken.len()
            }
            Response::Refused(why) => why.len(),
            Response::Versions(v) => v.wire_len(),
            Response::Records(records) => records.iter().map(Vec::len).sum(),
            Response::Answer(text) => text.len(),
            Response::Revoked(records) | Response::PartnerRecords { records, .. } => {
                records.iter().map(Vec::len).sum()
            }
            Response::PartnerVersions { versions: v, .. } => 16 + v.wire_len(),
            Response::Ended(_) => ENDING_BYTES,
            Response::NotMember | Response::Ack => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_ids_are_a_specified_hash() {
        // BLAKE2s-256 of "cladnet/gossip/v1" || "record", first 16 bytes:
        // every build of every version on every platform must agree.
        assert_eq!(
            crate::hex::encode(&gossip_id(b"record")),
            "a18376517ca8b11af17a70dc7782b8a8"
        );
    }
}
