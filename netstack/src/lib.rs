//! cladnet's data plane as a sans-IO library: the WireGuard protocol
//! (handshake via `snow`, transport via `ring`), replay window, timers,
//! cookies and the allowed-IPs routing table.
//!
//! Nothing here touches a socket, a device or the clock: callers feed
//! datagrams, packets and the current time into a [`Device`] and get back
//! bytes to send, packets to deliver and work to do at the next tick.

pub mod allowed_ips;
pub mod cookie;
pub mod crypto;
pub mod device;
pub mod echo;
pub mod handshake;
pub mod ip;
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
