//! Flat LAN lab: three cladnet nodes in a full mesh on one underlay switch.

mod common;

use anyhow::{ensure, Result};
use common::*;
use testbed::{skip_unless_root, wg};

#[test]
fn flat_lab() -> Result<()> {
    if skip_unless_root("flat_lab") {
        return Ok(());
    }
    let k = ours();
    let mut m = Mesh::new(&[k.clone(), k.clone(), k])?;
    let r = run(&mut m);
    m.lab.check(r)
}

fn run(m: &mut Mesh) -> Result<()> {
    // Beyond the plain mesh: node b has a second address in another subnet
    // that a reaches through an extra AllowedIPs entry (a route the agent
    // must add), and node c runs with a smaller MTU.
    m.confs[1].addresses.push("100.64.9.2/24".into());
    m.confs[0].peers[0].allowed_ips.push("100.64.9.0/24".into());
    m.confs[2].mtu = Some(1380);
    m.start_all()?;

    // Every ordered pair answers over the overlay.
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                m.ping(i, j, FIRST_PING)?;
            }
        }
    }

    // The extra subnet behind b, via the route for its AllowedIPs.
    let a_if = m.t(0)?.ifname.clone();
    let route = m
        .lab
        .run(&m.nodes[0], &["ip", "route", "get", "100.64.9.2"])?;
    ensure!(
        route.contains(&format!("dev {a_if}")),
        "no route to b's AllowedIPs 100.64.9.0/24 via {a_if}: {route}"
    );
    ensure!(
        m.lab.wait_ping(&m.nodes[0], "100.64.9.2", FIRST_PING),
        "a cannot reach b's second address 100.64.9.2"
    );

    // Full-size packets, no fragmentation: 1420 (a<->b) and 1380 (c).
    for (i, j, size) in [
        (0, 1, "1392"),
        (1, 0, "1392"),
        (2, 0, "1352"),
        (0, 2, "1352"),
    ] {
        let dst = ov(j).to_string();
        m.lab.run(
            &m.nodes[i],
            &[
                "ping", "-n", "-q", "-M", "do", "-s", size, "-c", "2", "-W", "2", &dst,
            ],
        )?;
    }

    // 1 MiB of random bytes over HTTP, a -> c.
    m.lab
        .http_transfer(&m.nodes[0], ov(0), &m.nodes[2], 1 << 20)?;

    // iperf3 TCP both directions between a and b.
    let _srv = wg::iperf3_server(&m.lab, &m.nodes[1], ov(1))?;
    let up = wg::iperf3(&m.lab, &m.nodes[0], ov(1), 3, false)?;
    let down = wg::iperf3(&m.lab, &m.nodes[0], ov(1), 3, true)?;
    eprintln!(
        "flat_lab: iperf3 a->b {:.1} Mbit/s, b->a {:.1} Mbit/s",
        up / 1e6,
        down / 1e6
    );
    ensure!(
        up > 0.0 && down > 0.0,
        "iperf3 throughput zero: {up} / {down}"
    );

    // show --json: every peer handshaken, bytes both ways, sane header.
    for i in 0..3 {
        m.assert_alive(i)?;
        let s = m.show(i)?;
        eprintln!("flat_lab: node {i} show: {s}");
        let t = m.t(i)?;
        ensure!(
            s["interface"] == t.ifname.as_str(),
            "interface name wrong: {s}"
        );
        ensure!(
            s["public_key"] == m.keys[i].public.as_str(),
            "public key wrong: {s}"
        );
        ensure!(
            u64_at(&s, "/listen_port")? == u64::from(PORT),
            "listen_port wrong: {s}"
        );
        for j in (0..3).filter(|j| *j != i) {
            let p = m.peer_view(i, j)?;
            ensure!(
                !p["last_handshake_ms"].is_null(),
                "node {i}: no handshake with {j}: {p}"
            );
            ensure!(
                u64_at(&p, "/rx_bytes")? > 0 && u64_at(&p, "/tx_bytes")? > 0,
                "node {i}: no bytes with {j}: {p}"
            );
            let ep = format!("{}:{PORT}", m.lab.addr(&m.nodes[j]));
            ensure!(
                p["endpoint"] == ep.as_str(),
                "node {i}: endpoint of {j} should be {ep}: {p}"
            );
            let want: Vec<&str> = m.confs[i]
                .peers
                .iter()
                .find(|c| c.public_key == m.keys[j].public)
                .map(|c| c.allowed_ips.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let got: Vec<&str> = p["allowed_ips"]
                .as_array()
                .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            ensure!(
                got == want,
                "node {i}: allowed_ips of {j} {got:?} != {want:?}"
            );
        }
        if m.kinds[i].is_cladnet() {
            let mtu = m.confs[i].mtu.unwrap_or(1420);
            ensure!(
                u64_at(&s, "/mtu")? == u64::from(mtu),
                "MTU should be {mtu}: {s}"
            );
            ensure!(
                u64_at(&s, "/counters/rx_datagrams")? > 0,
                "rx_datagrams zero: {s}"
            );
            ensure!(
                u64_at(&s, "/counters/tx_datagrams")? > 0,
                "tx_datagrams zero: {s}"
            );
            u64_at(&s, "/counters/dropped_total")?;
            let link = m
                .lab
                .run(&m.nodes[i], &["ip", "-o", "link", "show", "dev", &t.ifname])?;
            ensure!(
                link.contains(&format!("mtu {mtu} ")),
                "device MTU not {mtu}: {link}"
            );
        }
    }

    // Clean shutdown: exit 0 on SIGTERM and the device is gone.
    let ifname = m.t(0)?.ifname.clone();
    let st = m.stop(0)?;
    ensure!(st.success(), "node a exited with {st} on SIGTERM");
    ensure!(
        !m.lab
            .ok(&m.nodes[0], &["ip", "link", "show", "dev", &ifname]),
        "device {ifname} still present after the agent exited"
    );
    Ok(())
}
