//! The agent as a network member: loads the state directory, creates the
//! TUN interface, binds the sockets, starts the data plane, the control
//! plane and the local sockets, and runs the event loop
//! ([`event_loop::EventLoop`], which drives the sans-IO
//! [`crate::member::Member`]) until SIGINT, SIGTERM or `leave`.

mod answers;
mod apply;
mod auto;
mod event_loop;
mod events;
mod names;
mod paths;
mod read;
pub mod startup;
mod storage;

use crate::api::{self, LocalRequest};
use crate::statedir::StateDir;
use anyhow::Result;
use drivers::netlink::Netlink;
use netstack::PrivateKey;
use std::net::SocketAddr;
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

/// Serves the local API on `path`: each request goes to the control loop
/// through `to_loop`, its answer line back.
async fn serve_local(path: &Path, to_loop: mpsc::Sender<LocalRequest>) -> Result<()> {
    api::serve(path, api::JSON_LINES, move |line| {
        let to_loop = to_loop.clone();
        async move {
            let request = match api::read_request(&line) {
                Ok(r) => r,
                Err(answer) => return answer,
            };
            let (reply, answer) = oneshot::channel();
            if to_loop.send(LocalRequest { request, reply }).await.is_err() {
                return api::error("the agent is shutting down");
            }
            answer
                .await
                .unwrap_or_else(|_| api::error("the agent is shutting down"))
        }
    })
    .await
}

/// Runs a network member from its state directory until a termination
/// signal or `leave`.
pub fn run(dir: &Path, iface: &str, metrics_listen: Option<SocketAddr>, relay: bool) -> Result<()> {
    if !crate::process::privileged() {
        anyhow::bail!("{}", crate::process::NEEDS_ROOT);
    }
    startup::private_files();
    let state = StateDir::load(dir)?;
    // The agent's flags win over what `cladnet set` stored.
    let metrics_listen = metrics_listen.or(state.settings.metrics_listen);
    let relay = relay && !state.settings.no_relay;
    let (own, _) = state.own()?;
    if own.left_ms.is_some() {
        anyhow::bail!("this node left its network; join again with a new --state directory");
    }
    let moved = |flag: &str, addr: SocketAddr| {
        anyhow::anyhow!(
            "UDP {addr} is already in use (another agent, or WireGuard?): stop that program, or move this node with `cladnet set {flag} 0.0.0.0:PORT --state {}`",
            dir.display()
        )
    };
    let control = state.settings.control_listen;
    let start = startup::Start {
        iface,
        mtu: own.mtu,
        node: crate::dataplane::node(PrivateKey(state.wg.0), own.mtu, relay),
        listen: state.settings.listen,
        port_taken: &|addr| moved("--listen", addr),
        // The control plane binds inside libp2p: a taken port is found
        // here, where it can be said in words.
        also_free: &|| match std::net::UdpSocket::bind(control) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                Err(moved("--control-listen", control))
            }
            _ => Ok(()),
        },
    };
    startup::run(start, |up| async move {
        let netlink = Netlink::connect(&up.iface)?;
        netlink.set_up(up.index, u32::from(own.mtu)).await?;
        let shell = federation::net::Shell::member(
            state.key.seed(),
            &state.network.id,
            state.settings.control_listen,
        )?;
        tracing::info!(
            iface = %up.iface, name = %own.name, id = %state.key.id().short(),
            address = %own.address, listen = %state.settings.listen,
            control = %state.settings.control_listen, "cladnet agent up"
        );
        let (tx, rx) = mpsc::channel(16);
        let local_socket = crate::statedir::socket_path(dir);
        let http = crate::exposition::serve_http(metrics_listen, tx.clone());
        let local = serve_local(&local_socket, tx);
        let event_loop = event_loop::EventLoop::new(event_loop::Parts {
            state,
            shell,
            data: (up.data, up.events),
            netlink,
            tun_index: up.index,
            iface: up.iface,
        })?;
        tokio::select! {
            r = event_loop.run(rx, std::future::pending()) => r,
            r = local => r,
            r = http => r,
        }
    })
}
