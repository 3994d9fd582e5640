//! What a member measures and shows about its peers: overlay probes, link
//! summaries published in its record, liveness, and the `peers` and
//! `metrics` views.

use super::*;

impl Mesh {
    /// Active members other than us, by id, with their overlay addresses.
    pub(super) fn peer_members(&self) -> Vec<(NodeId, std::net::Ipv4Addr)> {
        let me = self.node.key.id();
        self.ledger
            .members(now_ms())
            .iter()
            .filter(|m| m.status == Status::Active && m.id != me)
            .map(|m| (m.id, m.record.address))
            .collect()
    }

    /// Probes the next few peers (round robin) through the overlay.
    pub(super) fn probe_round(&mut self) {
        let peers = self.peer_members();
        let Some(prober) = self.prober.as_mut() else {
            return;
        };
        prober.expire(Instant::now());
        let ids: BTreeSet<NodeId> = peers.iter().map(|(id, _)| *id).collect();
        prober.retain(|k| ids.contains(k));
        if peers.is_empty() {
            return;
        }
        for i in 0..PROBES_PER_ROUND.min(peers.len()) {
            let (id, addr) = peers[(self.probe_cursor + i) % peers.len()];
            prober.send(id, addr);
        }
        self.probe_cursor = (self.probe_cursor + PROBES_PER_ROUND) % peers.len();
    }

    /// This node's view of one peer's link.
    pub(super) fn link(
        &self,
        id: &NodeId,
        info: Option<&netstack::PeerInfo>,
        now: Instant,
    ) -> Link {
        let w = self.prober.as_ref().and_then(|p| p.window(id));
        let us = |d: Option<Duration>| d.map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        Link {
            peer: *id,
            rtt_min_us: us(w.and_then(|w| w.min())),
            rtt_avg_us: us(w.and_then(|w| w.avg())),
            loss_permille: w.map_or(0, |w| w.loss_permille()),
            rx_bytes: info.map_or(0, |i| i.rx_bytes),
            tx_bytes: info.map_or(0, |i| i.tx_bytes),
            handshake_age_s: info
                .and_then(|i| i.last_handshake)
                .map(|t| now.saturating_duration_since(t).as_secs()),
            path: self.path_of(info.and_then(|i| i.endpoint)).0,
        }
    }

    /// Every member's WireGuard key, by id.
    pub(super) fn member_keys(&self) -> BTreeMap<NodeId, [u8; 32]> {
        self.ledger
            .members(now_ms())
            .iter()
            .filter_map(|m| m.record.chain.last().map(|c| (m.id, c.wg_key)))
            .collect()
    }

    /// Data-plane facts per peer key.
    pub(super) fn peer_infos(&self) -> BTreeMap<[u8; 32], netstack::PeerInfo> {
        lock(&self.device)
            .peers()
            .map(|p| (p.public_key.0, p))
            .collect()
    }

    /// Samples own CPU, memory and a rotating sample of links, and
    /// publishes them in the own record.
    pub(super) async fn publish_metrics(&mut self) {
        let now = Instant::now();
        let peers = self.peer_members();
        let infos = self.peer_infos();
        let keys = self.member_keys();
        // More peers than fit: publish a different slice each time.
        let skip = if peers.len() > MAX_LINKS {
            (self.version as usize).wrapping_mul(MAX_LINKS) % peers.len()
        } else {
            0
        };
        let links: Vec<Link> = peers
            .iter()
            .cycle()
            .skip(skip)
            .take(peers.len().min(MAX_LINKS))
            .map(|(id, _)| self.link(id, keys.get(id).and_then(|k| infos.get(k)), now))
            .collect();
        let (cpu_permille, next) = self.cpu.since();
        self.cpu = next;
        self.metrics = Metrics {
            sampled_ms: now_ms(),
            uptime_s: self.started.elapsed().as_secs(),
            cpu_permille,
            rss_kb: telemetry::rss_kb(),
            version: env!("CARGO_PKG_VERSION").into(),
            links,
        };
        self.own.metrics = Some(self.metrics.clone());
        self.metrics_due = now + federation::member::metrics_interval(peers.len() + 1);
        if let Err(e) = self.publish_own().await {
            tracing::warn!("cannot publish metrics: {e:#}");
        }
    }

