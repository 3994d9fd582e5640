//! This node's own record: what it tells the network about itself (its
//! endpoints, control endpoints and host networks as the host shows them,
//! where members see it, its link and path MTUs, its address claim, its
//! measurements, the revocations it issued, its departure) and whether that
//! changed enough to say it again; and what the node may do as a member
//! (invite, revoke) given its standing.

use super::invites;
use crate::api::docs;
use crate::inventory::Inventory;
use crate::statedir::Settings;
use federation::agreement::{Agreement, Ending};
use federation::contact::{Contact, MAX_CONTACTS, MAX_CONTROL};
use federation::member::PartnerContacts;
use federation::member::{
    Link, MemberRecord, Metrics, MAX_ADVERTISED, MAX_AGREEMENTS, MAX_ENDINGS, MAX_ENDPOINTS,
    MAX_HOST_NETWORKS, MAX_LINKS, MAX_REVOCATIONS,
};
use federation::NetworkId;
use federation::{address, Ledger, NodeId, Status};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The own record and its version.
pub struct Own {
    /// The record as last published (or about to be).
    pub record: MemberRecord,
    /// Its version.
    pub version: u64,
    /// Something changed that must be published.
    pub dirty: bool,
    /// ... and it is urgent (endpoints, address): push it to every
    /// connected member too, in case gossip's mesh is re-forming.
    pub urgent: bool,
}

/// What the daemon measured of this node's process.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostSample {
    /// CPU share since the last sample, in thousandths of a core.
    pub cpu_permille: u32,
    /// Resident memory in KiB.
    pub rss_kb: u64,
    /// Seconds since the agent started.
    pub uptime_s: u64,
}

/// Where this node is reached from outside, besides its host addresses.
#[derive(Debug, Clone, Default)]
pub struct Outside {
    /// Data-plane endpoints members see it at (endpoint echo).
    pub reflexive: Vec<SocketAddr>,
    /// Control-plane endpoints members see it at (identify).
    pub control: Vec<SocketAddr>,
    /// The public address `--advertise auto` found.
    pub auto: Option<IpAddr>,
}

/// The endpoints of a socket bound to `configured`: every host address if
/// it is a wildcard, else that address.
fn endpoints(configured: SocketAddr, host: &[IpAddr], max: usize) -> Vec<SocketAddr> {
    if configured.ip().is_unspecified() {
        host.iter()
            .map(|ip| SocketAddr::new(*ip, configured.port()))
            .take(max)
            .collect()
    } else {
        vec![configured]
    }
}

impl Own {
    /// The stored record at `version`.
    pub fn new(record: MemberRecord, version: u64) -> Self {
        Self {
            record,
            version,
            dirty: false,
            urgent: false,
        }
    }

    fn changed(&mut self, urgent: bool) {
        self.dirty = true;
        self.urgent |= urgent;
    }

    /// Takes what the host shows now (`inv`, with the sockets bound and
    /// the addresses advertised as `settings` say) and where members see
    /// this node (`outside`). Control endpoints go advertised first, then
    /// observed, then the host's: the order tokens and peers try them in.
    pub fn update_host(&mut self, inv: &Inventory, settings: &Settings, outside: Outside) {
        let (mut advertised, advertised_control) = crate::advertise::endpoints(
            &settings.advertise,
            outside.auto,
            settings.listen,
            settings.control_listen,
        );
        advertised.truncate(MAX_ADVERTISED);
        let data = endpoints(settings.listen, &inv.addrs, MAX_ENDPOINTS);
        let mut control: Vec<SocketAddr> = Vec::new();
        for c in advertised_control
            .into_iter()
            .chain(outside.control)
            .chain(endpoints(settings.control_listen, &inv.addrs, MAX_CONTROL))
        {
            if !control.contains(&c) && control.len() < MAX_CONTROL {
                control.push(c);
            }
        }
        let reflexive = outside.reflexive;
        let networks: Vec<_> = inv
            .networks
            .iter()
            .copied()
            .take(MAX_HOST_NETWORKS)
            .collect();
        let r = &mut self.record;
        if inv.mtu != r.host_mtu {
            r.host_mtu = inv.mtu;
            self.changed(false);
        }
        let r = &mut self.record;
        if data != r.endpoints
            || control != r.control
            || networks != r.host_networks
            || advertised != r.advertised
        {
            if advertised != r.advertised {
                tracing::info!(?advertised, "advertising this node at new endpoints");
            }
            r.advertised = advertised;
            r.endpoints = data;
            r.control = control;
            r.host_networks = networks;
            self.changed(true);
        }
        if reflexive != self.record.reflexive {
            tracing::info!(?reflexive, "members see this node at new endpoints");
            self.record.reflexive = reflexive;
            self.changed(true);
        }
    }

