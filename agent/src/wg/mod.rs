//! WireGuard-file mode: a node run from a wg-quick configuration with
//! static peers ([`config`]), WireGuard's own userspace API on its socket
//! ([`uapi`]), and `show`. Builds the data plane from the configuration
//! and starts it the way a member starts ([`crate::daemon::startup`]),
//! then gives the interface its addresses and routes and serves `show`.

pub mod config;
pub mod uapi;

use crate::api::{self, docs, Request};
use crate::dataplane;
use anyhow::Result;
use config::WgConfig;
use drivers::netlink::Netlink;
use netstack::{Device, DropReason, Node, PeerConfig, PrivateKey, PublicKey};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// Static facts about the running interface, for `show`.
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Bound UDP port.
    pub listen_port: u16,
    /// Overlay MTU.
    pub mtu: u16,
    /// Whether the TUN device runs with TSO/GRO offloads.
    pub offload: bool,
}

fn build(config: &WgConfig, mtu: u16) -> Node {
    let mut node = dataplane::node(PrivateKey(config.interface.private_key), mtu, false);
    for p in &config.peers {
        node.device_mut().upsert_peer(PeerConfig {
            public_key: PublicKey(p.public_key),
            preshared_key: p.preshared_key,
            endpoint: p.endpoint,
            allowed_ips: p.allowed_ips.clone(),
            persistent_keepalive: p
                .persistent_keepalive
                .map(|s| Duration::from_secs(u64::from(s))),
        });
    }
    node
}

/// The `show` document: interface, peers and counters.
pub fn show(device: &Device, iface: &Interface, now: Instant) -> docs::Show {
    let peers = device
        .peers()
        .map(|p| docs::ShowPeer {
            public_key: p.public_key.to_base64(),
            endpoint: p.endpoint.map(|e| e.to_string()),
            allowed_ips: p.allowed_ips.iter().map(|n| n.to_string()).collect(),
            rx_bytes: p.stats.rx_bytes,
            tx_bytes: p.stats.tx_bytes,
            handshakes: p.stats.handshakes,
            last_handshake_ms: p
                .stats
                .last_handshake
                .map(|t| docs::millis(now.saturating_duration_since(t))),
            persistent_keepalive_s: p.persistent_keepalive.map(|d| d.as_secs()),
        })
        .collect();
    let c = device.counters();
    docs::Show {
        interface: iface.name.clone(),
        public_key: device.public_key().to_base64(),
        listen_port: iface.listen_port,
        mtu: iface.mtu,
        offload: iface.offload,
        peers,
        counters: docs::ShowCounters {
            rx_datagrams: c.rx_datagrams,
            tx_datagrams: c.tx_datagrams,
            initiations_sent: c.initiations_sent,
            cookie_replies: c.cookie_replies,
            dropped_total: c.dropped_total(),
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.label().to_string(), c.dropped(*r)))
                .collect(),
        },
    }
}

/// Runs the agent until a termination signal.
pub fn run(config: WgConfig, iface: &str, socket: &Path) -> Result<()> {
    crate::daemon::startup::private_files();
    for key in &config.ignored_keys {
        tracing::warn!("ignoring wg-quick key {key}: cladnet does not run scripts or change DNS/routing tables");
    }
    let mtu = config.interface.mtu.unwrap_or(crate::statedir::DEFAULT_MTU);
    let node = build(&config, mtu);
    let own = node.device().public_key();
    if config.peers.iter().any(|p| PublicKey(p.public_key) == own) {
        anyhow::bail!("a [Peer] has this node's own public key: remove that section");
    }
    let port = config.interface.listen_port.unwrap_or(0);
    let start = crate::daemon::startup::Start {
        iface,
        mtu,
        node,
        listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        // The driver's sentence names ListenPort.
        port_taken: &|addr| drivers::DriverError::PortInUse { addr }.into(),
        also_free: &|| Ok(()),
    };
    crate::daemon::startup::run(start, |up| async move {
        configure_interface(&up.iface, up.index, &config, mtu).await?;
        let info = Interface {
            name: up.iface.clone(),
            listen_port: up.port,
            mtu,
            offload: up.offload,
        };
        tracing::info!(
            iface = %info.name, port = up.port, mtu, offload = info.offload,
            public_key = %own, peers = config.peers.len(), "cladnet agent up"
        );
        let shared = up.data;
        api::serve(socket, api::JSON_LINES, move |line| {
            let answer = match api::read_request(&line) {
                Ok(Request::Show) => {
                    shared.with(|n| api::answer(&show(n.device(), &info, Instant::now())))
                }
                Ok(other) => api::error(&format!(
                    "`{}` needs a network member (--state); this agent runs a WireGuard file",
                    other.name()
                )),
                Err(e) => e,
            };
            async move { answer }
        })
        .await
    })
}

async fn configure_interface(iface: &str, index: u32, config: &WgConfig, mtu: u16) -> Result<()> {
    let nl = Netlink::connect(iface)?;
    for a in &config.interface.addresses {
        nl.add_address(index, a.addr, a.prefix).await?;
    }
    nl.set_up(index, u32::from(mtu)).await?;
    let covered = |net: &netstack::IpNet| {
        config
            .interface
            .addresses
            .iter()
            .any(|a| a.masked() == net.masked() && a.prefix == net.prefix)
    };
    for p in &config.peers {
        for net in p.allowed_ips.iter().filter(|n| !covered(n)) {
            nl.add_route(index, net.masked().addr, net.prefix).await?;
        }
    }
    Ok(())
}
