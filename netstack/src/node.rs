//! A mesh member's data plane in one sans-IO type: the WireGuard
//! [`Device`], and what a mesh needs beside it on the same UDP socket —
//! the members' keys (who may relay through us, who gets an endpoint
//! echo), relay envelopes both ways ([`crate::relay`]) and the endpoint
//! echo ([`crate::echo`]). [`Node::handle_datagram`] sorts every datagram
//! itself; what the control loop must hear (echo answers, completed
//! handshakes) comes out of [`Node::poll_event`], and
//! [`Node::poll_timeout`] says when the timers run next.
//!
//! A peer reached through a relay has a virtual endpoint: the device sends
//! to it like to any other, and the node wraps those datagrams in an
//! envelope to the relay (and unwraps what the relay delivers as coming
//! from it), so WireGuard's roaming keeps both ends on the relayed path.
//! A direct packet of a relayed peer does not move it back (the way there
//! may work one way only): it is reported ([`Event::DirectSeen`]) and the
//! caller moves the peer with [`Node::go_direct`] once the path answered.
//!
//! Without members (a static WireGuard configuration) nobody is answered or
//! relayed and every echo or envelope is dropped and counted.

use crate::device::{Action, Device, DeviceConfig};
use crate::echo::{self, Message, PairKey, REPLY_LEN};
use crate::forwarding::{Circles, Forwarding};
use crate::relay::{self, key_id, Envelope, KeyId, Paths};
use crate::wire::DATA_HEADER_LEN;
use crate::{PrivateKey, PublicKey};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Events waiting for the control loop, at most (more are dropped and
/// counted: echo answers are asked for again every second).
const MAX_EVENTS: usize = 256;
/// Idle relay paths are looked for this often.
const SWEEP_PATHS: Duration = Duration::from_secs(60);

/// Something the control loop must hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A member answered one of our echo questions: it sees our datagrams
    /// arrive from `seen`.
    Echo {
        /// The answering member.
        from: PublicKey,
        /// The nonce of our question.
        nonce: u64,
        /// Our endpoint as it sees it.
        seen: SocketAddr,
        /// The length our question arrived with (padded: a path MTU probe).
        len: u16,
    },
    /// A handshake with this peer completed: a session is up.
    Handshake(PublicKey),
    /// An authenticated packet (or echo question) of a relayed peer came
    /// straight from this endpoint; the peer stays relayed until the path
    /// is checked.
    DirectSeen {
        /// The peer.
        peer: PublicKey,
        /// The endpoint its packet came from.
        at: SocketAddr,
    },
    /// A relayed peer opened its NAT towards us and asks for a question
    /// straight to its direct endpoint ([`crate::echo`]'s call).
    CallMe(PublicKey),
}

/// How this node reaches a peer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to this endpoint.
    Direct(SocketAddr),
    /// Through the relay with this key.
    Relayed(PublicKey),
}

/// Counters of what the node did beside WireGuard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Echo questions answered.
    pub echo_answered: u64,
    /// Echo messages dropped: unknown member, bad MAC, too many waiting.
    pub echo_dropped: u64,
    /// Bytes relayed for others.
    pub relayed_bytes: u64,
    /// Envelopes refused: relaying off, sender or target not a member we
    /// reach directly.
    pub relay_refused: u64,
    /// Datagrams for a relayed path that is gone.
    pub relay_lost: u64,
}

#[derive(Debug, Clone, Copy)]
struct Member {
    key: PublicKey,
    pair: PairKey,
}

/// A mesh member's data plane.
pub struct Node {
    device: Device,
    own: PrivateKey,
    own_id: KeyId,
    members: HashMap<KeyId, Member>,
    ids: HashMap<PublicKey, KeyId>,
    paths: Paths,
    serve_relay: bool,
    forwarding: Forwarding,
    counters: NodeCounters,
    events: VecDeque<Event>,
    paths_swept: Option<Instant>,
}

impl Node {
    /// A node with no peers and no members; relays for members if
    /// `serve_relay`.
    pub fn new(config: DeviceConfig, serve_relay: bool, now: Instant, wall: Duration) -> Self {
        let own = config.private_key.clone();
        Self {
            own_id: key_id(&own.public_key()),
            own,
            device: Device::new(config, now, wall),
            members: HashMap::new(),
            ids: HashMap::new(),
            paths: Paths::default(),
            serve_relay,
            forwarding: Forwarding::default(),
            counters: NodeCounters::default(),
            events: VecDeque::new(),
            paths_swept: None,
        }
    }