    /// Sets the narrowest path probing found.
    pub fn set_path_mtu(&mut self, path_mtu: Option<u16>) {
        if path_mtu != self.record.path_mtu {
            tracing::warn!(
                ?path_mtu,
                "probing found a path narrower than the hosts' links; the overlay MTU follows"
            );
            self.record.path_mtu = path_mtu;
            self.changed(false);
        }
    }

    /// Sets the overlay MTU in use.
    pub fn set_mtu(&mut self, mtu: u16) {
        if mtu != self.record.mtu {
            self.record.mtu = mtu;
            self.changed(false);
        }
    }

    /// If another member won our address, claims a free one (`me` is this
    /// node). True if the claim changed.
    pub fn reclaim_if_lost(&mut self, ledger: &Ledger, me: &NodeId, now_ms: u64) -> bool {
        let owners = ledger.address_owners(now_ms);
        if owners.get(&self.record.address).is_none_or(|o| o == me) {
            return false;
        }
        let Some(block) = ledger.authority().map(|a| a.block) else {
            return false;
        };
        let taken: BTreeSet<_> = owners.keys().copied().collect();
        let Some(fresh) = address::pick(&block, me, &taken) else {
            tracing::error!("the network's address block {block} is full: no address to claim");
            return false;
        };
        tracing::warn!(
            lost = %self.record.address, new = %fresh,
            "another member claimed our overlay address first; claiming a new one"
        );
        self.record.address = fresh;
        self.record.claimed_ms = now_ms;
        self.changed(true);
        true
    }

