//! One startup for both ways to run the agent (a network member, a
//! WireGuard file): files created root-only, the UDP socket bound (a taken
//! port said in words), the TUN interface created, the data plane threads
//! started, WireGuard's UAPI served (when no other agent serves that
//! path), then the mode runs until it ends or SIGINT/SIGTERM, and the
//! interface goes with the agent.

use crate::dataplane::{self, Shared};
use anyhow::{Context, Result};
use drivers::tun::Tun;
use drivers::udp::Udp;
use netstack::node::Event as NodeEvent;
use netstack::Node;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;
use tokio::sync::mpsc;

/// What the agent is started with.
pub struct Start<'a> {
    /// The TUN interface's name.
    pub iface: &'a str,
    /// Its MTU.
    pub mtu: u16,
    /// The data plane, configured.
    pub node: Node,
    /// The WireGuard UDP address.
    pub listen: SocketAddr,
    /// What to say when that port is taken.
    pub port_taken: &'a dyn Fn(SocketAddr) -> anyhow::Error,
    /// What else must be free, checked once that port is bound (member
    /// mode: the control plane's port), so a taken port is said in the
    /// same order whatever the mode.
    pub also_free: &'a dyn Fn() -> Result<()>,
}

/// What a mode runs with once the data plane is up.
pub struct Running {
    /// The TUN interface's name.
    pub iface: String,
    /// Its index.
    pub index: u32,
    /// Whether it runs with TSO/GRO offloads.
    pub offload: bool,
    /// The data plane.
    pub data: Shared,
    /// What the data plane reports.
    pub events: mpsc::Receiver<NodeEvent>,
    /// The bound UDP port.
    pub port: u16,
}

/// Sets the umask so the agent's sockets and files are root-only.
pub fn private_files() {
    // SAFETY: umask has no memory effects; called before any thread starts.
    unsafe { libc::umask(0o077) };
}

/// Brings the data plane up as `start` says and runs `mode` on it until
/// it ends or a termination signal comes.
pub fn run<F, Fut>(start: Start<'_>, mode: F) -> Result<()>
where
    F: FnOnce(Running) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let udp = Udp::bind(start.listen).map_err(|e| match e {
        drivers::DriverError::PortInUse { addr } => (start.port_taken)(addr),
        other => other.into(),
    })?;
    (start.also_free)()?;
    let port = udp
        .local_addr()
        .context("cannot read the bound UDP port")?
        .port();
    let tun = Tun::create(start.iface, start.mtu)?;
    let runtime = crate::process::runtime()?;
    let (data, events) =
        dataplane::start(&tun, udp, start.node).context("cannot start the data plane threads")?;
    let running = Running {
        iface: tun.name().to_string(),
        index: tun.index(),
        offload: tun.offload(),
        data: data.clone(),
        events,
        port,
    };
    let result = runtime.block_on(async {
        let uapi = serve_uapi_if_free(start.iface, data, port);
        tokio::select! {
            r = mode(running) => r,
            r = uapi => r,
            r = crate::process::shutdown_signal() => r,
        }
    });
    drop(tun);
    tracing::info!("cladnet agent stopped; interface {} removed", start.iface);
    result
}

/// Serves WireGuard's UAPI for `iface`, so `wg show` sees this agent;
/// when another agent serves that path (the same interface name in
/// another network namespace: they share `/run`), says so and runs
/// without it. Never returns otherwise.
async fn serve_uapi_if_free(iface: &str, data: Shared, port: u16) -> Result<()> {
    let path = crate::wg::uapi::socket_path(iface);
    if let Err(e) = serve_uapi(&path, data, port).await {
        tracing::warn!("wg show will not see this agent: {e:#} (another agent with the interface name {iface} in another namespace? give one of them another --iface)");
    }
    std::future::pending().await
}

/// Serves WireGuard's UAPI on `path` for the data plane `shared`.
async fn serve_uapi(path: &Path, shared: Shared, port: u16) -> Result<()> {
    let framing = crate::api::Framing {
        terminator: "\n\n",
        max: crate::wg::uapi::MAX_REQUEST,
        incomplete: crate::wg::uapi::INCOMPLETE,
    };
    crate::api::serve(path, framing, move |request| {
        let answer = shared
            .with(|n| crate::wg::uapi::handle(n.device_mut(), port, &request, Instant::now()));
        async move { answer }
    })
    .await
}
