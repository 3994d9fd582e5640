//! Anti-entropy with federated networks: a partner member's summary is
//! answered with what our network exposes to its network, its version
//! lists and records fill our mirror of its network, endings are checked
//! against the agreement, and one partner member of each connected
//! network gets our summary every round.

use super::*;

impl Replica {
    /// A partner member answered it does not know us (it restarted, or was
    /// revoked and we do not know it yet): it is not asked while others
    /// are, and another member of its network is asked at once.
    pub(super) fn stranger(&mut self, from: NodeId, now_ms: u64) {
        if self.strangers.len() >= MAX_STRANGERS {
            self.strangers.clear();
        }
        let network = self
            .partners
            .networks()
            .find(|n| self.partners.is_member(n, &from, now_ms))
            .copied();
        if let Some(network) = network.filter(|_| self.strangers.insert(from)) {
            self.sync_partner(&network, now_ms, 0);
        }
    }

    /// The partner network of `agreement` whose active member `from` is,
    /// if we answer for our network (we are an active member ourselves).
    pub(super) fn partner_of(
        &self,
        from: &NodeId,
        agreement: &[u8; 16],
        now_ms: u64,
    ) -> Option<crate::agreement::Agreement> {
        let network = self.partners.network_of(agreement)?;
        (self.standing(now_ms) == Some(Status::Active)
            && self.partners.is_member(&network, from, now_ms))
        .then(|| self.partners.agreement(&network).cloned())
        .flatten()
    }

    /// A partner member's summary: its own record enters (if the agreement
    /// lets it), then it gets the ranks of what our network exposes to its
    /// network, in the buckets that differ.
    pub(super) fn partner_summary(
        &mut self,
        from: NodeId,
        agreement: [u8; 16],
        own: Option<&[u8]>,
        summary: &Summary,
        now_ms: u64,
    ) -> Response {
        if let Some(own) = own.filter(|o| SignedRecord::decode(o).is_ok_and(|r| r.writer == from)) {
            if self.partners.network_of(&agreement).is_some()
                && matches!(self.partners.ingest(own, now_ms), Ok(Some(_)))
            {
                self.partner_changed();
            }
        }
        self.partner_versions(&from, agreement, now_ms, "partner summary", |exposed| {
            sync::differing_of(exposed, summary)
        })
    }

    /// A partner member asks for the leaves of a split: our exposed ranks
    /// in them.
    pub(super) fn partner_leaves(
        &mut self,
        from: &NodeId,
        agreement: [u8; 16],
        leaves: &[sync::Leaf],
        now_ms: u64,
    ) -> Response {
        self.partner_versions(from, agreement, now_ms, "partner leaves", |exposed| {
            sync::leaves_of(exposed.into_iter(), leaves)
        })
    }

    /// The answer to a partner's summary or leaves request: the ending if
    /// our network ended `agreement`, "not a member" (counted as `what`)
    /// if `from` may not ask, else `answer` of the (writer, rank) of what
    /// our network exposes to `from`'s.
    pub(super) fn partner_versions(
        &mut self,
        from: &NodeId,
        agreement: [u8; 16],
        now_ms: u64,
        what: &'static str,
        answer: impl FnOnce(Vec<(NodeId, crate::record::Rank)>) -> sync::Versions,
    ) -> Response {
        if let Some(ended) = self.ending_of(&agreement) {
            return ended;
        }
        let Some(a) = self.partner_of(from, &agreement, now_ms) else {
            self.refuse(what);
            return Response::NotMember;
        };
        let state = self.ledger.state();
        let exposed = self
            .ledger
            .exposed_writers(&a, now_ms)
            .into_iter()
            .filter_map(|w| Some((w, state.rank(&w)?)))
            .collect();
        Response::PartnerVersions {
            agreement,
            versions: answer(exposed),
        }
    }

    /// The answer to a partner under `agreement` if this network ended it:
    /// the signed ending (it reveals nothing but the end and its time).
    pub(super) fn ending_of(&self, agreement: &[u8; 16]) -> Option<Response> {
        self.ledger
            .federations()
            .iter()
            .filter(|f| f.agreement.id() == *agreement)
            .find_map(|f| f.ended.clone())
            .map(|e| Response::Ended(Box::new(e)))
    }