    /// `peers`: this node's data-plane view of every active member.
    pub(super) fn peers(&self) -> Value {
        let now = Instant::now();
        let infos = self.peer_infos();
        let me = self.node.key.id();
        let list: Vec<Value> = self
            .ledger
            .members(now_ms())
            .iter()
            .filter(|m| m.status == Status::Active && m.id != me)
            .map(|m| {
                let info = m.record.chain.last().and_then(|c| infos.get(&c.wg_key));
                let l = self.link(&m.id, info, now);
                let ms = |us: Option<u32>| us.map(|u| f64::from(u) / 1000.0);
                json!({
                    "name": m.record.name,
                    "id": m.id.to_hex(),
                    "address": m.record.address.to_string(),
                    "endpoint": info.and_then(|i| i.endpoint).map(|e| e.to_string()),
                    "path": l.path,
                    "relay": self.path_of(info.and_then(|i| i.endpoint)).1,
                    "rx_bytes": l.rx_bytes,
                    "tx_bytes": l.tx_bytes,
                    "rx_packets": info.map_or(0, |i| i.rx_packets),
                    "tx_packets": info.map_or(0, |i| i.tx_packets),
                    "handshakes": info.map_or(0, |i| i.handshakes),
                    "last_handshake_ms": info.and_then(|i| i.last_handshake).map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    "rtt_ms": ms(l.rtt_avg_us),
                    "rtt_min_ms": ms(l.rtt_min_us),
                    "loss": f64::from(l.loss_permille) / 1000.0,
                })
            })
            .collect();
        Value::Array(list)
    }

    /// `metrics`: the network-wide view.
    pub(super) fn network_metrics(&self) -> Value {
        let mut own = self.metrics.clone();
        let now = Instant::now();
        let infos = self.peer_infos();
        let keys = self.member_keys();
        // Our own links are fresh, and complete rather than a sample.
        own.links = self
            .peer_members()
            .iter()
            .map(|(id, _)| self.link(id, keys.get(id).and_then(|k| infos.get(k)), now))
            .collect();
        telemetry::network_view(&self.ledger, self.node.key.id(), &own, now_ms())
    }

    /// The data plane's counters (drops by reason).
    pub(super) fn counters(&self) -> Value {
        let dev = lock(&self.device);
        let c = dev.counters();
        let dropped: serde_json::Map<String, Value> = netstack::DropReason::ALL
            .iter()
            .map(|r| (r.label().to_string(), json!(c.dropped(*r))))
            .collect();
        json!({"dropped": dropped})
    }

    /// Counts a member as heard from when its tunnel received something
    /// since the last look (keepalives every 25 s keep quiet tunnels alive),
    /// so liveness does not need a control connection to every member.
    pub(super) fn observe_tunnels(&mut self) {
        let by_key: BTreeMap<[u8; 32], NodeId> = self
            .member_keys()
            .into_iter()
            .map(|(id, k)| (k, id))
            .collect();
        let rx: Vec<(NodeId, u64)> = lock(&self.device)
            .peers()
            .filter_map(|p| by_key.get(&p.public_key.0).map(|id| (*id, p.rx_bytes)))
            .collect();
        for (id, bytes) in rx {
            if self
                .tunnel_rx
                .insert(id, bytes)
                .is_some_and(|before| before < bytes)
            {
                self.seen(id);
            }
        }
    }

    pub(super) fn liveness(&self, id: &NodeId, status: Status) -> (&'static str, Option<u64>) {
        let since = self.last_seen.get(id).map(|t| t.elapsed());
        let ms = since.map(|d| d.as_millis() as u64);
        let state = match status {
            Status::Left => "left",
            Status::Revoked | Status::Expired => "revoked",
            Status::Active if *id == self.node.key.id() => return ("alive", Some(0)),
            Status::Active if self.shell.is_connected(id) => "alive",
            Status::Active => match since {
                Some(d) if d < ALIVE_FOR => "alive",
                Some(d) if d < SUSPECT_FOR => "suspect",
                None if self.started.elapsed() < ALIVE_FOR => "suspect",
                _ => "down",
            },
        };
        (state, ms)
    }
}
