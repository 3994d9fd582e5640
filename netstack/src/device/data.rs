//! Transport data: packets out (encapsulated at once, or queued until a
//! session is up and drained through the outbox with keepalives and
//! initiations) and datagrams in (decrypted, checked and delivered).

use super::{Action, Device, DropReason};
use crate::ip;
use crate::peer::{Slot, QUEUE_LEN};
use crate::timers::*;
use crate::wire::{self, DATA_HEADER_LEN};
use crate::Error;
use std::net::SocketAddr;
use std::time::Instant;

impl Device {
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

    pub(super) fn on_data(
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
}