    /// A partner member pulls records: those our network exposes to its.
    pub(super) fn partner_pull(
        &mut self,
        from: &NodeId,
        agreement: [u8; 16],
        writers: &[NodeId],
        now_ms: u64,
    ) -> Response {
        if let Some(ended) = self.ending_of(&agreement) {
            return ended;
        }
        let Some(a) = self.partner_of(from, &agreement, now_ms) else {
            self.refuse("partner pull");
            return Response::NotMember;
        };
        let exposed = self.ledger.exposed_writers(&a, now_ms);
        let wanted: Vec<NodeId> = writers
            .iter()
            .filter(|w| exposed.contains(w))
            .copied()
            .collect();
        Response::PartnerRecords {
            agreement,
            records: sync::records_of(self.ledger.state(), &wanted),
        }
    }

    /// One summary to a random member of each connected partner network
    /// (an exposed member it sent us, else a contact our members recorded).
    pub(super) fn sync_partners(&mut self, now_ms: u64, rng: &mut impl RngCore) {
        self.rounds = self.rounds.wrapping_add(1);
        if self.rounds.is_multiple_of(STRANGERS_KEPT_ROUNDS) {
            // Who did not know us may have learned since.
            self.strangers.clear();
        }
        for network in self.roster(now_ms).connected_networks().to_vec() {
            self.sync_partner(&network, now_ms, rng.next_u32());
        }
    }

    /// One summary to a member of partner `network`: an exposed member
    /// that knows us (picked by `pick`), else a contact our members
    /// recorded; our own record goes with it when the member may not know
    /// us.
    pub(super) fn sync_partner(&mut self, network: &NetworkId, now_ms: u64, pick: u32) {
        let (Some(own), Some(agreement), Some(summary), Some(ledger)) = (
            self.ledger.state().get(&self.me).map(SignedRecord::encode),
            self.partners.agreement(network).map(|a| a.id()),
            self.partners.summary(network),
            self.partners.ledger(network),
        ) else {
            return;
        };
        let exposed: Vec<NodeId> = ledger
            .members(now_ms)
            .iter()
            .filter(|m| m.status == Status::Active)
            .map(|m| m.id)
            .collect();
        let known: Vec<NodeId> = exposed
            .iter()
            .filter(|id| !self.strangers.contains(id))
            .copied()
            .collect();
        // Exposed partner members mirror our network and know us; a
        // contact may not (it may be unexposed, or not have synced).
        let (candidates, with_own) = if !known.is_empty() {
            (known, false)
        } else if !exposed.is_empty() {
            (exposed, true)
        } else {
            let contacts = self.ledger.partner_contacts(network, now_ms);
            (contacts.into_iter().map(|c| c.id).collect(), true)
        };
        if candidates.is_empty() {
            return;
        }
        let to = candidates[pick as usize % candidates.len()];
        self.request(
            to,
            Request::PartnerSummary {
                agreement,
                own: with_own.then_some(own),
                summary,
            },
        );
    }

    /// A partner member's version list for `agreement`: what to pull
    /// and which leaves to list.
    pub(super) fn handle_partner_versions(
        &mut self,
        from: NodeId,
        agreement: [u8; 16],
        versions: &crate::sync::Versions,
        now_ms: u64,
    ) {
        let Some(network) = self.partners.network_of(&agreement) else {
            return self.refuse("response");
        };
        self.strangers.remove(&from);
        let trusted = self.partners.is_member(&network, &from, now_ms);
        let (mirror, forgot) = self
            .partners
            .handle_versions(&network, versions, trusted, now_ms);
        if forgot {
            self.partner_changed();
        }
        if !mirror.pull.is_empty() {
            self.request(
                from,
                Request::PartnerPull {
                    agreement,
                    writers: mirror.pull,
                },
            );
        }
        if !mirror.leaves.is_empty() {
            self.request(
                from,
                Request::PartnerLeaves {
                    agreement,
                    leaves: mirror.leaves,
                },
            );
        }
    }

    /// A partner member's records, into the mirror of its network.
    pub(super) fn handle_partner_records(&mut self, records: &[Vec<u8>], now_ms: u64) {
        let mut changed = false;
        for r in records.iter().take(sync::MAX_BATCH) {
            changed |= matches!(self.partners.ingest(r, now_ms), Ok(Some(_)));
        }
        if changed {
            self.partner_changed();
        }
    }

    /// A partner network's ending of an agreement: an event if it checks
    /// out against the agreement.
    pub(super) fn handle_ended(&mut self, ending: Box<crate::agreement::Ending>) {
        let checked = self
            .partners
            .network_of(&ending.agreement)
            .and_then(|n| self.partners.agreement(&n))
            .is_some_and(|a| ending.check(a).is_ok());
        if !checked {
            self.refuse("response");
        } else if self.events.len() < MAX_EVENTS {
            self.events.push_back(Event::PartnerEnded(ending));
        }
    }
}
