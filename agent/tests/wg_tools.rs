//! WireGuard's own tools drive a cladnet interface: `wg show` reads it and
//! `wg set` changes its peers at runtime, through the userspace API socket.

mod common;

use anyhow::{ensure, Result};
use common::*;
use std::time::Duration;

#[test]
fn wg_show_and_wg_set_work_on_cladnet() -> Result<()> {
    with_pair("wg_show_and_wg_set_work_on_cladnet", run)
}

fn run(m: &mut Mesh) -> Result<()> {
    m.start_all()?;
    m.ping(0, 1, FIRST_PING)?;
    let ifname = m.t(0)?.ifname.clone();
    let wg = |args: &[&str]| m.lab.run(&m.nodes[0], &[&["wg"], args].concat());
    // `wg show IFACE dump`: interface line, then one line per peer:
    // public-key psk endpoint allowed-ips latest-handshake rx tx keepalive
    let dump = wg(&["show", &ifname, "dump"])?;
    let peer_line = dump
        .lines()
        .find(|l| l.starts_with(&m.keys[1].public))
        .ok_or_else(|| anyhow::anyhow!("wg show lists no peer b:\n{dump}"))?;
    let f: Vec<&str> = peer_line.split('\t').collect();
    ensure!(f.len() >= 8, "short dump line {peer_line:?}");
    ensure!(
        f[2] == format!("{}:{PORT}", m.lab.addr(&m.nodes[1])),
        "endpoint {}",
        f[2]
    );
    ensure!(f[3] == "100.64.0.2/32", "allowed ips {}", f[3]);
    ensure!(
        f[4].parse::<u64>()? > 1_600_000_000,
        "handshake time {}",
        f[4]
    );
    ensure!(
        f[5].parse::<u64>()? > 0 && f[6].parse::<u64>()? > 0,
        "transfer {} {}",
        f[5],
        f[6]
    );

    // Removing the peer cuts the overlay; adding it back with `wg set` restores it.
    let pk = m.keys[1].public.clone();
    wg(&["set", &ifname, "peer", &pk, "remove"])?;
    ensure!(
        !m.lab.ping1(&m.nodes[0], ov(1)),
        "ping still works after `wg set ... remove`"
    );
    let endpoint = format!("{}:{PORT}", m.lab.addr(&m.nodes[1]));
    wg(&[
        "set",
        &ifname,
        "peer",
        &pk,
        "endpoint",
        &endpoint,
        "allowed-ips",
        "100.64.0.2/32",
    ])?;
    m.ping(0, 1, Duration::from_secs(10))?;
    let after = wg(&["show", &ifname, "peers"])?;
    ensure!(
        after.trim() == pk,
        "wg show peers after re-adding: {after:?}"
    );
    Ok(())
}
