//! cladnet's control plane. The core is sans-IO: the network's state as a
//! CRDT map of single-writer, signed records (each node writes only its own
//! record with a growing version; merging keeps the highest valid version),
//! the rules that admit records (certificate chains from the network's
//! authority, revocations), address claims, invites, and the anti-entropy
//! exchange. Nothing in the core knows about libp2p, sockets or the clock:
//! bytes and times come in, verified records and decisions come out.
//!
//! The `net` feature adds the libp2p shell ([`net`]) that carries the core's
//! messages over QUIC.

pub mod address;
pub mod addrspace;
pub mod admission;
pub mod agreement;
pub mod cert;
pub mod cidr;
pub mod contact;
pub mod federations;
#[cfg(any(test, feature = "test-support"))]
pub mod fixture;
pub mod hex;
pub mod joining;
pub mod ledger;
pub mod liveness;
pub mod member;
#[cfg(feature = "net")]
pub mod net;
pub mod network;
pub mod partners;
pub mod paths;
pub mod protocol;
pub mod record;
pub mod replica;
pub mod roster;
pub mod routes;
pub mod state;
pub mod sync;
pub mod token;

pub use cidr::{Cidr, CidrError};
pub use ledger::{Ledger, Member, Network, Reject, Status};
pub use network::NetworkId;
pub use record::{NodeId, NodeKey, Rank, RecordError, SignedRecord, Verified};
pub use state::{Ingest, State};
