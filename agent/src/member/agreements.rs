//! Federation agreements on this node: offers signed for this
//! network, acceptances of another network's offer, agreements the other
//! network delivers, endings, and the list. The rules (signatures, ranges,
//! exposure, one agreement per offer) live in `federation::agreement` and
//! the ledger; what this node adopts travels in its own record ([`Own`]).
//!
//! [`Own`]: super::own::Own

use super::Member;
use crate::api::{self, docs};
use federation::agreement::{parse_relays, Agreement, Ending, Exposure, Offer, OfferToken, Side};
use federation::contact::Contact;
use federation::federations;
use federation::ledger::Federation;
use federation::protocol::Response;
use federation::{NodeKey, Status};
use rand_core::RngCore;
use std::collections::BTreeSet;
use std::time::Duration;

/// A side's terms as the user gave them: `--expose` and `--relays`.
pub(super) type Terms<'a> = (&'a str, Option<&'a str>);

/// Longest offer life.
const MAX_OFFER_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

impl<R> Member<R> {
    /// The authority key: the one given (hex seed from an exported file)
    /// or the one in the state directory.
    fn authority_key(&self, given: Option<&str>) -> Result<NodeKey, String> {
        let key = match given {
            Some(hex) => federation::hex::decode::<32>(hex.trim())
                .map(|seed| NodeKey::from_seed(&seed))
                .ok_or("the authority key given is not a key written by `cladnet authority export`")?,
            None => match &self.identity.authority {
                Some(k) => NodeKey::from_seed(&k.seed()),
                None => return Err("this node does not hold the network's authority key: run this on the node that ran `init`, or give --authority FILE (written by `cladnet authority export`)".into()),
            },
        };
        if key.id() != self.identity.network.authority {
            return Err("the authority key given belongs to another network".into());
        }
        if self.standing != Some(Status::Active) {
            return Err(
                "this node is not a member in good standing: it cannot federate its network".into(),
            );
        }
        Ok(key)
    }

    /// This network's side of an agreement on `terms`: what it exposes
    /// (`all` or tags) and the tags of the members it lends as relays.
    fn our_side(&self, (expose, relays): Terms<'_>) -> Result<Side, String> {
        let exposes = Exposure::parse(expose).map_err(|e| e.to_string())?;
        let lends = relays
            .map(parse_relays)
            .transpose()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let authority = self.replica.ledger().authority().ok_or(
            "this node does not know its network's description yet: try again in a few seconds",
        )?;
        Ok(Side {
            network: self.identity.network.id,
            authority: self.identity.network.authority,
            name: authority.name.clone(),
            cidr: authority.cidr,
            exposes,
            lends,
        })
    }

    /// This node and up to three other members, with control endpoints.
    fn contacts(&self, now_ms: u64) -> Vec<Contact> {
        let me = self.me;
        let connected: BTreeSet<_> = self.replica.connected().copied().collect();
        let mut contacts = vec![Contact {
            id: me,
            addrs: self.own.record.control.clone(),
        }];
        contacts.extend(federation::token::contacts(
            self.replica.ledger(),
            &me,
            |id| connected.contains(id),
            now_ms,
        ));
        contacts
    }

