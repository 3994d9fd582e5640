//! The documents the local API answers with, read off one consistent view
//! of the node: its record, the ledger, the data plane, the probes and the
//! control plane's counters.

use crate::api::docs::{self, millis};
use crate::member::peers::wg_key;
use crate::probe::Prober;
use crate::statedir::Settings;
use federation::liveness::Liveness;
use federation::member::{Link, MemberRecord, Metrics};
use federation::partners::Partners;
use federation::replica::Traffic;
use federation::roster::Roster;
use federation::{Ledger, NodeId, Status};
use netstack::{DropReason, Node, PeerInfo, PublicKey, Route};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Everything an answer may read.
pub struct View<'a> {
    /// The state.
    pub ledger: &'a Ledger,
    /// Everyone this node may have a tunnel with (own and partner members).
    pub roster: Roster<'a>,
    /// What this node holds of the federated networks.
    pub partners: &'a Partners,
    /// This node.
    pub me: NodeId,
    /// This node's record and its version.
    pub own: &'a MemberRecord,
    /// Its version.
    pub version: u64,
    /// Settings from init/join.
    pub settings: &'a Settings,
    /// The TUN interface.
    pub iface: &'a str,
    /// Whether this node holds the authority key.
    pub authority: bool,
    /// Why the overlay MTU is what it is.
    pub mtu_reason: &'a str,
    /// Control-plane traffic.
    pub traffic: Traffic,
    /// What outsiders sent that was refused.
    pub refused: BTreeMap<String, u64>,
    /// Members with a control connection.
    pub connected: &'a BTreeSet<NodeId>,
    /// When members were last heard from.
    pub liveness: &'a Liveness,
    /// Overlay probes.
    pub prober: Option<&'a Prober<NodeId>>,
    /// The data plane (locked).
    pub node: &'a Node,
    /// This node's latest measurements of itself.
    pub metrics: Option<&'a Metrics>,
    /// Now.
    pub now: Instant,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
}

/// `standing` in words.
pub fn standing(s: Option<Status>) -> &'static str {
    match s {
        Some(Status::Active) => "member",
        Some(Status::Revoked) => "revoked",
        Some(Status::Expired) => "expired",
        Some(Status::Left) => "left",
        None => "unknown",
    }
}

fn us(d: Option<Duration>) -> Option<u32> {
    d.map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
}

fn ms(us: Option<u32>) -> Option<f64> {
    us.map(|u| f64::from(u) / 1000.0)
}

/// A member whose measurements are dated this far ahead of our clock has
/// a clock (or we have one) that needs fixing.
const CLOCK_SKEW_MS: u64 = 60_000;

/// A federated member whose tunnel shook hands this recently is alive.
const PARTNER_ALIVE: Duration = Duration::from_secs(180);

/// One item of `members`.
/// Endpoints as text.
fn strings(endpoints: &[std::net::SocketAddr]) -> Vec<String> {
    endpoints.iter().map(ToString::to_string).collect()
}

fn member_doc(
    m: &federation::Member<'_>,
    org: &str,
    state: &str,
    last_seen_ms: Option<u64>,
    me: bool,
) -> docs::Member {
    docs::Member {
        name: m.record.name.clone(),
        id: m.id.to_hex(),
        address: m.record.address.to_string(),
        endpoints: strings(&m.record.endpoints),
        seen_at: strings(&m.record.reflexive),
        advertised: strings(&m.record.advertised),
        state: state.into(),
        last_seen_ms,
        version: m.version,
        me,
        org: org.into(),
        tags: federation::ledger::leaf_tags(m.record).to_vec(),
        labels: m.record.labels.clone(),
    }
}

