//! WireGuard-file mode: a node run from a wg-quick configuration with
//! static peers ([`config`]), WireGuard's own userspace API on its socket
//! ([`uapi`]), and `show`. Builds the data plane from the configuration,
//! creates and configures the TUN interface, binds the UDP port, starts the
//! data plane and both sockets, and runs until SIGINT or SIGTERM.

pub mod config;
pub mod uapi;

use crate::api::{self, docs, Request};
use crate::dataplane::{self, Shared};
use anyhow::{Context, Result};
use config::WgConfig;
use drivers::netlink::Netlink;
use drivers::tun::Tun;
use drivers::udp::Udp;
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
    // Sockets and files the agent creates are root-only from the start.
    // SAFETY: umask has no memory effects; called before any thread starts.
    unsafe { libc::umask(0o077) };
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
    let udp = Udp::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?;
    let listen_port = udp
        .local_addr()
        .context("cannot read the bound UDP port")?
        .port();
    let tun = Tun::create(iface, mtu)?;
    let runtime = crate::process::runtime()?;
    runtime.block_on(configure_interface(&tun, &config, mtu))?;
    let info = Interface {
        name: tun.name().to_string(),
        listen_port,
        mtu,
        offload: tun.offload(),
    };
    tracing::info!(
        iface = %info.name, port = listen_port, mtu, offload = info.offload,
        public_key = %own, peers = config.peers.len(), "cladnet agent up"
    );
    let (shared, _events) =
        dataplane::start(&tun, udp, node).context("cannot start the data plane threads")?;
    let wg_socket = uapi::socket_path(iface);
    runtime.block_on(async {
        let control = {
            let shared = shared.clone();
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
        };
        let wg = serve_uapi(&wg_socket, shared.clone(), listen_port);
        tokio::select! {
            r = control => r,
            r = wg => r,
            r = crate::process::shutdown_signal() => r,
        }
    })?;
    tracing::info!("cladnet agent stopped; interface {iface} removed");
    drop(tun);
    Ok(())
}

/// Serves WireGuard's UAPI on `path` for the data plane `shared`.
pub async fn serve_uapi(path: &Path, shared: Shared, port: u16) -> Result<()> {
    let framing = api::Framing {
        terminator: "\n\n",
        max: uapi::MAX_REQUEST,
        incomplete: uapi::INCOMPLETE,
    };
    api::serve(path, framing, move |request| {
        let answer = shared.with(|n| uapi::handle(n.device_mut(), port, &request, Instant::now()));
        async move { answer }
    })
    .await
}

async fn configure_interface(tun: &Tun, config: &WgConfig, mtu: u16) -> Result<()> {
    let nl = Netlink::connect(tun.name())?;
    for a in &config.interface.addresses {
        nl.add_address(tun.index(), a.addr, a.prefix).await?;
    }
    nl.set_up(tun.index(), u32::from(mtu)).await?;
    let covered = |net: &netstack::IpNet| {
        config
            .interface
            .addresses
            .iter()
            .any(|a| a.masked() == net.masked() && a.prefix == net.prefix)
    };
    for p in &config.peers {
        for net in p.allowed_ips.iter().filter(|n| !covered(n)) {
            nl.add_route(tun.index(), net.masked().addr, net.prefix)
                .await?;
        }
    }
    Ok(())
}
