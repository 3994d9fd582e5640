//! Requests of the local API (and those other members may run here):
//! what only reads goes back to the daemon to be read off the data plane
//! ([`Command::Read`]); the rest is decided here: invites, revocations,
//! `leave`, `set`, `--via`, `tag` and federation agreements.

use super::{find, invites, Asker, Command, LocalId, Member, FAREWELL};
use crate::advertise::Advertise;
use crate::api::{self, docs, Request};
use federation::protocol::Request as Ask;
use federation::NodeId;
use rand_core::RngCore;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

impl<R> Member<R> {
    /// Local request `id` (or another member's query, `asker`).
    pub fn handle_local(
        &mut self,
        asker: Asker<R>,
        request: Request,
        now: Instant,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) {
        let line = match request {
            Request::Status
            | Request::Members
            | Request::Peers
            | Request::Metrics
            | Request::HostNetworks
            | Request::Prometheus
            | Request::Html => {
                return self.command(Command::Read { asker, request });
            }
            Request::Via { target, request } => match asker {
                Asker::Local(id) => return self.start_via(id, &target, *request, now, now_ms),
                Asker::Remote(_) => api::error("--via cannot be chained"),
            },
            Request::Tag { node, tags } => match asker {
                Asker::Local(id) => return self.start_tag(id, &node, tags, now, now_ms),
                Asker::Remote(_) => api::error("`tag` cannot be run here from another member"),
            },
            Request::Invite { ttl_s, uses, tags } => self.invite(
                &invites::Terms {
                    ttl: Duration::from_secs(ttl_s),
                    uses,
                    tags,
                },
                now_ms,
                rng,
            ),
            Request::Set(change) => self.set(change),
            Request::Revoke { node } => self.revoke(&node, now_ms),
            Request::Leave => {
                self.leaving = Some(now + FAREWELL);
                api::answer(&self.own.leave(now_ms))
            }
            Request::Show => {
                api::error("`show` is for WireGuard-file mode; use `status` and `peers`")
            }
            Request::FederateOffer {
                expose,
                relays,
                ttl_s,
                authority,
            } => self.federate_offer(
                (&expose, relays.as_deref()),
                Duration::from_secs(ttl_s),
                authority.as_deref(),
                now_ms,
                rng,
            ),
            Request::FederateSign {
                offer,
                expose,
                relays,
                authority,
            } => self.federate_sign(
                &offer,
                (&expose, relays.as_deref()),
                authority.as_deref(),
                now_ms,
            ),
            Request::FederateAdopt {
                agreement,
                contacts,
            } => self.federate_adopt(&agreement, contacts, now_ms),
            Request::FederateList => api::answer(&self.federate_list(now_ms)),
            Request::FederateEnd { org, authority } => {
                self.federate_end(&org, authority.as_deref(), now_ms)
            }
        };
        self.tell(asker, line);
        self.flush(now, now_ms);
    }

    /// `--via`: forwards a query to another member; answered when it does.
    fn start_via(
        &mut self,
        id: LocalId,
        target: &str,
        request: Request,
        now: Instant,
        now_ms: u64,
    ) {
        if !self.via.has_room() {
            return self.answer(
                id,
                api::error("too many --via queries in flight; try again"),
            );
        }
        let query = api::answer(&request);
        match find(&self.replica, target, now_ms) {
            Ok(to) if to == self.me => {
                self.answer(
                    id,
                    api::error("--via names this node itself: leave --via out"),
                );
            }
            Ok(to) => {
                let tag = self.ask(&to, now_ms, Ask::Query(query));
                self.via.sent(tag, id, now);
            }
            Err(why) => match target.parse::<SocketAddr>() {
                // A control endpoint of a node we do not know (yet).
                Ok(addr) => {
                    self.command(Command::DialAddress(addr));
                    self.via.dialing(addr, query, id, now);
                }
                Err(_) => self.answer(id, api::error(&why)),
            },
        }
    }

    /// `cladnet set`: stores the new settings, applies the advertised
    /// addresses (published with what they stand for) and the labels at
    /// once, and says what waits for a restart.
    fn set(&mut self, change: crate::change::Change) -> String {
        let mut settings = self.identity.settings.clone();
        let applied = change.apply(&mut settings);
        if let Err(e) = self.storage.settings(&settings) {
            return api::error(&format!("cannot store the setting: {e}"));
        }
        self.identity.settings = settings;
        if let Some(labels) = change.labels {
            self.own.set_labels(labels);
        }
        if change.advertise.is_some() {
            if self.identity.settings.advertise.contains(&Advertise::Auto) {
                self.command(Command::LookUpAuto);
            } else {
                self.auto = None;
            }
            self.command(Command::Rescan);
        }
        api::answer(&docs::Text {
            text: crate::change::said(&applied, true),
        })
    }

    /// `revoke`: a member of this network named by `who`.
    fn revoke(&mut self, who: &str, now_ms: u64) -> String {
        let admits = self.identity.authority.is_some();
        let found = self
            .own
            .may_admit(self.standing, admits)
            .and_then(|()| find(&self.replica, who, now_ms))
            .and_then(|id| match self.replica.ledger().member(&id, now_ms) {
                Some(_) => Ok(id),
                None => Err(format!(
                    "{who} is a member of a federated network: only its own network can revoke it (`federate end` cuts the whole agreement)"
                )),
            });
        let me = self.me;
        match found.and_then(|target| self.own.revoke(self.replica.ledger(), &me, &target, now_ms))
        {
            Ok(doc) => {
                if let Some(target) = NodeId::from_hex(&doc.revoked) {
                    self.command(Command::Disconnect(target));
                }
                api::answer(&doc)
            }
            Err(why) => api::error(&why),
        }
    }
}
