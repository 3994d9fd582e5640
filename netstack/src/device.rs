//! The device: our static key, the peer table and the handlers that turn
//! datagrams and packets into actions. One `Device` is one WireGuard
//! interface.
//!
//! Use: feed packets read from the TUN device to [`Device::encapsulate`],
//! datagrams read from the UDP socket to [`Device::decapsulate`], call
//! [`Device::handle_timeout`] when [`Device::poll_timeout`] says, and after
//! each of these drain [`Device::poll_transmit`] until it returns `None`.
//! Completed handshakes come out of [`Device::poll_handshake`].

use crate::allowed_ips::{AllowedIps, IpNet};
use crate::cookie::CookieChecker;
use crate::crypto::{tai64n, PrivateKey, PublicKey};
use crate::handshake::{Initiator, Responder};
use crate::ip;
use crate::peer::{Peer, PeerStats, Pending, Slot, QUEUE_LEN};
use crate::ratelimit::RateLimiter;
use crate::session::Session;
use crate::timers::*;
use crate::wire::{self, Message, DATA_HEADER_LEN};
use crate::Error;
use rand_core::{OsRng, RngCore};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

/// Initiations from keys that are not peers yet kept at once, at most.
const MAX_EARLY: usize = 8;
/// Completed handshakes waiting to be reported, at most (older reports are
/// dropped: they only speed up what the caller would see anyway).
const MAX_HANDSHAKE_REPORTS: usize = 256;

