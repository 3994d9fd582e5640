//! cladnet's control plane core, sans-IO: the network's state as a CRDT map
//! of single-writer, signed records. Each node writes only its own record
//! with a growing version; merging keeps the highest valid version, so every
//! member converges on the same state whatever order gossip arrives in.
//!
//! Nothing here knows about libp2p, sockets or the clock: bytes come in,
//! verified records and merged state come out.

pub mod record;
pub mod state;

pub use record::{NodeId, NodeKey, RecordError, SignedRecord, Verified};
pub use state::{Digest, Ingest, State};
