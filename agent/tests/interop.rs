//! Interoperability: cladnet <-> wireguard-go and cladnet <-> boringtun-cli,
//! each handshake direction, ping and iperf3 both ways.

mod common;

use anyhow::{anyhow, ensure, Context, Result};
use common::*;
use std::path::Path;
use std::time::Duration;
use testbed::wg::{self, Kind};
use testbed::{skip_unless_root, wire};

/// Keys are interchangeable with wg(8)'s (no root needed).
#[test]
fn keys_match_wg_tools() -> Result<()> {
    let k = wg::KeyPair::generate_with(Path::new(bin()))?;
    ensure!(
        wire::decode_key(&k.private).is_ok(),
        "genkey output is not a base64 32-byte key: {:?}",
        k.private
    );
    let expect = wire::encode_key(&wire::public_key(&wire::decode_key(&k.private)?));
    ensure!(
        k.public == expect,
        "cladnet pubkey {} != X25519 public key {expect}",
        k.public
    );
    if testbed::find_program("wg", "WG").is_some() {
        let via_wg = wg::pubkey_with(Path::new("wg"), &k.private)?;
        ensure!(
            via_wg == k.public,
            "wg pubkey {via_wg} != cladnet pubkey {}",
            k.public
        );
        let wk = wg::KeyPair::generate_with(Path::new("wg"))?;
        let ours = wg::pubkey_with(Path::new(bin()), &wk.private)?;
        ensure!(
            ours == wk.public,
            "cladnet pubkey of a wg key {ours} != {}",
            wk.public
        );
    }
    Ok(())
}

/// Pings node `from` -> `to` while capturing on `to`'s underlay; returns the
/// WireGuard message type of the first datagram `to` received (1 = the
/// handshake was initiated by `from`).
fn first_ping_capturing(m: &Mesh, from: usize, to: usize) -> Result<u8> {
    let to_ip = m.lab.addr(&m.nodes[to]);
    std::thread::scope(|s| -> Result<u8> {
        let cap = s.spawn(|| {
            wire::capture_udp(
                &m.lab,
                &m.nodes[to],
                to_ip,
                PORT,
                1,
                Duration::from_secs(12),
            )
        });
        std::thread::sleep(Duration::from_millis(300)); // sniffer ready
        let pinged = m.ping(from, to, FIRST_PING);
        let got = cap
            .join()
            .map_err(|_| anyhow!("capture thread panicked"))??;
        pinged?;
        let first = got.first().context("captured nothing on the underlay")?;
        Ok(first[0])
    })
}

fn traffic_both_ways(m: &Mesh, peer: &str) -> Result<()> {
    m.ping(0, 1, FIRST_PING)?;
    m.ping(1, 0, FIRST_PING)?;
    for (srv, cli) in [(1usize, 0usize), (0, 1)] {
        let _s = wg::iperf3_server(&m.lab, &m.nodes[srv], ov(srv))?;
        let bps = wg::iperf3(&m.lab, &m.nodes[cli], ov(srv), 3, false)
            .with_context(|| format!("iperf3 node {cli} -> node {srv}"))?;
        eprintln!(
            "interop {peer}: iperf3 node {cli} -> node {srv}: {:.1} Mbit/s",
            bps / 1e6
        );
        ensure!(bps > 0.0, "zero throughput {cli} -> {srv}");
    }
    Ok(())
}

fn interop_with(peer: Option<Kind>, name: &str) -> Result<()> {
    let peer = peer.ok_or_else(|| anyhow!("{name} not installed: scripts/test.sh installs it"))?;
    let mut m = Mesh::new(&[ours(), peer])?;
    let r = run(&mut m, name);
    m.lab.check(r)
}

fn run(m: &mut Mesh, name: &str) -> Result<()> {
    // Phase 1: cladnet (node 0) initiates.
    m.start(0, "a")?;
    m.start(1, "b")?;
    let ty = first_ping_capturing(m, 0, 1)?;
    ensure!(
        ty == 1,
        "{name}: first datagram at the peer should be an initiation from cladnet, got type {ty}"
    );
    traffic_both_ways(m, name)?;
    let p = m.peer_view(0, 1)?;
    ensure!(
        !p["last_handshake_ms"].is_null(),
        "cladnet reports no handshake with {name}: {p}"
    );
    let p = m.peer_view(1, 0)?;
    ensure!(
        !p["last_handshake_ms"].is_null(),
        "{name} reports no handshake with cladnet: {p}"
    );
    m.assert_alive(0)?;
    m.assert_alive(1)?;

    // Phase 2: both restarted (no session), the peer initiates.
    let st = m.stop(0)?;
    ensure!(st.success(), "cladnet exited with {st} on SIGTERM");
    m.stop(1)?;
    m.start(1, "b2")?;
    m.start(0, "a2")?;
    let ty = first_ping_capturing(m, 1, 0)?;
    ensure!(
        ty == 1,
        "{name}: first datagram at cladnet should be an initiation from {name}, got type {ty}"
    );
    traffic_both_ways(m, name)?;
    let p = m.peer_view(0, 1)?;
    ensure!(
        !p["last_handshake_ms"].is_null(),
        "cladnet reports no handshake with {name} (responder side): {p}"
    );
    m.assert_alive(0)?;
    m.assert_alive(1)?;
    Ok(())
}

#[test]
fn interop_wireguard_go() -> Result<()> {
    if skip_unless_root("interop_wireguard_go") {
        return Ok(());
    }
    interop_with(Kind::wireguard_go(), "wireguard-go")
}

#[test]
fn interop_boringtun() -> Result<()> {
    if skip_unless_root("interop_boringtun") {
        return Ok(());
    }
    interop_with(Kind::boringtun(), "boringtun-cli")
}