    /// The WireGuard device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The WireGuard device, to configure peers.
    pub fn device_mut(&mut self) -> &mut Device {
        &mut self.device
    }

    /// What the node did beside WireGuard.
    pub fn counters(&self) -> NodeCounters {
        self.counters
    }

    /// True if this node relays for others.
    pub fn serves_relay(&self) -> bool {
        self.serve_relay
    }

    /// What this node relayed for whom, and refused ([`Forwarding`]).
    pub fn forwarding(&self) -> &Forwarding {
        &self.forwarding
    }

    /// Sets the members and their circles (members are relayed only to
    /// members sharing a circle: [`crate::forwarding`]). Pair keys already
    /// known are kept, so a new member list costs one X25519 per new
    /// member; a key of low order (no shared secret) is left out. Relayed
    /// paths to or through departed members go.
    pub fn set_members(
        &mut self,
        keys: impl IntoIterator<Item = (PublicKey, Circles)>,
        now: Instant,
    ) {
        let mut members = HashMap::new();
        let mut circles = Vec::new();
        for (key, c) in keys {
            let id = key_id(&key);
            circles.push((id, c));
            let pair = match self.members.get(&id) {
                Some(m) if m.key == key => Some(m.pair),
                _ => echo::pair_key(&self.own, &key),
            };
            if let Some(pair) = pair {
                members.insert(id, Member { key, pair });
            }
        }
        self.ids = members.iter().map(|(id, m)| (m.key, *id)).collect();
        self.members = members;
        self.forwarding.set_circles(circles);
        let (members, ids) = (&self.members, &self.ids);
        self.paths.retain(now, |p| {
            members.contains_key(&p.peer) && ids.contains_key(&p.relay_key)
        });
    }

    /// True if `key` is a member's.
    pub fn is_member(&self, key: &PublicKey) -> bool {
        self.ids.contains_key(key)
    }

    /// Changes the inner MTU.
    pub fn set_mtu(&mut self, mtu: usize) {
        self.device.set_mtu(mtu);
    }

    /// The largest datagram the node writes for the current MTU: a padded
    /// packet, the transport header and tag, and a relay envelope.
    pub fn max_datagram(&self) -> usize {
        self.device.mtu().next_multiple_of(16) + DATA_HEADER_LEN + 16 + relay::HEADER
    }

    /// An endpoint-echo question to member `peer` padded to `len` bytes,
    /// and where to send it: `to`, or the peer's direct endpoint; `None` if
    /// it is not a member or there is no direct endpoint to send to.
    pub fn question(
        &self,
        peer: &PublicKey,
        nonce: u64,
        len: u16,
        to: Option<SocketAddr>,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let member = self.ids.get(peer).and_then(|id| self.members.get(id))?;
        let at = to
            .or_else(|| self.device.endpoint_of(peer))
            .filter(|e| !relay::is_virtual(e))?;
        Some((at, echo::request(&self.own_id, nonce, &member.pair, len)))
    }

    /// A call to the relayed member `peer` (see [`Event::CallMe`]), wrapped
    /// for its relay, and the relay's endpoint; `None` if `peer` is not a
    /// member reached through a relay.
    pub fn call(
        &mut self,
        peer: &PublicKey,
        nonce: u64,
        now: Instant,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let member = self.ids.get(peer).and_then(|id| self.members.get(id))?;
        let call = echo::call_me(&self.own_id, nonce, &member.pair);
        let v = self.device.endpoint_of(peer).filter(relay::is_virtual)?;
        let path = self.paths.route(&v, now)?;
        let mut header = [0u8; relay::HEADER];
        relay::write_header(relay::TO, &path.peer, &mut header);
        Some((path.relay, [&header[..], &call[..]].concat()))
    }

