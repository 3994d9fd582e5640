//! The agent daemon in static (wg-quick file) mode: builds the device from
//! the configuration, creates and configures the TUN interface, binds the
//! UDP port, starts the data plane and the control socket, and runs until
//! SIGINT or SIGTERM.

use crate::members::MemberKeys;
use crate::wgconfig::WgConfig;
use crate::{api, dataplane, uapi};
use anyhow::{Context, Result};
use drivers::netlink::Netlink;
use drivers::tun::Tun;
use drivers::udp::Udp;
use netstack::{Device, DeviceConfig, PeerConfig, PrivateKey, PublicKey};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Default MTU of the overlay: 1500 minus IPv6 + UDP + WireGuard overhead.
const DEFAULT_MTU: u16 = 1420;
/// Handshake messages per second before cookies are demanded.
const HANDSHAKE_LOAD_LIMIT: u32 = 200;

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

fn build_device(config: &WgConfig, mtu: u16) -> Device {
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let mut device = Device::new(
        DeviceConfig {
            private_key: PrivateKey(config.interface.private_key),
            mtu: usize::from(mtu),
            handshake_load_limit: HANDSHAKE_LOAD_LIMIT,
        },
        Instant::now(),
        wall,
    );
    for p in &config.peers {
        device.upsert_peer(PeerConfig {
            public_key: PublicKey(p.public_key),
            preshared_key: p.preshared_key,
            endpoint: p.endpoint,
            allowed_ips: p.allowed_ips.clone(),
            persistent_keepalive: p
                .persistent_keepalive
                .map(|s| Duration::from_secs(u64::from(s))),
        });
    }
    device
}

/// Runs the agent until a termination signal.
pub fn run(config: WgConfig, iface: &str, socket: &Path) -> Result<()> {
    // Sockets and files the agent creates are root-only from the start.
    // SAFETY: umask has no memory effects; called before any thread starts.
    unsafe { libc::umask(0o077) };
    for key in &config.ignored_keys {
        tracing::warn!("ignoring wg-quick key {key}: cladnet does not run scripts or change DNS/routing tables");
    }
    let mtu = config.interface.mtu.unwrap_or(DEFAULT_MTU);
    let device = build_device(&config, mtu);
    if config
        .peers
        .iter()
        .any(|p| PublicKey(p.public_key) == device.public_key())
    {
        anyhow::bail!("a [Peer] has this node's own public key: remove that section");
    }
    let port = config.interface.listen_port.unwrap_or(0);
    let udp = Udp::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?;
    let listen_port = udp
        .local_addr()
        .context("cannot read the bound UDP port")?
        .port();
    let tun = Tun::create(iface, mtu)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(configure_interface(&tun, &config, mtu))?;
    let info = Interface {
        name: tun.name().to_string(),
        listen_port,
        mtu,
        offload: tun.offload(),
    };
    tracing::info!(
        iface = %info.name, port = listen_port, mtu, offload = info.offload,
        public_key = %device.public_key(), peers = config.peers.len(), "cladnet agent up"
    );
    // Plain WireGuard peers have no member list: nobody is answered or
    // relayed.
    let members = Arc::new(MemberKeys::new(device.private_key().clone()));
    let (echo, _) = crate::echo::Echo::new(members.clone());
    let device = Arc::new(Mutex::new(device));
    let udp = Arc::new(udp);
    let relays = Arc::new(crate::relays::Relays::new(false, members));
    dataplane::start(&tun, &udp, &device, &relays, &Arc::new(echo))
        .context("cannot start the data plane threads")?;
    let wg_socket = uapi::socket_path(iface);
    runtime.block_on(async {
        let port = info.listen_port;
        let control_framing = api::Framing {
            terminator: "\n",
            max: api::MAX_REQUEST,
            incomplete: "{\"error\": \"request too long or not ended by a newline\"}\n",
        };
        let control = api::serve(socket, device.clone(), control_framing, move |d, r| {
            api::answer(d, &info, r)
        });
        let wg_framing = api::Framing {
            terminator: "\n\n",
            max: uapi::MAX_REQUEST,
            incomplete: uapi::INCOMPLETE,
        };
        let wg = api::serve(&wg_socket, device.clone(), wg_framing, move |d, r| {
            uapi::handle(d, port, r, Instant::now())
        });
        tokio::select! {
            r = control => r,
            r = wg => r,
            r = shutdown_signal() => r,
        }
    })?;
    let _ = std::fs::remove_file(socket);
    let _ = std::fs::remove_file(&wg_socket);
    tracing::info!("cladnet agent stopped; interface {iface} removed");
    drop(tun);
    Ok(())
}

