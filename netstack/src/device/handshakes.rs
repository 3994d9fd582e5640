//! Handshake messages: writing initiations, admitting handshake messages
//! (mac1, and cookies under load), answering initiations (also those that
//! arrived before their key became a peer) and completing on responses.

use super::{Action, Device, DropReason, PeerId, MAX_HANDSHAKE_REPORTS};
use crate::crypto::PublicKey;
use crate::handshake::{Initiator, Responder};
use crate::peer::Pending;
use crate::session::Session;
use crate::timers::*;
use crate::wire::{self, Message};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Initiations from keys that are not peers yet kept at once, at most.
const MAX_EARLY: usize = 8;

/// A valid initiation from a key that was not a peer when it arrived. A
/// mesh adds a new member as a peer when its record arrives, which is often
/// just after the member's first initiation: answering it then saves the
/// initiator a [`REKEY_TIMEOUT`] wait.
pub(super) struct Early {
    key: PublicKey,
    from: SocketAddr,
    datagram: [u8; wire::INITIATION_LEN],
    at: Instant,
}

impl Device {
    pub(super) fn write_initiation(
        &mut self,
        id: PeerId,
        out: &mut [u8],
        now: Instant,
    ) -> Option<usize> {
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
    pub(super) fn admit_handshake(
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

    pub(super) fn on_initiation(
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

    pub(super) fn on_response(
        &mut self,
        from: SocketAddr,
        m: wire::Response<'_>,
        now: Instant,
    ) -> Action {
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

    pub(super) fn report_handshake(&mut self, peer: PublicKey) {
        if self.handshakes.len() >= MAX_HANDSHAKE_REPORTS {
            self.handshakes.pop_front();
        }
        self.handshakes.push_back(peer);
    }

    /// The next peer whose handshake completed (a session is up).
    pub fn poll_handshake(&mut self) -> Option<PublicKey> {
        self.handshakes.pop_front()
    }

    /// Answers a kept initiation whose key has become a peer since; drops
    /// kept initiations older than [`REKEY_TIMEOUT`] (the initiator has
    /// sent a new one by then).
    pub(super) fn answer_early(
        &mut self,
        out: &mut [u8],
        now: Instant,
    ) -> Option<(SocketAddr, usize)> {
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
}
