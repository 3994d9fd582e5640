//! The device: our static key, the peer table and the handlers that turn
//! datagrams and packets into actions. One `Device` is one WireGuard
//! interface.
//!
//! Use: feed packets read from the TUN device to [`Device::encapsulate`],
//! datagrams read from the UDP socket to [`Device::decapsulate`], call
//! [`Device::handle_timeout`] when [`Device::poll_timeout`] says, and after
//! each of these drain [`Device::poll_transmit`] until it returns `None`.
//! Completed handshakes come out of [`Device::poll_handshake`].
//!
//! Here: the types, the state, datagram dispatch and the timers. The peer
//! table is in `device/peers.rs`, the handshake messages in
//! `device/handshakes.rs`, transport data both ways in `device/data.rs`.

use crate::allowed_ips::{AllowedIps, IpNet};
use crate::cookie::CookieChecker;
use crate::crypto::{tai64n, PrivateKey, PublicKey};
use crate::peer::{Peer, PeerStats};
use crate::ratelimit::RateLimiter;
use crate::timers::*;
use crate::wire::{self, Message};
use handshakes::Early;
use rand_core::{OsRng, RngCore};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Completed handshakes waiting to be reported, at most (older reports are
/// dropped: they only speed up what the caller would see anyway).
const MAX_HANDSHAKE_REPORTS: usize = 256;

/// Handle of a peer inside one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub u32);

/// Static settings of a device.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Our X25519 private key.
    pub private_key: PrivateKey,
    /// MTU of the inner (TUN) side; packets are padded up to it at most.
    pub mtu: usize,
    /// Handshake messages per second above which we demand cookies from
    /// every source (a source past its own share of initiations must show
    /// one sooner).
    pub handshake_load_limit: u32,
}

/// How to reach one peer and which addresses it may use.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The peer's static public key.
    pub public_key: PublicKey,
    /// Optional preshared key (all zeros when absent, as WireGuard does).
    pub preshared_key: Option<[u8; 32]>,
    /// Where to send until the peer roams.
    pub endpoint: Option<SocketAddr>,
    /// Overlay networks routed to this peer and accepted from it.
    pub allowed_ips: Vec<IpNet>,
    /// Send a keepalive when nothing was sent for this long.
    pub persistent_keepalive: Option<Duration>,
}

/// A read-only snapshot of one peer, for status output.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// Current endpoint (learned from authenticated packets).
    pub endpoint: Option<SocketAddr>,
    /// Networks routed to the peer.
    pub allowed_ips: Vec<IpNet>,
    /// Traffic and handshakes.
    pub stats: PeerStats,
    /// Persistent keepalive interval.
    pub persistent_keepalive: Option<Duration>,
    /// Since when data we sent has gone unanswered (nothing received).
    pub unanswered_since: Option<Instant>,
    /// Data packets sent since then: one alone is usually a reply (to a
    /// ping, say), which the other side need not answer.
    pub unanswered_packets: u32,
}

/// What the caller must do with the result of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `out[..len]` to `to` over UDP.
    Send {
        /// Destination endpoint.
        to: SocketAddr,
        /// Length of the datagram at the start of `out`.
        len: usize,
    },
    /// Write the IP packet `out[range]` to the TUN device.
    Deliver(Range<usize>),
    /// Nothing (consumed, queued, or dropped and counted).
    None,
}

macro_rules! drop_reasons {
    ($($name:ident => $label:literal: $doc:literal),* $(,)?) => {
        /// Why an input was dropped; each reason has its own counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum DropReason { $(#[doc = $doc] $name),* }
        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name),*];
            /// Stable snake_case name for metrics and JSON.
            pub fn label(self) -> &'static str {
                match self { $(DropReason::$name => $label),* }
            }
        }
    };
}

drop_reasons! {
    Malformed => "malformed": "Not a well-formed WireGuard message.",
    BadMac => "bad_mac": "mac1 does not match our public key.",
    UnknownIndex => "unknown_index": "No session or handshake has this receiver index.",
    UnknownPeer => "unknown_peer": "A valid initiation from a key that is not a peer.",
    Handshake => "handshake": "Handshake message failed to decrypt or verify.",
    StaleTimestamp => "stale_timestamp": "Initiation replayed (timestamp not newer than the last).",
    RateLimited => "rate_limited": "Initiations from one peer arriving too fast.",
    Decrypt => "decrypt": "Transport data failed authentication.",
    Replay => "replay": "Transport counter already seen or too old.",
    Expired => "expired": "Session too old or out of counters.",
    SourceNotAllowed => "source_not_allowed": "Decrypted packet's source is not in the peer's allowed IPs.",
    NotExposed => "not_exposed": "A confined peer (a federated network's member) sent a packet to another address than the one it may reach.",
    BadInnerPacket => "bad_inner_packet": "Decrypted payload is not an IP packet.",
    NoRoute => "no_route": "Outgoing packet's destination matches no peer.",
    NoEndpoint => "no_endpoint": "The peer has no known endpoint.",
    QueueFull => "queue_full": "Too many packets waiting for a handshake.",
    TooBig => "too_big": "Packet larger than the buffers.",
}