/// Runs a network member from its state directory until a termination
/// signal or `leave`.
pub fn run_mesh(
    dir: &Path,
    iface: &str,
    metrics_listen: Option<SocketAddr>,
    relay: bool,
) -> Result<()> {
    // SAFETY: umask has no memory effects; called before any thread starts.
    unsafe { libc::umask(0o077) };
    let node = crate::statedir::Node::load(dir)?;
    let (own, _) = node.own()?;
    if own.left_ms.is_some() {
        anyhow::bail!("this node left its network; join again with a new --state directory");
    }
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let device = Device::new(
        DeviceConfig {
            private_key: PrivateKey(node.wg.0),
            mtu: usize::from(own.mtu),
            handshake_load_limit: HANDSHAKE_LOAD_LIMIT,
        },
        Instant::now(),
        wall,
    );
    let udp = Udp::bind(node.settings.listen)?;
    let tun = Tun::create(iface, own.mtu)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let control: libp2p::Multiaddr = crate::inventory::quic_multiaddr(node.settings.control_listen)
        .parse()
        .context("the control listen address cannot be expressed as a QUIC address")?;
    let device = Arc::new(Mutex::new(device));
    let udp = Arc::new(udp);
    let members = Arc::new(MemberKeys::new(PrivateKey(node.wg.0)));
    let relays = Arc::new(crate::relays::Relays::new(relay, members.clone()));
    let (echo, answers) = crate::echo::Echo::new(members.clone());
    let echo = Arc::new(echo);
    let result = runtime.block_on(async {
        let netlink = Netlink::connect(tun.name())?;
        netlink.set_up(tun.index(), u32::from(own.mtu)).await?;
        let shell =
            federation::net::Shell::start(node.key.seed(), &node.network.id, Some(control))?;
        tracing::info!(
            iface = %tun.name(), name = %own.name, id = %node.key.id().short(),
            address = %own.address, listen = %node.settings.listen,
            control = %node.settings.control_listen, "cladnet agent up"
        );
        dataplane::start(&tun, &udp, &device, &relays, &echo)
            .context("cannot start the data plane threads")?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let local_socket = crate::statedir::socket_path(dir);
        let http = crate::mesh::serve_http(metrics_listen, tx.clone());
        let local = crate::mesh::serve_local(&local_socket, tx);
        let mesh = crate::mesh::Mesh::new(
            node,
            shell,
            device.clone(),
            crate::mesh::Reach {
                members,
                relays: relays.clone(),
                echo,
                answers,
                udp: udp.clone(),
            },
            netlink,
            tun.index(),
            tun.name().to_string(),
        )?;
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(0);
        let wg_framing = api::Framing {
            terminator: "\n\n",
            max: uapi::MAX_REQUEST,
            incomplete: uapi::INCOMPLETE,
        };
        let wg_socket = uapi::socket_path(iface);
        let wg = api::serve(&wg_socket, device.clone(), wg_framing, move |d, r| {
            uapi::handle(d, port, r, Instant::now())
        });
        let r = tokio::select! {
            r = mesh.run(rx, shutdown_signal()) => r,
            r = local => r,
            r = wg => r,
            r = http => r,
        };
        let _ = std::fs::remove_file(&wg_socket);
        r
    });
    let _ = std::fs::remove_file(crate::statedir::socket_path(dir));
    drop(tun);
    tracing::info!("cladnet agent stopped; interface {iface} removed");
    result
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

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
        _ = term.recv() => {}
    }
    tracing::info!("signal received, shutting down");
    Ok(())
}
