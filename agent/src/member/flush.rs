//! What the machines produced, carried on after every input: records the
//! replica accepted are stored (and what they changed followed: a lost
//! address reclaimed, the boundary and standing, the host and data plane),
//! the own record is signed, stored and published when it changed, and the
//! replica's transmits become [`Command`]s.

use super::{Command, Member};
use federation::replica::{self, Transmit};
use federation::Status;
use std::time::Instant;

impl<R> Member<R> {
    /// Carries out what the machines decided: stores and reacts to
    /// accepted records, publishes the own record if it changed, sends.
    pub(super) fn flush(&mut self, now: Instant, now_ms: u64) {
        loop {
            let (mut stored, mut membership, mut peers) = (Vec::new(), false, false);
            while let Some(event) = self.replica.poll_event() {
                let (delta, bytes) = match event {
                    replica::Event::Accepted { delta, bytes } => (delta, bytes),
                    // A federated network's records changed.
                    replica::Event::Partners => {
                        peers = true;
                        continue;
                    }
                    replica::Event::PartnerEnded(ending) => {
                        if let Err(why) = self.own.carry_ending(*ending) {
                            tracing::warn!("cannot carry a federated network's ending: {why}");
                        }
                        continue;
                    }
                };
                tracing::debug!(writer = %delta.writer.short(), changes = ?delta.changes, "record accepted");
                membership |= delta.changes.membership;
                peers |= delta.changes.peers();
                if delta.writer != self.me {
                    self.handle_heard(delta.writer, now, now_ms);
                }
                stored.push((delta.writer, bytes));
            }
            if !stored.is_empty() {
                if let Err(e) = self.storage.records(&stored) {
                    tracing::error!("cannot store received records: {e}");
                }
            }
            if membership || peers {
                // Another member may have won our address.
                self.own
                    .reclaim_if_lost(self.replica.ledger(), &self.me, now_ms);
            }
            // A revoked (or expired) node has nothing to tell the network.
            let silenced = matches!(self.standing, Some(Status::Revoked | Status::Expired));
            if let Some((version, urgent)) = self.own.take_publication().filter(|_| !silenced) {
                if let Some(delta) = self.publish_own(version, urgent, now_ms) {
                    membership |= delta.changes.membership;
                    peers |= delta.changes.peers();
                }
            }
            if membership {
                self.on_membership(now_ms);
            }
            if membership || peers {
                self.command(Command::Apply);
            }
            if !self.own.dirty {
                break;
            }
        }
        while let Some(t) = self.replica.poll_transmit() {
            match t {
                Transmit::Request { to, request } => {
                    let addrs = self.control_addrs(&to, now_ms);
                    let tag = self.tag();
                    self.command(Command::Request {
                        tag,
                        to,
                        addrs,
                        request,
                    });
                }
                Transmit::Publish(bytes) => self.command(Command::Publish(bytes)),
            }
        }
    }

    /// Signs and stores the own record as `version` and hands it to the
    /// replica (which gossips it, and pushes it if `urgent`); what it
    /// changed. Nothing is published that is not stored: a restart must
    /// not sign another record under a version the network holds.
    fn publish_own(
        &mut self,
        version: u64,
        urgent: bool,
        now_ms: u64,
    ) -> Option<federation::ledger::Delta> {
        let body = federation::member::Body::Member(self.own.record.clone());
        let bytes = self.identity.key.sign(version, body.to_bytes()).encode();
        if let Err(e) = self.storage.own(&bytes) {
            tracing::error!("cannot store this node's record: {e}");
            return None;
        }
        match self.replica.publish(bytes, urgent, now_ms) {
            Ok(delta) => delta,
            Err(e) => {
                tracing::error!("this node's own record was refused by its own ledger: {e}");
                None
            }
        }
    }
}