/// Traffic and drop counters of a device.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// Datagrams produced for sending.
    pub tx_datagrams: u64,
    /// Cookie replies sent (under load, or to a source past its share).
    pub cookie_replies: u64,
    /// Handshake initiations sent.
    pub initiations_sent: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    /// Count of drops for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// One WireGuard interface's protocol state.
pub struct Device {
    key: PrivateKey,
    public: PublicKey,
    mtu: usize,
    checker: CookieChecker,
    peers: Vec<Option<Peer>>,
    by_key: HashMap<PublicKey, PeerId>,
    by_index: HashMap<u32, PeerId>,
    routes: AllowedIps<PeerId>,
    outbox: VecDeque<PeerId>,
    counters: Counters,
    mono_base: Instant,
    wall_base: Duration,
    load_window: Instant,
    load_count: u32,
    load_limit: u32,
    /// Per source, for messages with a cookie when one was demanded.
    limiter: RateLimiter,
    /// Per source, for initiations while not under load.
    strangers: RateLimiter,
    early: VecDeque<Early>,
    /// Which peer each endpoint belongs to (relays look senders up per packet).
    by_endpoint: HashMap<SocketAddr, PeerId>,
    /// Peers whose handshake completed since the last report.
    handshakes: VecDeque<PublicKey>,
    /// Real endpoints authenticated packets of relayed peers came from.
    direct_seen: VecDeque<(PublicKey, SocketAddr)>,
    /// When the timers last ran, and the earliest deadline they found.
    last_sweep: Option<Instant>,
    timer_due: Option<Instant>,
    /// Something happened since the timers last ran (their deadlines may
    /// have moved).
    touched: bool,
}

impl Device {
    /// A device with no peers. `wall` is the current time since the Unix
    /// epoch (for handshake timestamps); `now` the matching monotonic time.
    pub fn new(config: DeviceConfig, now: Instant, wall: Duration) -> Self {
        let public = config.private_key.public_key();
        Self {
            checker: CookieChecker::new(&public, now),
            key: config.private_key,
            public,
            mtu: config.mtu,
            peers: Vec::new(),
            by_key: HashMap::new(),
            by_index: HashMap::new(),
            routes: AllowedIps::new(),
            outbox: VecDeque::new(),
            counters: Counters::default(),
            mono_base: now,
            wall_base: wall,
            load_window: now,
            load_count: 0,
            load_limit: config.handshake_load_limit,
            limiter: RateLimiter::proven(),
            strangers: RateLimiter::strangers(),
            early: VecDeque::new(),
            by_endpoint: HashMap::new(),
            handshakes: VecDeque::new(),
            direct_seen: VecDeque::new(),
            last_sweep: None,
            timer_due: None,
            touched: true,
        }
    }

    /// Our public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Inner MTU.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Changes the inner MTU (packets are padded up to it at most).
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn drop(&mut self, reason: DropReason) -> Action {
        self.counters.drops[reason as usize] += 1;
        Action::None
    }

    /// Our private key (for WireGuard's `get` on the root-only control socket).
    pub fn private_key(&self) -> &PrivateKey {
        &self.key
    }

    /// Replaces our private key; every session and handshake ends, as the
    /// peers only know the old key.
    pub fn set_private_key(&mut self, key: PrivateKey, now: Instant) {
        self.touched = true;
        self.public = key.public_key();
        self.key = key;
        self.checker = CookieChecker::new(&self.public, now);
        self.by_index.clear();
        for p in self.peers.iter_mut().flatten() {
            p.pending = None;
            p.current = None;
            p.previous = None;
            p.next = None;
        }
    }

    fn peer_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    fn new_index(&mut self, id: PeerId) -> u32 {
        loop {
            let i = OsRng.next_u32();
            if let std::collections::hash_map::Entry::Vacant(e) = self.by_index.entry(i) {
                e.insert(id);
                return i;
            }
        }
    }

    fn timestamp(&self, now: Instant) -> [u8; 12] {
        tai64n(self.wall_base + now.saturating_duration_since(self.mono_base))
    }

    fn schedule(&mut self, id: PeerId) {
        if let Some(p) = self.peer_mut(id) {
            if !p.in_outbox {
                p.in_outbox = true;
                self.outbox.push_back(id);
            }
        }
    }