    /// Takes the record to publish (with the next version), if it changed:
    /// and whether it is urgent.
    pub fn take_publication(&mut self) -> Option<(u64, bool)> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        self.version += 1;
        Some((self.version, std::mem::take(&mut self.urgent)))
    }

    /// Puts its CPU, memory (`host`) and a rotating sample of `links` (all
    /// links to its peers) in the record; returns when to measure again
    /// (the interval grows with the network, so gossip stays flat).
    pub fn measured(&mut self, host: HostSample, links: Vec<Link>, now_ms: u64) -> Duration {
        let n = links.len();
        // More peers than fit: publish a different slice each time.
        let skip = if n > MAX_LINKS {
            usize::try_from(self.version)
                .unwrap_or(0)
                .wrapping_mul(MAX_LINKS)
                % n
        } else {
            0
        };
        let links = links
            .into_iter()
            .cycle()
            .skip(skip)
            .take(n.min(MAX_LINKS))
            .collect();
        self.record.metrics = Some(Metrics {
            sampled_ms: now_ms,
            uptime_s: host.uptime_s,
            cpu_permille: host.cpu_permille,
            rss_kb: host.rss_kb,
            version: env!("CARGO_PKG_VERSION").into(),
            links,
        });
        self.changed(false);
        federation::member::metrics_interval(n + 1)
    }

    /// Refuses what only a member in good standing that may admit can do
    /// (`authority`: this node holds the authority key).
    pub fn may_admit(&self, standing: Option<Status>, authority: bool) -> Result<(), String> {
        match standing {
            Some(Status::Active) => {}
            Some(Status::Revoked) => {
                return Err("this node was revoked from the network: it can no longer invite, admit or revoke".into())
            }
            _ => {
                return Err("this node is not a member in good standing: it can no longer invite, admit or revoke".into())
            }
        }
        if !self.record.chain.last().is_some_and(|c| c.admit) && !authority {
            return Err("this node may not admit others: ask another member for an invite".into());
        }
        Ok(())
    }

    /// The token of invite `issue` (stored on `terms`), naming this
    /// node's control endpoints and other `members` that forward joins.
    pub fn invite(
        &self,
        identity: &super::Identity,
        terms: &invites::Terms,
        issue: &invites::Issue,
        members: Vec<Contact>,
    ) -> docs::Invite {
        let token = federation::token::Invite {
            network: identity.network.id,
            authority: identity.network.authority,
            inviter: identity.key.id(),
            addrs: self.record.control.clone(),
            members,
            id: issue.id,
            secret: issue.secret,
            expires_ms: issue.expires_ms,
        };
        docs::Invite {
            token: token.encode(),
            expires_ms: issue.expires_ms,
            uses: terms.uses,
        }
    }

    /// Replaces what this node says about itself (`cladnet set --label`).
    pub fn set_labels(&mut self, labels: std::collections::BTreeMap<String, String>) {
        if self.record.labels != labels {
            self.record.labels = labels;
            self.changed(false);
        }
    }

    /// Takes a re-issued certificate chain (checked by the caller).
    pub fn adopt_chain(&mut self, chain: Vec<federation::cert::Cert>) {
        self.record.chain = chain;
        self.changed(true);
    }

    /// Revokes `target` (the members it admitted stay); `me` is this node.
    pub fn revoke(
        &mut self,
        ledger: &Ledger,
        me: &NodeId,
        target: &NodeId,
        now_ms: u64,
    ) -> Result<docs::Revoked, String> {
        if target == me {
            return Err("a node cannot revoke itself: use `cladnet leave`".into());
        }
        if self.record.revocations.len() >= MAX_REVOCATIONS {
            return Err(
                "this node's record holds the most revocations it can; revoke from another member"
                    .into(),
            );
        }
        self.record
            .revocations
            .push(ledger.revocation_of(target, now_ms));
        self.changed(true);
        Ok(docs::Revoked {
            revoked: target.to_hex(),
        })
    }

    /// Carries a federation agreement of this network in the record (so it
    /// spreads to every member and is stored with the record); `false` if
    /// it was carried already.
    pub fn carry(&mut self, agreement: &Agreement) -> Result<bool, String> {
        if self
            .record
            .agreements
            .iter()
            .any(|a| a.id() == agreement.id())
        {
            return Ok(false);
        }
        if self.record.agreements.len() >= MAX_AGREEMENTS {
            return Err("this node's record carries the most federation agreements it can; accept on another member".into());
        }
        self.record.agreements.push(agreement.clone());
        self.changed(true);
        Ok(true)
    }

    /// Carries the ending of a federation agreement in the record.
    pub fn carry_ending(&mut self, ending: Ending) -> Result<(), String> {
        if self
            .record
            .endings
            .iter()
            .any(|e| e.agreement == ending.agreement)
        {
            return Ok(());
        }
        if self.record.endings.len() >= MAX_ENDINGS {
            return Err("this node's record carries the most federation endings it can; end it on another member".into());
        }
        self.record.endings.push(ending);
        self.changed(true);
        Ok(())
    }

    /// Remembers where the federated `network` gave members to reach
    /// (replacing what was remembered of it).
    pub fn remember_contacts(&mut self, network: NetworkId, mut members: Vec<Contact>) {
        members.truncate(MAX_CONTACTS + 1);
        for c in &mut members {
            c.addrs.truncate(MAX_CONTROL);
        }
        let list = &mut self.record.partner_contacts;
        list.retain(|p| p.network != network);
        list.push(PartnerContacts { network, members });
        let excess = list.len().saturating_sub(MAX_AGREEMENTS);
        list.drain(..excess);
        self.changed(false);
    }

    /// Leaves the network (the departure is urgent news).
    pub fn leave(&mut self, now_ms: u64) -> docs::Left {
        self.record.left_ms = Some(now_ms);
        self.changed(true);
        docs::Left { left: true }
    }
}

#[cfg(test)]
mod tests;
