//! Per-peer protocol state: sessions, the pending handshake, the packet
//! queue that waits for a session, and the timestamps the timers read.

use crate::allowed_ips::IpNet;
use crate::cookie::CookieJar;
use crate::crypto::PublicKey;
use crate::handshake::{Initiator, TIMESTAMP_LEN};
use crate::session::Session;
use crate::timers::{KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_TIMEOUT};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Traffic with one peer, counted as it happens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Bytes of datagrams received from the peer.
    pub rx_bytes: u64,
    /// Bytes of datagrams sent to the peer.
    pub tx_bytes: u64,
    /// Datagrams received from the peer.
    pub rx_packets: u64,
    /// Datagrams sent to the peer.
    pub tx_packets: u64,
    /// Completed handshakes.
    pub handshakes: u64,
    /// When the last handshake completed.
    pub last_handshake: Option<Instant>,
}

/// Most packets kept per peer while a handshake is under way.
pub(crate) const QUEUE_LEN: usize = 128;

/// An initiation in flight. `init` is `None` once a response failed to
/// authenticate: the retry timer still runs from `sent_at`.
pub(crate) struct Pending {
    pub init: Option<Initiator>,
    pub local_index: u32,
    pub sent_at: Instant,
}

/// Which of a peer's sessions a receiver index names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Slot {
    Current,
    Previous,
    Next,
}

pub(crate) struct Peer {
    pub public: PublicKey,
    /// The only destination its packets may have (a federated network's
    /// member reaches this node, nothing behind it); `None`: any.
    pub only_to: Option<std::net::IpAddr>,
    pub psk: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    pub allowed: Vec<IpNet>,
    pub keepalive: Option<Duration>,
    pub jar: CookieJar,
    pub pending: Option<Pending>,
    pub attempt_started: Option<Instant>,
    pub current: Option<Session>,
    pub previous: Option<Session>,
    /// Responder session not yet confirmed by a packet from the initiator.
    pub next: Option<Session>,
    pub last_timestamp: [u8; TIMESTAMP_LEN],
    pub last_initiation_at: Option<Instant>,
    pub queue: VecDeque<Vec<u8>>,
    pub last_sent: Option<Instant>,
    pub last_received: Option<Instant>,
    /// Last time a non-keepalive packet arrived (keepalives are not answered).
    pub last_data_received: Option<Instant>,
    /// Set when we send data and cleared when anything arrives.
    pub unanswered_since: Option<Instant>,
    /// Data packets sent since `unanswered_since`.
    pub unanswered_packets: u32,
    pub want_keepalive: bool,
    pub want_handshake: bool,
    pub in_outbox: bool,
    pub stats: PeerStats,
}

impl Peer {
    /// A peer with nothing configured and no sessions yet.
    pub fn new(public: PublicKey) -> Self {
        Self {
            jar: CookieJar::new(&public),
            public,
            psk: [0; 32],
            only_to: None,
            endpoint: None,
            allowed: Vec::new(),
            keepalive: None,
            pending: None,
            attempt_started: None,
            current: None,
            previous: None,
            next: None,
            last_timestamp: [0; TIMESTAMP_LEN],
            last_initiation_at: None,
            queue: VecDeque::new(),
            last_sent: None,
            last_received: None,
            last_data_received: None,
            unanswered_since: None,
            unanswered_packets: 0,
            want_keepalive: false,
            want_handshake: false,
            in_outbox: false,
            stats: PeerStats::default(),
        }
    }

    /// The session to send on, if it is still young enough.
    pub fn sending_session(&mut self, now: Instant) -> Option<&mut Session> {
        self.current
            .as_mut()
            .filter(|s| now.saturating_duration_since(s.created) < REJECT_AFTER_TIME)
    }

    /// Which session has local index `index`.
    pub fn slot_of(&self, index: u32) -> Option<Slot> {
        let is = |s: &Option<Session>| s.as_ref().is_some_and(|s| s.local_index == index);
        if is(&self.current) {
            Some(Slot::Current)
        } else if is(&self.previous) {
            Some(Slot::Previous)
        } else if is(&self.next) {
            Some(Slot::Next)
        } else {
            None
        }
    }

    pub fn session_mut(&mut self, slot: Slot) -> Option<&mut Session> {
        match slot {
            Slot::Current => self.current.as_mut(),
            Slot::Previous => self.previous.as_mut(),
            Slot::Next => self.next.as_mut(),
        }
    }

    /// Makes `session` current; returns the local indices that are no longer used.
    pub fn install(&mut self, session: Session) -> impl Iterator<Item = u32> {
        let dropped = self.previous.take().map(|s| s.local_index);
        self.previous = self.current.take();
        self.current = Some(session);
        dropped.into_iter()
    }

    /// Local indices of every session and the pending handshake.
    pub fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        [&self.current, &self.previous, &self.next]
            .into_iter()
            .filter_map(|s| s.as_ref().map(|s| s.local_index))
            .chain(self.pending.as_ref().map(|p| p.local_index))
    }

    /// True if a handshake for a new session should be under way or started.
    pub fn handshake_in_flight(&self) -> bool {
        self.pending.is_some()
    }

    /// The earliest time one of this peer's timers fires, as they stand
    /// (a session expiring, a handshake retry, a keepalive due);
    /// `received_after_sent` if data arrived after our last send.
    pub fn next_deadline(&self, now: Instant, received_after_sent: bool) -> Option<Instant> {
        let sessions = [&self.current, &self.previous, &self.next]
            .into_iter()
            .flatten()
            .map(|s| s.created + REJECT_AFTER_TIME);
        let retry = self.pending.as_ref().map(|p| p.sent_at + REKEY_TIMEOUT);
        let answer = self
            .last_data_received
            .filter(|_| received_after_sent && self.current.is_some())
            .map(|t| t + KEEPALIVE_TIMEOUT);
        // (While a handshake is in flight its retry is the deadline.)
        let unanswered = self
            .unanswered_since
            .filter(|_| self.pending.is_none())
            .map(|t| t + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT);
        // A keepalive cannot leave without an endpoint: giving it one wakes
        // the timers anyway.
        let keepalive = self
            .keepalive
            .filter(|_| self.endpoint.is_some())
            .map(|i| self.last_sent.map_or(now, |t| t + i));
        sessions
            .chain(retry)
            .chain(answer)
            .chain(unanswered)
            .chain(keepalive)
            .min()
    }

    /// Drops sessions older than REJECT_AFTER_TIME; returns their indices.
    pub fn expire_sessions(&mut self, now: Instant) -> Vec<u32> {
        let mut gone = Vec::new();
        for s in [&mut self.current, &mut self.previous, &mut self.next] {
            if s.as_ref()
                .is_some_and(|x| now.saturating_duration_since(x.created) >= REJECT_AFTER_TIME)
            {
                if let Some(x) = s.take() {
                    gone.push(x.local_index);
                }
            }
        }
        gone
    }
}