    /// Processes a datagram received from `from`. Decrypted packets are
    /// written to `out[DATA_HEADER_LEN..]` (see [`Action::Deliver`]);
    /// handshake answers are written to the start of `out`.
    pub fn decapsulate(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Action {
        self.touched = true;
        self.counters.rx_datagrams += 1;
        match wire::parse(datagram) {
            Err(_) => self.drop(DropReason::Malformed),
            Ok(Message::Data(d)) => self.on_data(from, d, datagram.len(), out, now),
            Ok(Message::Initiation(m)) => {
                if let Err(a) = self.admit_handshake(
                    m.raw,
                    wire::INITIATION_MAC1_OFFSET,
                    m.sender,
                    true,
                    from,
                    out,
                    now,
                ) {
                    return a;
                }
                self.on_initiation(from, m, out, now)
            }
            Ok(Message::Response(m)) => {
                if let Err(a) = self.admit_handshake(
                    m.raw,
                    wire::RESPONSE_MAC1_OFFSET,
                    m.sender,
                    false,
                    from,
                    out,
                    now,
                ) {
                    return a;
                }
                self.on_response(from, m, now)
            }
            Ok(Message::CookieReply(m)) => {
                let Some(&id) = self.by_index.get(&m.receiver) else {
                    return self.drop(DropReason::UnknownIndex);
                };
                let Some(peer) = self.peer_mut(id) else {
                    return self.drop(DropReason::UnknownIndex);
                };
                match peer.jar.accept_reply(m.nonce, m.cookie, now) {
                    Ok(()) => Action::None,
                    Err(_) => self.drop(DropReason::Handshake),
                }
            }
        }
    }

    /// Runs the protocol timers; call when [`Device::poll_timeout`] says.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due: Option<Instant> = None;
        for slot in 0..self.peers.len() {
            let id = PeerId(slot as u32);
            let Some(peer) = self.peer_mut(id) else {
                continue;
            };
            let gone = peer.expire_sessions(now);
            let mut work = false;
            if let Some(p) = &peer.pending {
                if now.saturating_duration_since(p.sent_at) >= REKEY_TIMEOUT {
                    let gave_up = peer
                        .attempt_started
                        .is_some_and(|t| now.saturating_duration_since(t) >= REKEY_ATTEMPT_TIME);
                    let old = peer.pending.take().map(|p| p.local_index);
                    if gave_up {
                        peer.attempt_started = None;
                        peer.queue.clear();
                    } else {
                        peer.want_handshake = true;
                        work = true;
                    }
                    if let Some(i) = old {
                        self.by_index.remove(&i);
                    }
                }
            }
            let Some(peer) = self.peer_mut(id) else {
                continue;
            };
            let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t));
            let received_after_sent = match (peer.last_data_received, peer.last_sent) {
                (Some(r), Some(s)) => r > s,
                (Some(_), None) => true,
                _ => false,
            };
            if received_after_sent
                && since(peer.last_data_received).is_some_and(|d| d >= KEEPALIVE_TIMEOUT)
                && peer.current.is_some()
            {
                peer.want_keepalive = true;
                work = true;
            }
            if since(peer.unanswered_since).is_some_and(|d| d >= KEEPALIVE_TIMEOUT + REKEY_TIMEOUT)
                && !peer.handshake_in_flight()
            {
                peer.unanswered_since = None;
                peer.unanswered_packets = 0;
                peer.want_handshake = true;
                work = true;
            }
            if let Some(interval) = peer.keepalive {
                if since(peer.last_sent).is_none_or(|d| d >= interval) {
                    peer.want_keepalive = true;
                    work = true;
                }
            }
            let next = peer.next_deadline(now, received_after_sent);
            due = match (due, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            for i in gone {
                self.by_index.remove(&i);
            }
            if work {
                self.schedule(id);
            }
        }
        // A deadline already past (work that cannot be done yet, such as
        // a keepalive with no endpoint) is retried at the tick, not in a
        // busy loop.
        self.timer_due = due.map(|d| d.max(now + TICK));
        self.last_sweep = Some(now);
        self.touched = false;
    }

    /// When [`Device::handle_timeout`] must run next: within [`TICK`] of
    /// the last run while anything happens (packets, configuration), and
    /// otherwise at the earliest timer deadline it found (`None`: no
    /// timer is running, an idle device with no peers to keep alive).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.last_sweep {
            None => Some(self.mono_base),
            Some(t) if self.touched => Some(t + TICK),
            Some(_) => self.timer_due,
        }
    }
}

mod data;
mod handshakes;
mod peers;