    /// `federate offer`: an offer signed by this network's authority.
    pub(super) fn federate_offer(
        &self,
        terms: Terms<'_>,
        ttl: Duration,
        authority: Option<&str>,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> String {
        line(self.offer(terms, ttl, authority, now_ms, rng))
    }

    fn offer(
        &self,
        terms: Terms<'_>,
        ttl: Duration,
        authority: Option<&str>,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> Result<docs::Offer, String> {
        if ttl.is_zero() || ttl > MAX_OFFER_TTL {
            return Err("--ttl must be between 1s and 30d".to_string());
        }
        let key = self.authority_key(authority)?;
        let side = self.our_side(terms)?;
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let expires_ms = now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let offer = Offer::sign(&key, id, side, expires_ms);
        Ok(docs::Offer {
            fingerprint: offer.fingerprint(),
            token: OfferToken {
                offer,
                contacts: self.contacts(now_ms),
            }
            .encode(),
            expires_ms,
        })
    }

    /// `federate accept`, first step: checks the offer and signs the
    /// agreement with this network's authority (nothing is carried until
    /// the offering network took it).
    pub(super) fn federate_sign(
        &self,
        offer: &str,
        terms: Terms<'_>,
        authority: Option<&str>,
        now_ms: u64,
    ) -> String {
        line(self.sign(offer, terms, authority, now_ms))
    }

    fn sign(
        &self,
        offer: &str,
        terms: Terms<'_>,
        authority: Option<&str>,
        now_ms: u64,
    ) -> Result<docs::Signed, String> {
        let token = OfferToken::decode(offer).map_err(|e| e.to_string())?;
        let key = self.authority_key(authority)?;
        let side = self.our_side(terms)?;
        federations::may_accept(
            self.replica.ledger().federations(),
            &side.network,
            &token.offer,
        )
        .map_err(|e| e.to_string())?;
        let agreement =
            Agreement::accept(&key, token.offer, side, now_ms).map_err(|e| e.to_string())?;
        Ok(docs::Signed {
            agreement,
            contacts: token.contacts,
            ours: self.contacts(now_ms),
        })
    }

    /// Carries `agreement` in this node's record if it is one of this
    /// network's, valid, and the first for its offer.
    fn adopt(&mut self, agreement: &Agreement, contacts: Vec<Contact>) -> Result<(), String> {
        let known = self.replica.ledger().federations();
        let other = federations::may_carry(known, &self.identity.network.id, agreement)
            .map_err(|e| e.to_string())?;
        if self.standing != Some(Status::Active) {
            return Err(
                "the member reached is not in good standing in its network: try another".into(),
            );
        }
        self.own.carry(agreement)?;
        self.own.remember_contacts(other, contacts);
        Ok(())
    }

    /// `federate accept`, last step: carries the agreement the offering
    /// network took.
    pub(super) fn federate_adopt(
        &mut self,
        agreement: &Agreement,
        contacts: Vec<Contact>,
        now_ms: u64,
    ) -> String {
        let adopted = self.adopt(agreement, contacts).map(|()| {
            self.federation_doc(
                &Federation {
                    agreement: agreement.clone(),
                    ended: None,
                },
                now_ms,
            )
        });
        line(adopted)
    }

    /// Another network delivers an agreement accepting one of this
    /// network's offers.
    pub(super) fn federated(&mut self, agreement: &Agreement, contacts: Vec<Contact>) -> Response {
        if agreement.offer.offerer.network != self.identity.network.id {
            return Response::Refused("this agreement answers an offer of another network: give it to a member of the network that offered".into());
        }
        match self.adopt(agreement, contacts) {
            Ok(()) => {
                tracing::info!(org = %agreement.acceptor.name, "federated with another network");
                Response::Ack
            }
            Err(why) => Response::Refused(why),
        }
    }

    /// `federate end ORG`: this network's authority ends the agreement with
    /// the network named (by name or id).
    pub(super) fn federate_end(
        &mut self,
        org: &str,
        authority: Option<&str>,
        now_ms: u64,
    ) -> String {
        line(self.end(org, authority, now_ms))
    }

    /// The other network of an agreement ended it.
    pub(super) fn ended(&mut self, ending: Ending) -> Response {
        // A revoked or departed node would carry it where nobody listens:
        // the teller asks another member.
        if self.standing != Some(federation::Status::Active) {
            return Response::NotMember;
        }
        let carried = federations::may_carry_ending(self.replica.ledger().federations(), &ending)
            .map_err(|e| e.to_string())
            .and_then(|()| self.own.carry_ending(ending));
        match carried {
            Ok(()) => Response::Ack,
            Err(why) => Response::Refused(why),
        }
    }

    fn end(
        &mut self,
        org: &str,
        authority: Option<&str>,
        now_ms: u64,
    ) -> Result<docs::Ended, String> {
        let key = self.authority_key(authority)?;
        let us = self.identity.network.id;
        let f = federations::in_force_with(self.replica.ledger().federations(), &us, org)
            .map_err(|e| e.to_string())?
            .clone();
        let ending = Ending::sign(&key, &f.agreement, now_ms).map_err(|e| e.to_string())?;
        self.own.carry_ending(ending.clone())?;
        let other = f.agreement.other(&us).map(|o| o.network).unwrap_or(us);
        Ok(docs::Ended {
            contacts: self.replica.ledger().partner_contacts(&other, now_ms),
            federation: self.federation_doc(
                &Federation {
                    agreement: f.agreement,
                    ended: Some(ending.clone()),
                },
                now_ms,
            ),
            ending,
        })
    }

    /// `federate list`.
    pub(super) fn federate_list(&self, now_ms: u64) -> Vec<docs::Federation> {
        self.replica
            .ledger()
            .federations()
            .iter()
            .map(|f| self.federation_doc(f, now_ms))
            .collect()
    }

    fn federation_doc(&self, f: &Federation, now_ms: u64) -> docs::Federation {
        let us = self.identity.network.id;
        let a = &f.agreement;
        let (ours, theirs) = match (a.side(&us), a.other(&us)) {
            (Some(o), Some(t)) => (o, t),
            _ => (&a.acceptor, &a.offer.offerer),
        };
        docs::Federation {
            org: theirs.name.clone(),
            network_id: theirs.network.to_string(),
            cidr: theirs.cidr.to_string(),
            exposes: ours.exposes.to_string(),
            exposed_to_us: theirs.exposes.to_string(),
            lends: ours.lends.join(","),
            lent_to_us: theirs.lends.join(","),
            state: if f.active() { "active" } else { "ended" }.into(),
            fingerprint: federation::agreement::fingerprint(&theirs.authority),
            id: federation::hex::encode(&a.id()),
            accepted_ms: a.accepted_ms,
            ended_ms: f.ended.as_ref().map(|e| e.ended_ms),
            members: self
                .replica
                .partners()
                .ledger(&theirs.network)
                .filter(|_| f.active())
                .map_or(0, |l| {
                    l.members(now_ms)
                        .iter()
                        .filter(|m| m.status == federation::Status::Active)
                        .filter(|m| {
                            theirs
                                .exposes
                                .covers(federation::ledger::leaf_tags(m.record))
                        })
                        .count()
                }),
        }
    }
}

/// The answer line for `result`: its document, or its sentence as an error.
fn line<T: serde::Serialize>(result: Result<T, String>) -> String {
    result.map_or_else(|e| api::error(&e), |doc| api::answer(&doc))
}