impl View<'_> {
    fn infos(&self) -> BTreeMap<PublicKey, PeerInfo> {
        self.node
            .device()
            .peers()
            .map(|p| (p.public_key, p))
            .collect()
    }

    fn names_by_key(&self) -> BTreeMap<PublicKey, String> {
        self.roster
            .members(self.now_ms)
            .iter()
            .filter_map(|m| Some((wg_key(m.record)?, m.record.name.clone())))
            .collect()
    }

    /// Active hosts other than this node (a lent relay is not one).
    fn peer_members(&self) -> Vec<federation::Member<'_>> {
        self.roster
            .hosts(self.now_ms)
            .into_iter()
            .filter(|m| m.status == Status::Active && m.id != self.me)
            .collect()
    }

    /// The path to `key` as users see it: `direct`, or `relay` and the
    /// relay's key.
    fn route(&self, key: &PublicKey) -> (&'static str, Option<PublicKey>) {
        match self.node.route(key) {
            Some(Route::Relayed(relay)) => ("relay", Some(relay)),
            _ => ("direct", None),
        }
    }

    /// This node's view of its link to member `id`.
    pub fn link(&self, id: &NodeId, key: Option<&PublicKey>, info: Option<&PeerInfo>) -> Link {
        let w = self.prober.and_then(|p| p.window(id));
        Link {
            peer: *id,
            rtt_min_us: us(w.and_then(|w| w.min())),
            rtt_avg_us: us(w.and_then(|w| w.avg())),
            loss_permille: w.map_or(0, |w| w.loss_permille()),
            rx_bytes: info.map_or(0, |i| i.stats.rx_bytes),
            tx_bytes: info.map_or(0, |i| i.stats.tx_bytes),
            handshake_age_s: info
                .and_then(|i| i.stats.last_handshake)
                .map(|t| self.now.saturating_duration_since(t).as_secs()),
            path: key.map_or("direct", |k| self.route(k).0).into(),
        }
    }

    /// Links to every peer.
    pub fn links(&self) -> Vec<Link> {
        let infos = self.infos();
        self.peer_members()
            .iter()
            .map(|m| {
                let key = wg_key(m.record);
                self.link(&m.id, key.as_ref(), key.and_then(|k| infos.get(&k)))
            })
            .collect()
    }

    /// `status.relay`: what this node relayed, per agreement, and refused.
    fn relay(&self, c: netstack::NodeCounters) -> docs::Relay {
        let f = self.node.forwarding();
        let metered = f.metered();
        let by_partner = self
            .roster
            .numbered_partners()
            .filter_map(|(k, n)| {
                let bit = netstack::forwarding::theirs(k).trailing_zeros();
                let bytes = *metered.get(usize::try_from(bit).ok()?)?;
                let a = self.partners.agreement(&n)?;
                Some((a.side(&n)?.name.clone(), bytes))
            })
            .filter(|(_, bytes)| *bytes > 0)
            .collect();
        let refused = f.refused();
        docs::Relay {
            serves: self.node.serves_relay(),
            relayed_bytes: c.relayed_bytes,
            by_partner,
            refused: c.relay_refused,
            refused_unconnected: refused.unconnected,
            refused_over_bounds: refused.too_many_pairs.saturating_add(refused.over_rate),
        }
    }

    /// `status`.
    pub fn status(&self) -> docs::Status {
        let auth = self.ledger.authority();
        let c = self.node.counters();
        let me = self.ledger.member(&self.me, self.now_ms).map(|m| m.status);
        let verdict = crate::health::verdict(&self.health(me));
        docs::Status {
            verdict: verdict.line,
            healthy: verdict.healthy,
            name: self.own.name.clone(),
            standing: standing(me).into(),
            id: self.me.to_hex(),
            address: self.own.address.to_string(),
            network: auth.map(|a| a.name.clone()),
            network_id: self.ledger.network().id.to_string(),
            cidr: auth.map(|a| a.cidr.to_string()),
            mtu: self.own.mtu,
            mtu_reason: self.mtu_reason.into(),
            host_mtu: self.own.host_mtu,
            path_mtu: self.own.path_mtu,
            data_plane_mtu: self.node.device().mtu(),
            interface: self.iface.into(),
            listen: self.settings.listen.to_string(),
            control_listen: self.settings.control_listen.to_string(),
            endpoints: self.own.endpoints.iter().map(|e| e.to_string()).collect(),
            reflexive: self.own.reflexive.iter().map(|e| e.to_string()).collect(),
            advertise: self
                .settings
                .advertise
                .iter()
                .map(|a| a.to_string())
                .collect(),
            advertised: self.own.advertised.iter().map(|e| e.to_string()).collect(),
            control: self.own.control.iter().map(|e| e.to_string()).collect(),
            version: self.version,
            members: self
                .ledger
                .members(self.now_ms)
                .iter()
                .filter(|m| m.status == Status::Active)
                .count(),
            connected: self.connected.len(),
            authority: self.authority,
            rejected_records: self
                .ledger
                .rejected()
                .map(|(k, v)| (k.to_string(), v))
                .chain(
                    self.partners
                        .rejected()
                        .map(|(k, v)| (format!("partner_{k}"), v)),
                )
                .collect(),
            refused_outsiders: self.refused.clone(),
            relay: self.relay(c),
            echo: docs::Echo {
                answered: c.echo_answered,
                dropped: c.echo_dropped,
            },
            gossip: docs::Gossip {
                in_messages: self.traffic.in_messages,
                in_bytes: self.traffic.in_bytes,
                out_messages: self.traffic.out_messages,
                out_bytes: self.traffic.out_bytes,
            },
        }
    }

    /// What the health verdict is drawn from: this network's other
    /// active members as `members` and `peers` show them.
    fn health(&self, standing: Option<Status>) -> crate::health::Inputs {
        let paths: BTreeMap<String, String> =
            self.peers().into_iter().map(|p| (p.id, p.path)).collect();
        let mut inputs = crate::health::Inputs {
            standing,
            ..Default::default()
        };
        for m in self.ledger.members(self.now_ms) {
            if m.id == self.me || m.status != Status::Active {
                continue;
            }
            inputs.members += 1;
            let ahead = m
                .record
                .metrics
                .as_ref()
                .is_some_and(|x| x.sampled_ms > self.now_ms.saturating_add(CLOCK_SKEW_MS));
            if ahead {
                inputs.skewed.push(m.record.name.clone());
            }
            let seen =
                self.liveness
                    .seen(&m.id, m.status, self.connected.contains(&m.id), self.now);
            match seen {
                federation::liveness::Seen::Alive => {
                    inputs.alive += 1;
                    match paths.get(&m.id.to_hex()).map(String::as_str) {
                        Some("relay") => inputs.relayed += 1,
                        _ => inputs.direct += 1,
                    }
                }
                federation::liveness::Seen::Suspect => inputs.suspect += 1,
                _ => inputs.down.push(m.record.name.clone()),
            }
        }
        inputs
    }

    /// `members`: this network's, then the federated networks' members
    /// this node holds (those exposed to its network).
    pub fn members(&self) -> Vec<docs::Member> {
        let org = self
            .ledger
            .authority()
            .map(|a| a.name.clone())
            .unwrap_or_default();
        let own = self.ledger.members(self.now_ms).into_iter().map(|m| {
            let me = m.id == self.me;
            let state = if me && m.status == Status::Active {
                "alive"
            } else {
                self.liveness
                    .seen(&m.id, m.status, self.connected.contains(&m.id), self.now)
                    .label()
            };
            let last_seen_ms = if me {
                Some(0)
            } else {
                self.liveness.since(&m.id, self.now).map(millis)
            };
            member_doc(&m, &org, state, last_seen_ms, me)
        });
        let infos = self.infos();
        // Only partner members that are hosts to this node are listed (not
        // a partner's lent relays, nor anything on a node only lent).
        let hosts = self.partners.members(self.now_ms).into_iter();
        let partners = hosts.filter(|p| self.roster.is_host(&p.member)).map(|p| {
            // Partners are not in the liveness table: their tunnel tells.
            let handshake = wg_key(p.member.record)
                .and_then(|k| infos.get(&k))
                .and_then(|i| i.stats.last_handshake)
                .map(|t| self.now.saturating_duration_since(t));
            let state = match p.member.status {
                Status::Active if handshake.is_some_and(|h| h < PARTNER_ALIVE) => "alive",
                Status::Active => "unreached",
                other => standing(Some(other)),
            };
            member_doc(&p.member, p.org, state, handshake.map(millis), false)
        });
        own.chain(partners).collect()
    }

    /// `peers`.
    pub fn peers(&self) -> Vec<docs::Peer> {
        let infos = self.infos();
        let names = self.names_by_key();
        self.peer_members()
            .iter()
            .map(|m| {
                let key = wg_key(m.record);
                let info = key.and_then(|k| infos.get(&k));
                let l = self.link(&m.id, key.as_ref(), info);
                let relay = key.and_then(|k| self.route(&k).1);
                docs::Peer {
                    name: m.record.name.clone(),
                    id: m.id.to_hex(),
                    address: m.record.address.to_string(),
                    endpoint: info.and_then(|i| i.endpoint).map(|e| e.to_string()),
                    path: l.path.clone(),
                    relay: relay.and_then(|r| names.get(&r).cloned()),
                    rx_bytes: l.rx_bytes,
                    tx_bytes: l.tx_bytes,
                    rx_packets: info.map_or(0, |i| i.stats.rx_packets),
                    tx_packets: info.map_or(0, |i| i.stats.tx_packets),
                    handshakes: info.map_or(0, |i| i.stats.handshakes),
                    last_handshake_ms: info
                        .and_then(|i| i.stats.last_handshake)
                        .map(|t| millis(self.now.saturating_duration_since(t))),
                    rtt_ms: ms(l.rtt_avg_us),
                    rtt_min_ms: ms(l.rtt_min_us),
                    loss: f64::from(l.loss_permille) / 1000.0,
                }
            })
            .collect()
    }

    /// `metrics`: every member's published summary (ours fresh and
    /// complete rather than a sample).
    pub fn metrics(&self) -> docs::Metrics {
        let names: BTreeMap<NodeId, String> = self
            .ledger
            .members(self.now_ms)
            .iter()
            .map(|m| (m.id, m.record.name.clone()))
            .collect();
        let name = |id: &NodeId| names.get(id).cloned().unwrap_or_else(|| id.short());
        let mut own = self.metrics.cloned().unwrap_or_default();
        own.links = self.links();
        let mut view = docs::Metrics::default();
        for m in self.ledger.members(self.now_ms) {
            if m.status != Status::Active {
                continue;
            }
            let x = if m.id == self.me {
                Some(&own)
            } else {
                m.record.metrics.as_ref()
            };
            view.nodes.push(docs::NodeMetrics {
                name: m.record.name.clone(),
                id: m.id.to_hex(),
                address: m.record.address.to_string(),
                cpu_pct: x.map(|x| f64::from(x.cpu_permille) / 10.0),
                rss_kb: x.map(|x| x.rss_kb),
                uptime_s: x.map(|x| x.uptime_s),
                version: x.map(|x| x.version.clone()),
                sampled_ago_ms: x.map(|x| self.now_ms.saturating_sub(x.sampled_ms)),
            });
            for l in x.map(|x| x.links.as_slice()).unwrap_or_default() {
                view.rtt.push(docs::LinkMetrics {
                    from: m.record.name.clone(),
                    to: name(&l.peer),
                    rtt_ms: ms(l.rtt_avg_us),
                    rtt_min_ms: ms(l.rtt_min_us),
                    loss: f64::from(l.loss_permille) / 1000.0,
                    path: l.path.clone(),
                });
            }
        }
        view
    }

    /// `host_networks`: every active member's, sorted.
    pub fn host_networks(&self) -> docs::HostNetworks {
        let nets: BTreeSet<federation::Cidr> = self
            .ledger
            .members(self.now_ms)
            .iter()
            .filter(|m| m.status == Status::Active)
            .flat_map(|m| m.record.host_networks.iter().copied())
            .collect();
        docs::HostNetworks {
            host_networks: nets.into_iter().collect(),
        }
    }

    /// The data plane's drops by reason.
    pub fn dropped(&self) -> BTreeMap<String, u64> {
        let c = self.node.device().counters();
        DropReason::ALL
            .iter()
            .map(|r| (r.label().to_string(), c.dropped(*r)))
            .collect()
    }
}