    /// Sends to `peer` through the member `relay` from now on (its direct
    /// endpoint is used for the envelopes); `None` if `relay` has no
    /// direct endpoint or either is unknown.
    pub fn relay_via(&mut self, peer: &PublicKey, relay: &PublicKey, now: Instant) -> Option<()> {
        let peer_id = *self.ids.get(peer)?;
        let at = self
            .device
            .endpoint_of(relay)
            .filter(|e| !relay::is_virtual(e))?;
        let v = self.paths.get_or_insert(at, *relay, peer_id, now);
        self.device.set_peer_endpoint(peer, v).then_some(())
    }

    /// Sends to `peer` at `endpoint` from now on (and lets it roam).
    pub fn go_direct(&mut self, peer: &PublicKey, endpoint: SocketAddr) -> bool {
        self.device.set_peer_endpoint(peer, endpoint)
    }

    /// How `peer` is reached now.
    pub fn route(&self, peer: &PublicKey) -> Option<Route> {
        let at = self.device.endpoint_of(peer)?;
        if !relay::is_virtual(&at) {
            return Some(Route::Direct(at));
        }
        self.paths.get(&at).map(|p| Route::Relayed(p.relay_key))
    }

    /// Processes a datagram from `from`: WireGuard, an endpoint echo, or a
    /// relay envelope. Decrypted packets go to `out[DATA_HEADER_LEN..]`
    /// ([`Action::Deliver`]); answers are written to the start of `out`.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Action {
        if let Some(message) = echo::parse(datagram) {
            return self.on_echo(from, message, datagram, out);
        }
        match relay::parse(datagram) {
            None => {
                let a = self.device.decapsulate(from, datagram, out, now);
                self.wrap(a, out, now)
            }
            Some(Envelope::To { target, inner }) => self.forward(from, target, inner, out, now),
            Some(Envelope::From { source, inner }) => {
                // Only from a member reached directly at that endpoint,
                // about a member: strangers cannot make paths.
                let relay_key = self
                    .device
                    .peer_at(from)
                    .filter(|k| self.ids.contains_key(k));
                let (Some(relay_key), Some(member)) =
                    (relay_key, self.members.get(&source).copied())
                else {
                    self.counters.relay_refused += 1;
                    return Action::None;
                };
                if let Some(Message::CallMe { caller }) = echo::parse(inner) {
                    if caller == source && echo::authentic(inner, &member.pair) {
                        self.event(Event::CallMe(member.key));
                    } else {
                        self.counters.echo_dropped += 1;
                    }
                    return Action::None;
                }
                // A new path is kept only once the datagram it carried
                // authenticated as that member's (its endpoint moved there).
                let (v, known) = match self.paths.find(from, &source) {
                    Some(v) => (v, true),
                    None => (self.paths.next_virtual(), false),
                };
                let a = self.device.decapsulate(v, inner, out, now);
                if !known && self.device.peer_at(v) == Some(member.key) {
                    self.paths.insert_at(v, from, relay_key, source, now);
                }
                self.wrap(a, out, now)
            }
        }
    }

    /// Encrypts a packet read from the TUN device into `out`.
    pub fn encapsulate(&mut self, packet: &[u8], out: &mut [u8], now: Instant) -> Action {
        let a = self.device.encapsulate(packet, out, now);
        self.wrap(a, out, now)
    }

    /// Writes the next datagram the node wants to send into `out`.
    pub fn poll_transmit(&mut self, out: &mut [u8], now: Instant) -> Option<(SocketAddr, usize)> {
        loop {
            let (to, len) = self.device.poll_transmit(out, now)?;
            if let Action::Send { to, len } = self.wrap(Action::Send { to, len }, out, now) {
                return Some((to, len));
            }
        }
    }

    /// Runs the timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.device.handle_timeout(now);
        if self
            .paths_swept
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_PATHS)
        {
            self.paths_swept = Some(now);
            let (members, ids) = (&self.members, &self.ids);
            self.paths.retain(now, |p| {
                members.contains_key(&p.peer) && ids.contains_key(&p.relay_key)
            });
        }
    }

    /// When [`Node::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.device.poll_timeout()
    }

    /// The next thing the control loop must hear.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(peer) = self.device.poll_handshake() {
            return Some(Event::Handshake(peer));
        }
        if let Some((peer, at)) = self.device.poll_direct_seen() {
            return Some(Event::DirectSeen { peer, at });
        }
        self.events.pop_front()
    }

    fn event(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.counters.echo_dropped += 1;
            return;
        }
        self.events.push_back(e);
    }

    /// A datagram for a virtual endpoint leaves wrapped to its relay.
    fn wrap(&mut self, action: Action, out: &mut [u8], now: Instant) -> Action {
        let Action::Send { to, len } = action else {
            return action;
        };
        if !relay::is_virtual(&to) {
            return action;
        }
        let Some(path) = self.paths.route(&to, now) else {
            self.counters.relay_lost += 1;
            return Action::None;
        };
        if out.len() < len + relay::HEADER {
            self.counters.relay_lost += 1;
            return Action::None;
        }
        out.copy_within(..len, relay::HEADER);
        let mut header = [0u8; relay::HEADER];
        relay::write_header(relay::TO, &path.peer, &mut header);
        out[..relay::HEADER].copy_from_slice(&header);
        Action::Send {
            to: path.relay,
            len: len + relay::HEADER,
        }
    }

    /// Relays `inner` from the member at `from` to the member with key id
    /// `target`: only between members both reached directly (strangers
    /// cannot use us as a reflector, and relays do not chain), only if this
    /// node relays, only datagrams no larger than its own, and only as
    /// [`Forwarding`] admits (the two share a circle, within bounds).
    fn forward(
        &mut self,
        from: SocketAddr,
        target: KeyId,
        inner: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Action {
        let source = self
            .device
            .peer_at(from)
            .and_then(|k| self.ids.get(&k).copied());
        let to = self
            .members
            .get(&target)
            .and_then(|m| self.device.endpoint_of(&m.key))
            .filter(|e| !relay::is_virtual(e));
        let len = relay::HEADER + inner.len();
        // Never more than our own datagrams: the caller's send buffers are
        // sized for those (a peer with a larger MTU gets refused, counted).
        let fits = len <= self.max_datagram();
        let (Some(source), Some(to), true, true) = (source, to, self.serve_relay, fits) else {
            self.counters.relay_refused += 1;
            return Action::None;
        };
        if self
            .forwarding
            .admit(source, target, inner.len(), now)
            .is_err()
        {
            self.counters.relay_refused += 1;
            return Action::None;
        }
        let Some(slot) = out.get_mut(..len) else {
            self.counters.relay_refused += 1;
            return Action::None;
        };
        let mut header = [0u8; relay::HEADER];
        relay::write_header(relay::FROM, &source, &mut header);
        slot[..relay::HEADER].copy_from_slice(&header);
        slot[relay::HEADER..].copy_from_slice(inner);
        self.counters.relayed_bytes += inner.len() as u64;
        Action::Send { to, len }
    }

    /// Answers a member's echo question; passes a member's answer on.
    fn on_echo(
        &mut self,
        from: SocketAddr,
        message: Message,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Action {
        let id = match message {
            Message::Request { asker, .. } => asker,
            Message::Reply { answerer, .. } => answerer,
            Message::CallMe { caller } => caller,
        };
        let Some(member) = self
            .members
            .get(&id)
            .copied()
            .filter(|m| echo::authentic(datagram, &m.pair))
        else {
            self.counters.echo_dropped += 1;
            return Action::None;
        };
        match message {
            Message::Request { nonce, len, .. } => {
                let Some(slot) = out.get_mut(..REPLY_LEN) else {
                    self.counters.echo_dropped += 1;
                    return Action::None;
                };
                slot.copy_from_slice(&echo::reply(&self.own_id, nonce, from, len, &member.pair));
                self.counters.echo_answered += 1;
                // A relayed peer asking straight from its endpoint: the
                // path may be open now (it answered our call, say).
                let relayed = self
                    .device
                    .endpoint_of(&member.key)
                    .is_some_and(|e| relay::is_virtual(&e));
                if relayed && !relay::is_virtual(&from) {
                    self.event(Event::DirectSeen {
                        peer: member.key,
                        at: from,
                    });
                }
                Action::Send {
                    to: from,
                    len: REPLY_LEN,
                }
            }
            // Calls come only through a relay.
            Message::CallMe { .. } => {
                self.counters.echo_dropped += 1;
                Action::None
            }
            Message::Reply {
                nonce, seen, len, ..
            } => {
                self.event(Event::Echo {
                    from: member.key,
                    nonce,
                    seen,
                    len,
                });
                Action::None
            }
        }
    }
}

#[cfg(test)]
mod tests;
