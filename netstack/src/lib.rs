//! cladnet's data plane as a sans-IO library: the WireGuard protocol
//! (handshake via `snow`, transport via `ring`), replay window, timers,
//! cookies and the allowed-IPs routing table.
//!
//! Nothing here touches a socket, a device or the clock: callers feed
//! datagrams, packets and the current time into a [`Node`] (a mesh
//! member: WireGuard plus relay envelopes and the endpoint echo) or a bare
//! [`Device`], and get back bytes to send, packets to deliver, events and
//! when to run the timers next.

pub mod allowed_ips;
pub mod asker;
pub mod cookie;
pub mod crypto;
pub mod device;
pub mod echo;
pub mod forwarding;
pub mod handshake;
pub mod ip;
pub mod node;
mod peer;
pub mod pmtu;
pub mod ratelimit;
pub mod relay;
pub mod replay;
pub mod session;
pub mod timers;
pub mod wire;

pub use allowed_ips::{AllowedIps, IpNet};
pub use crypto::{PrivateKey, PublicKey};
pub use device::{
    Action, Counters, Device, DeviceConfig, DropReason, PeerConfig, PeerId, PeerInfo,
};
pub use node::{Node, NodeCounters, Route};
pub use peer::PeerStats;

/// Why a message could not be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The datagram is not a well-formed WireGuard message.
    #[error("malformed message")]
    Malformed,
    /// Authentication or decryption failed.
    #[error("decryption failed")]
    Decrypt,
    /// The counter was already used or is too old.
    #[error("replayed or too old counter")]
    Replay,
    /// The Noise handshake could not proceed.
    #[error("handshake failed")]
    Handshake,
    /// The output buffer cannot hold the result.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// The session used too many counters.
    #[error("session expired")]
    SessionExpired,
    /// A cookie reply arrived for a message we never sent.
    #[error("unexpected cookie reply")]
    UnexpectedCookie,
}