/// A valid initiation from a key that was not a peer when it arrived. A
/// mesh adds a new member as a peer when its record arrives, which is often
/// just after the member's first initiation: answering it then saves the
/// initiator a [`REKEY_TIMEOUT`] wait.
struct Early {
    key: PublicKey,
    from: SocketAddr,
    datagram: [u8; wire::INITIATION_LEN],
    at: Instant,
}

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

    /// Points peer `id` at `endpoint`, keeping the endpoint index in step.
    fn set_endpoint(&mut self, id: PeerId, endpoint: Option<SocketAddr>) {
        let Some(peer) = self.peers.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        if peer.endpoint == endpoint {
            return;
        }
        let old = peer.endpoint;
        peer.endpoint = endpoint;
        if let Some(new) = endpoint {
            self.by_endpoint.insert(new, id);
        }
        if let Some(old) = old.filter(|o| self.by_endpoint.get(o) == Some(&id)) {
            // Another peer may sit at the same endpoint (one private
            // address at two sites): it is found there from now on.
            match self
                .peers
                .iter()
                .flatten()
                .position(|p| p.endpoint == Some(old))
            {
                Some(i) => self.by_endpoint.insert(old, PeerId(i as u32)),
                None => self.by_endpoint.remove(&old),
            };
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn drop(&mut self, reason: DropReason) -> Action {
        self.counters.drops[reason as usize] += 1;
        Action::None
    }

    /// Adds a peer, or replaces the configuration of the peer with that key.
    /// A network another peer had is moved to this one (as `wg set` does).
    pub fn upsert_peer(&mut self, config: PeerConfig) -> PeerId {
        self.touched = true;
        let id = match self.by_key.get(&config.public_key) {
            Some(&id) => id,
            None => self.insert_peer(&config),
        };
        self.routes.remove_value(id);
        let nets: Vec<IpNet> = config.allowed_ips.iter().map(|n| n.masked()).collect();
        for net in &nets {
            if let Some(previous) = self.routes.owner(*net).filter(|o| *o != id) {
                if let Some(p) = self.peer_mut(previous) {
                    p.allowed.retain(|n| n != net);
                }
            }
            self.routes.insert(*net, id);
        }
        if let Some(p) = self.peer_mut(id) {
            p.psk = config.preshared_key.unwrap_or_default();
            p.allowed = nets;
            p.keepalive = config.persistent_keepalive;
        }
        if let Some(endpoint) = config.endpoint {
            self.move_to(id, endpoint);
        }
        id
    }

    /// Points peer `id` at a newly given `endpoint`. An initiation still
    /// unanswered went to the old one: it is sent again to the new one at
    /// once rather than after [`REKEY_TIMEOUT`] (a path the control plane
    /// just learned, e.g. a peer's public address behind a NAT, is tried
    /// while the peer's own attempt keeps its NAT open).
    fn move_to(&mut self, id: PeerId, endpoint: SocketAddr) {
        let moved = self
            .peers
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .is_some_and(|p| p.endpoint != Some(endpoint));
        self.set_endpoint(id, Some(endpoint));
        if !moved {
            return;
        }
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        if peer.current.is_none() && peer.pending.is_some() {
            let old = peer.pending.take().map(|p| p.local_index);
            peer.want_handshake = true;
            if let Some(i) = old {
                self.by_index.remove(&i);
            }
            self.schedule(id);
        }
    }

    fn insert_peer(&mut self, config: &PeerConfig) -> PeerId {
        let slot = self
            .peers
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.peers.len());
        let peer = Peer::new(config.public_key);
        if slot == self.peers.len() {
            self.peers.push(Some(peer));
        } else {
            self.peers[slot] = Some(peer);
        }
        let id = PeerId(slot as u32);
        self.by_key.insert(config.public_key, id);
        id
    }

    /// Confines the peer with `key` to one destination: packets it sends
    /// to any other address are dropped and counted
    /// ([`DropReason::NotExposed`]); `None` lifts it. False if no such peer.
    pub fn confine_peer(&mut self, key: &PublicKey, only_to: Option<IpAddr>) -> bool {
        let Some(id) = self.by_key.get(key).copied() else {
            return false;
        };
        match self.peer_mut(id) {
            Some(peer) => {
                peer.only_to = only_to;
                true
            }
            None => false,
        }
    }

    /// Removes a peer and everything that refers to it.
    pub fn remove_peer(&mut self, key: &PublicKey) -> bool {
        let Some(id) = self.by_key.get(key).copied() else {
            return false;
        };
        self.touched = true;
        self.set_endpoint(id, None);
        self.by_key.remove(key);
        self.routes.remove_value(id);
        if let Some(peer) = self.peers.get_mut(id.0 as usize).and_then(Option::take) {
            for i in peer.indices() {
                self.by_index.remove(&i);
            }
        }
        true
    }

    /// The current configuration of the peer with `key`.
    pub fn peer_config(&self, key: &PublicKey) -> Option<PeerConfig> {
        let id = self.by_key.get(key)?;
        let p = self.peers.get(id.0 as usize)?.as_ref()?;
        Some(PeerConfig {
            public_key: p.public,
            preshared_key: (p.psk != [0; 32]).then_some(p.psk),
            endpoint: p.endpoint,
            allowed_ips: p.allowed.clone(),
            persistent_keepalive: p.keepalive,
        })
    }

    /// The peer whose current endpoint is `endpoint` (learned from its
    /// authenticated packets or configured); O(1).
    pub fn peer_at(&self, endpoint: SocketAddr) -> Option<PublicKey> {
        let id = self.by_endpoint.get(&endpoint)?;
        Some(self.peers.get(id.0 as usize)?.as_ref()?.public)
    }

    /// Points the peer with `key` at `endpoint` (a newly chosen path; an
    /// unanswered initiation is sent again there at once); false if there
    /// is no such peer.
    pub fn set_peer_endpoint(&mut self, key: &PublicKey, endpoint: SocketAddr) -> bool {
        let Some(id) = self.by_key.get(key).copied() else {
            return false;
        };
        self.touched = true;
        self.move_to(id, endpoint);
        true
    }

    /// A real endpoint an authenticated packet of a relayed peer came from.
    pub fn poll_direct_seen(&mut self) -> Option<(PublicKey, SocketAddr)> {
        self.direct_seen.pop_front()
    }

    /// An authenticated packet of peer `id` came from `from`: the peer
    /// moves there (WireGuard's roaming), unless it is reached through a
    /// relay (a virtual endpoint) and `from` is a real endpoint: then the
    /// packet is reported ([`Device::poll_direct_seen`]) for the caller to
    /// check that path both ways first.
    fn roam(&mut self, id: PeerId, from: SocketAddr) {
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        if peer.endpoint == Some(from) {
            return;
        }
        let relayed = peer.endpoint.is_some_and(|e| crate::relay::is_virtual(&e));
        if relayed && !crate::relay::is_virtual(&from) {
            let seen = (peer.public, from);
            if !self.direct_seen.contains(&seen) {
                if self.direct_seen.len() >= MAX_HANDSHAKE_REPORTS {
                    self.direct_seen.pop_front();
                }
                self.direct_seen.push_back(seen);
            }
            return;
        }
        self.set_endpoint(id, Some(from));
    }

    /// The current endpoint of the peer with `key`.
    pub fn endpoint_of(&self, key: &PublicKey) -> Option<SocketAddr> {
        let id = self.by_key.get(key)?;
        self.peers.get(id.0 as usize)?.as_ref()?.endpoint
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

    /// Snapshots of every peer.
    pub fn peers(&self) -> impl Iterator<Item = PeerInfo> + '_ {
        self.peers.iter().flatten().map(|p| PeerInfo {
            public_key: p.public,
            endpoint: p.endpoint,
            allowed_ips: p.allowed.clone(),
            stats: p.stats,
            persistent_keepalive: p.keepalive,
            unanswered_since: p.unanswered_since,
            unanswered_packets: p.unanswered_packets,
        })
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

    /// Encrypts an IP packet read from the TUN device into `out`. If the peer
    /// has no session yet, the packet is queued and a handshake initiation
    /// may be written instead.
    pub fn encapsulate(&mut self, packet: &[u8], out: &mut [u8], now: Instant) -> Action {
        self.touched = true;
        let Some(dst) = ip::destination(packet) else {
            return self.drop(DropReason::BadInnerPacket);
        };
        let Some(id) = self.routes.lookup(dst) else {
            return self.drop(DropReason::NoRoute);
        };
        let mtu = self.mtu;
        let Some(peer) = self.peer_mut(id) else {
            return self.drop(DropReason::NoRoute);
        };
        let Some(to) = peer.endpoint else {
            return self.drop(DropReason::NoEndpoint);
        };
        if let Some(session) = peer.sending_session(now) {
            let rekey = session.sent() >= REKEY_AFTER_MESSAGES
                || (session.initiator
                    && now.saturating_duration_since(session.created) >= REKEY_AFTER_TIME);
            match session.encrypt(packet, mtu, out) {
                Ok(len) => {
                    peer.stats.tx_bytes += len as u64;
                    peer.stats.tx_packets += 1;
                    peer.last_sent = Some(now);
                    peer.unanswered_since.get_or_insert(now);
                    peer.unanswered_packets = peer.unanswered_packets.saturating_add(1);
                    if rekey && !peer.handshake_in_flight() {
                        peer.want_handshake = true;
                        self.schedule(id);
                    }
                    self.counters.tx_datagrams += 1;
                    return Action::Send { to, len };
                }
                Err(Error::BufferTooSmall) => return self.drop(DropReason::TooBig),
                Err(_) => {
                    // Out of counters: retire the session and handshake anew.
                    if let Some(dead) = peer.current.take() {
                        self.by_index.remove(&dead.local_index);
                    }
                }
            }
        }
        let Some(peer) = self.peer_mut(id) else {
            return self.drop(DropReason::NoRoute);
        };
        let peer_queue_full = peer.queue.len() >= QUEUE_LEN;
        if peer_queue_full {
            peer.queue.pop_front();
        }
        peer.queue.push_back(packet.to_vec());
        let in_flight = peer.handshake_in_flight();
        if peer_queue_full {
            self.drop(DropReason::QueueFull);
        }
        if in_flight {
            return Action::None;
        }
        match self.write_initiation(id, out, now) {
            Some(len) => Action::Send { to, len },
            None => Action::None,
        }
    }

    fn write_initiation(&mut self, id: PeerId, out: &mut [u8], now: Instant) -> Option<usize> {
        let out = out.get_mut(..wire::INITIATION_LEN)?;
        let ts = self.timestamp(now);
        let index = self.new_index(id);
        let key = self.key.clone();
        let peer = self.peer_mut(id)?;
        let noise: &mut [u8; wire::INITIATION_NOISE_LEN] = (&mut out[8..116]).try_into().ok()?;
        let init = Initiator::start(&key, &peer.public, &peer.psk, &ts, noise).ok()?;
        wire::write_header(out, wire::TYPE_INITIATION, index);
        peer.jar.stamp(out, wire::INITIATION_MAC1_OFFSET, now);
        let old = peer.pending.replace(Pending {
            init: Some(init),
            local_index: index,
            sent_at: now,
        });
        peer.attempt_started.get_or_insert(now);
        peer.want_handshake = false;
        peer.last_sent = Some(now);
        if let Some(old) = old {
            self.by_index.remove(&old.local_index);
        }
        self.counters.tx_datagrams += 1;
        self.counters.initiations_sent += 1;
        Some(wire::INITIATION_LEN)
    }

    fn under_load(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.load_window) >= Duration::from_secs(1) {
            self.load_window = now;
            self.load_count = 0;
        }
        self.load_count = self.load_count.saturating_add(1);
        self.load_count > self.load_limit
    }

    /// Checks mac1 of a handshake message, and mac2 under load or (for an
    /// initiation, `charged`) past its source's share. Returns
    /// `Err(action)` when the message must not be processed further.
    /// Responses are not charged: one costs a Diffie-Hellman only when it
    /// answers an initiation of ours.
    #[allow(clippy::too_many_arguments)]
    fn admit_handshake(
        &mut self,
        raw: &[u8],
        mac1_at: usize,
        sender: u32,
        charged: bool,
        from: SocketAddr,
        out: &mut [u8],
        now: Instant,
    ) -> Result<(), Action> {
        if !self.checker.check_mac1(raw, mac1_at) {
            return Err(self.drop(DropReason::BadMac));
        }
        // Not under load, a source within its share is served at once;
        // otherwise it must show a cookie before any Diffie-Hellman work.
        if !self.under_load(now) && (!charged || self.strangers.allow(from, now)) {
            return Ok(());
        }
        if !self.checker.check_mac2(raw, mac1_at, from, now) {
            return Err(
                match self
                    .checker
                    .write_reply(raw, mac1_at, sender, from, now, out)
                {
                    Ok(len) => {
                        self.counters.cookie_replies += 1;
                        self.counters.tx_datagrams += 1;
                        Action::Send { to: from, len }
                    }
                    Err(_) => self.drop(DropReason::TooBig),
                },
            );
        }
        if !self.limiter.allow(from, now) {
            return Err(self.drop(DropReason::RateLimited));
        }
        Ok(())
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

    fn on_initiation(
        &mut self,
        from: SocketAddr,
        m: wire::Initiation<'_>,
        out: &mut [u8],
        now: Instant,
    ) -> Action {
        let Ok(responder) = Responder::read(&self.key, m.noise) else {
            return self.drop(DropReason::Handshake);
        };
        let Some(&id) = self.by_key.get(&responder.peer) else {
            if let Ok(datagram) = m.raw.try_into() {
                if self.early.len() >= MAX_EARLY {
                    self.early.pop_front();
                }
                self.early.push_back(Early {
                    key: responder.peer,
                    from,
                    datagram,
                    at: now,
                });
            }
            return self.drop(DropReason::UnknownPeer);
        };
        let Some(peer) = self.peer_mut(id) else {
            return self.drop(DropReason::UnknownPeer);
        };
        if responder.timestamp <= peer.last_timestamp {
            return self.drop(DropReason::StaleTimestamp);
        }
        if peer
            .last_initiation_at
            .is_some_and(|t| now.saturating_duration_since(t) < INITIATION_MIN_INTERVAL)
        {
            return self.drop(DropReason::RateLimited);
        }
        let Some(out) = out.get_mut(..wire::RESPONSE_LEN) else {
            return self.drop(DropReason::TooBig);
        };
        let index = self.new_index(id);
        let Some(peer) = self.peer_mut(id) else {
            return self.drop(DropReason::UnknownPeer);
        };
        let psk = peer.psk;
        let timestamp = responder.timestamp;
        let noise: &mut [u8; wire::RESPONSE_NOISE_LEN] = match (&mut out[12..60]).try_into() {
            Ok(n) => n,
            Err(_) => return self.drop(DropReason::TooBig),
        };
        let keys = responder.respond(&psk, noise);
        let session = keys.and_then(|k| Session::new(&k, index, m.sender, false, now));
        let Ok(session) = session else {
            self.by_index.remove(&index);
            return self.drop(DropReason::Handshake);
        };
        wire::write_header(out, wire::TYPE_RESPONSE, index);
        out[8..12].copy_from_slice(&m.sender.to_le_bytes());
        let Some(peer) = self.peer_mut(id) else {
            return Action::None;
        };
        peer.jar.stamp(out, wire::RESPONSE_MAC1_OFFSET, now);
        peer.last_timestamp = timestamp;
        peer.last_initiation_at = Some(now);
        peer.last_received = Some(now);
        peer.last_sent = Some(now);
        let old = peer.next.replace(session).map(|s| s.local_index);
        if let Some(old) = old {
            self.by_index.remove(&old);
        }
        self.roam(id, from);
        self.counters.tx_datagrams += 1;
        Action::Send {
            to: from,
            len: wire::RESPONSE_LEN,
        }
    }

    fn on_response(&mut self, from: SocketAddr, m: wire::Response<'_>, now: Instant) -> Action {
        let Some(&id) = self.by_index.get(&m.receiver) else {
            return self.drop(DropReason::UnknownIndex);
        };
        let Some(peer) = self.peer_mut(id) else {
            return self.drop(DropReason::UnknownIndex);
        };
        let init = match peer.pending.as_mut() {
            Some(p) if p.local_index == m.receiver => p.init.take(),
            _ => None,
        };
        let Some(init) = init else {
            return self.drop(DropReason::UnknownIndex);
        };
        // A response that fails to authenticate leaves the (now dead) pending
        // entry in place, so the retry timer still fires: a forged response
        // cannot cancel our handshake.
        let session = init
            .finish(m.noise)
            .and_then(|k| Session::new(&k, m.receiver, m.sender, true, now));
        let Ok(session) = session else {
            return self.drop(DropReason::Handshake);
        };
        peer.pending = None;
        let gone: Vec<u32> = peer.install(session).collect();
        peer.last_received = Some(now);
        peer.unanswered_since = None;
        peer.unanswered_packets = 0;
        peer.attempt_started = None;
        peer.want_handshake = false;
        peer.stats.handshakes += 1;
        peer.stats.last_handshake = Some(now);
        if peer.queue.is_empty() {
            peer.want_keepalive = true;
        }
        let public = peer.public;
        for i in gone {
            self.by_index.remove(&i);
        }
        self.roam(id, from);
        self.report_handshake(public);
        self.schedule(id);
        Action::None
    }

    fn report_handshake(&mut self, peer: PublicKey) {
        if self.handshakes.len() >= MAX_HANDSHAKE_REPORTS {
            self.handshakes.pop_front();
        }
        self.handshakes.push_back(peer);
    }

    /// The next peer whose handshake completed (a session is up).
    pub fn poll_handshake(&mut self) -> Option<PublicKey> {
        self.handshakes.pop_front()
    }

    fn on_data(
        &mut self,
        from: SocketAddr,
        d: wire::Data<'_>,
        wire_len: usize,
        out: &mut [u8],
        now: Instant,
    ) -> Action {
        let Some(&id) = self.by_index.get(&d.receiver) else {
            return self.drop(DropReason::UnknownIndex);
        };
        let Some(peer) = self.peer_mut(id) else {
            return self.drop(DropReason::UnknownIndex);
        };
        let Some(slot) = peer.slot_of(d.receiver) else {
            return self.drop(DropReason::UnknownIndex);
        };
        let Some(session) = peer.session_mut(slot) else {
            return self.drop(DropReason::UnknownIndex);
        };
        if now.saturating_duration_since(session.created) >= REJECT_AFTER_TIME {
            return self.drop(DropReason::Expired);
        }
        let plain = match session.decrypt(d.counter, d.sealed, out) {
            Ok(n) => n,
            Err(Error::Replay) => return self.drop(DropReason::Replay),
            Err(Error::BufferTooSmall) => return self.drop(DropReason::TooBig),
            Err(_) => return self.drop(DropReason::Decrypt),
        };
        let mut gone = None;
        let mut confirmed_now = false;
        if slot == Slot::Next {
            if let Some(confirmed) = peer.next.take() {
                confirmed_now = true;
                gone = peer.install(confirmed).next();
                peer.stats.handshakes += 1;
                peer.stats.last_handshake = Some(now);
                peer.attempt_started = None;
                if !peer.queue.is_empty() {
                    peer.want_keepalive = false;
                }
            }
        }
        let rekey = peer.current.as_ref().is_some_and(|s| {
            s.initiator
                && now.saturating_duration_since(s.created)
                    >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
        }) && !peer.handshake_in_flight();
        peer.last_received = Some(now);
        peer.unanswered_since = None;
        peer.unanswered_packets = 0;
        peer.stats.rx_bytes += wire_len as u64;
        peer.stats.rx_packets += 1;
        let has_queue = slot == Slot::Next && !peer.queue.is_empty();
        if rekey {
            peer.want_handshake = true;
        }
        let public = peer.public;
        self.roam(id, from);
        if confirmed_now {
            self.report_handshake(public);
        }
        if let Some(i) = gone {
            self.by_index.remove(&i);
        }
        if rekey || has_queue {
            self.schedule(id);
        }
        if plain == 0 {
            return Action::None;
        }
        let body = &out[DATA_HEADER_LEN..DATA_HEADER_LEN + plain];
        let Some((src, len)) = ip::source_and_len(body) else {
            return self.drop(DropReason::BadInnerPacket);
        };
        if self.routes.lookup(src) != Some(id) {
            return self.drop(DropReason::SourceNotAllowed);
        }
        let Some(peer) = self.peer_mut(id) else {
            return Action::None;
        };
        if peer
            .only_to
            .is_some_and(|to| ip::destination(body) != Some(to))
        {
            return self.drop(DropReason::NotExposed);
        }
        peer.last_data_received = Some(now);
        Action::Deliver(DATA_HEADER_LEN..DATA_HEADER_LEN + len)
    }

    /// Writes the next datagram the device wants to send (queued packets,
    /// keepalives, handshake initiations) into `out`.
    pub fn poll_transmit(&mut self, out: &mut [u8], now: Instant) -> Option<(SocketAddr, usize)> {
        let sent = self.next_transmit(out, now);
        self.touched |= sent.is_some();
        sent
    }

    fn next_transmit(&mut self, out: &mut [u8], now: Instant) -> Option<(SocketAddr, usize)> {
        if !self.early.is_empty() {
            if let Some(answer) = self.answer_early(out, now) {
                return Some(answer);
            }
        }
        while let Some(id) = self.outbox.pop_front() {
            let mtu = self.mtu;
            let Some(peer) = self.peer_mut(id) else {
                continue;
            };
            peer.in_outbox = false;
            let Some(to) = peer.endpoint else {
                peer.queue.clear();
                peer.want_keepalive = false;
                peer.want_handshake = false;
                continue;
            };
            if peer.want_handshake && !peer.handshake_in_flight() {
                match self.write_initiation(id, out, now) {
                    Some(len) => return Some((to, len)),
                    None => {
                        // `out` cannot hold an initiation; the next tick retries.
                        self.drop(DropReason::TooBig);
                        continue;
                    }
                }
            }
            let Some(peer) = self.peer_mut(id) else {
                continue;
            };
            let has_session = peer.sending_session(now).is_some();
            if !has_session {
                if (peer.want_keepalive || !peer.queue.is_empty()) && !peer.handshake_in_flight() {
                    peer.want_handshake = true;
                    peer.want_keepalive = false;
                    self.schedule(id);
                }
                continue;
            }
            let packet = peer.queue.pop_front();
            let keepalive = packet.is_none() && std::mem::take(&mut peer.want_keepalive);
            if packet.is_none() && !keepalive {
                continue;
            }
            let payload = packet.as_deref().unwrap_or(&[]);
            let sent = peer
                .sending_session(now)
                .map(|s| s.encrypt(payload, mtu, out));
            let more = !peer.queue.is_empty() || peer.want_keepalive;
            let result = match sent {
                Some(Ok(len)) => {
                    peer.stats.tx_bytes += len as u64;
                    peer.stats.tx_packets += 1;
                    peer.last_sent = Some(now);
                    if packet.is_some() {
                        peer.unanswered_since.get_or_insert(now);
                        peer.unanswered_packets = peer.unanswered_packets.saturating_add(1);
                    }
                    Some((to, len))
                }
                _ => None,
            };
            if more {
                self.schedule(id);
            }
            if let Some(r) = result {
                self.counters.tx_datagrams += 1;
                return Some(r);
            }
            self.drop(DropReason::TooBig);
        }
        None
    }

    /// Answers a kept initiation whose key has become a peer since; drops
    /// kept initiations older than [`REKEY_TIMEOUT`] (the initiator has
    /// sent a new one by then).
    fn answer_early(&mut self, out: &mut [u8], now: Instant) -> Option<(SocketAddr, usize)> {
        self.early
            .retain(|e| now.saturating_duration_since(e.at) < REKEY_TIMEOUT);
        let i = self
            .early
            .iter()
            .position(|e| self.by_key.contains_key(&e.key))?;
        let early = self.early.remove(i)?;
        let Ok(Message::Initiation(m)) = wire::parse(&early.datagram) else {
            return None;
        };
        match self.on_initiation(early.from, m, out, now) {
            Action::Send { to, len } => Some((to, len)),
            _ => None,
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
