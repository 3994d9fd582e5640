//! Hostile input: a third namespace floods an agent's port with 20,000
//! invalid datagrams (garbage, truncated/random-typed messages, replays of
//! captured real datagrams, well-formed initiations from an unknown key).
//! The agent must survive, keep its real peer working, keep the peer's
//! endpoint, and count every datagram it dropped.

mod common;

use anyhow::{ensure, Result};
use common::*;
use std::net::SocketAddrV4;
use std::time::Duration;
use testbed::serde_json::Value;
use testbed::wg;
use testbed::wire::{self, Hostile};

#[test]
fn hostile_input() -> Result<()> {
    with_pair("hostile_input", run)
}

fn run(m: &mut Mesh) -> Result<()> {
    let attacker = m.lab.add_node("m")?;
    m.start_all()?;
    let (a, b) = (0, 1);
    let a_ul = m.lab.addr(&m.nodes[a]);
    let b_ul = m.lab.addr(&m.nodes[b]);
    let captured = m.capture_real_datagrams(a, b)?;
    m.ping(a, b, FIRST_PING)?;

    let before = m.show(a)?;
    let inerr0 = m.lab.udp_snmp(&m.nodes[a], "InErrors")?;
    let agent_pk = wire::decode_key(&m.keys[a].public)?;
    let mut rng = testbed::rng::Rng::from_time();
    let counts = [
        (Hostile::Garbage, 5000),
        (Hostile::TruncatedInit, 2500),
        (Hostile::RandomInit, 2500),
        (Hostile::RandomResponse, 2000),
        (Hostile::RandomCookie, 2000),
        (Hostile::RandomTransport, 3000),
        (Hostile::Replay, 2000),
        (Hostile::UnknownKeyInit, 1000),
    ];
    let set = wire::hostile_set(&mut rng, agent_pk, &captured, &counts)?;
    // Initiations with a valid mac1 cost the agent a Diffie-Hellman each
    // (slow in a debug build): they go slower. Everything is paced so that
    // most datagrams reach the agent rather than overflow its socket buffer;
    // kernel drops are measured and excluded below.
    let (heavy, light): (Vec<_>, Vec<_>) = set
        .into_iter()
        .partition(|(k, _)| *k == Hostile::UnknownKeyInit);
    let light: Vec<Vec<u8>> = light.into_iter().map(|(_, d)| d).collect();
    let heavy: Vec<Vec<u8>> = heavy.into_iter().map(|(_, d)| d).collect();
    let dst = SocketAddrV4::new(a_ul, PORT);
    let t0 = std::time::Instant::now();
    let pause = Duration::from_millis(2);
    let mut sent = wire::send_paced(&m.lab, &attacker, dst, &light, 10, pause)?;
    sent += wire::send_paced(&m.lab, &attacker, dst, &heavy, 2, pause)?;
    eprintln!(
        "hostile_input: sent {sent} of {} datagrams in {:?}",
        light.len() + heavy.len(),
        t0.elapsed()
    );

    // Kernel-side losses (socket buffer full) never reach the agent.
    let is_cladnet = m.kinds[a].is_cladnet();
    // An invalid datagram is either dropped (counted in dropped_total) or,
    // for a handshake initiation with a valid mac1 while the agent is under
    // load or its source is past its share, answered with a cookie reply
    // instead of being processed.
    let rejected = |v: &Value| -> u64 {
        let c = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        c("/counters/dropped_total") + c("/counters/cookie_replies")
    };
    let rejected0 = rejected(&before);
    let tolerance = (sent as u64) / 100; // 1 %
    let mut expect = 0;
    let mut after = before.clone();
    // Wait (bounded) until every datagram that reached the agent is accounted
    // for; judge with the tolerance afterwards.
    let mut exact = 0;
    testbed::wait_until(Duration::from_secs(10), || {
        let inerr = m.lab.udp_snmp(&m.nodes[a], "InErrors").unwrap_or(0);
        expect = (sent as u64)
            .saturating_sub(inerr.saturating_sub(inerr0))
            .saturating_sub(tolerance);
        let Ok(s) = m.show(a) else { return false };
        after = s;
        exact = expect + tolerance;
        !is_cladnet || rejected(&after) >= rejected0 + exact
    });
    let counted = !is_cladnet || rejected(&after) >= rejected0 + expect;

    eprintln!(
        "hostile_input: counters settled after {:?} (ok: {counted})",
        t0.elapsed()
    );
    m.assert_alive(a)?;
    m.assert_alive(b)?;
    m.ping(a, b, Duration::from_secs(10))?;
    m.ping(b, a, Duration::from_secs(10))?;
    let _srv = wg::iperf3_server(&m.lab, &m.nodes[a], ov(a))?;
    let bps = wg::iperf3(&m.lab, &m.nodes[b], ov(a), 2, false)?;
    ensure!(bps > 0.0, "no throughput after the flood");
    eprintln!(
        "hostile_input: traffic after the flood ok at {:?} ({:.1} Mbit/s)",
        t0.elapsed(),
        bps / 1e6
    );

    // Replayed datagrams came from the attacker: the endpoint must not move.
    let p = m.peer_view(a, b)?;
    let want_ep = format!("{b_ul}:{PORT}");
    ensure!(
        p["endpoint"] == want_ep.as_str(),
        "replays moved B's endpoint: A now has {} (want {want_ep})",
        p["endpoint"]
    );

    if is_cladnet {
        let dropped = u64_at(&after, "/counters/dropped_total")?
            - u64_at(&before, "/counters/dropped_total")?;
        let cookies = rejected(&after) - rejected0 - dropped;
        let by_reason = dropped_by_reason(&before, &after);
        eprintln!(
            "hostile_input: dropped_total +{dropped}, cookie replies +{cookies} (need >= {expect} together: sent {sent}, kernel UDP InErrors +{}, {} unaccounted, tolerance {tolerance}); dropped by reason {by_reason:?}",
            m.lab.udp_snmp(&m.nodes[a], "InErrors")? - inerr0,
            exact.saturating_sub(dropped + cookies)
        );
        let rx =
            u64_at(&after, "/counters/rx_datagrams")? - u64_at(&before, "/counters/rx_datagrams")?;
        ensure!(
            rx >= expect,
            "rx_datagrams grew by {rx} only, expected >= {expect}"
        );
        ensure!(
            rx >= sent as u64 / 2,
            "only {rx} of {sent} datagrams reached the agent: the test proves little"
        );
        ensure!(
            counted,
            "dropped_total (+{dropped}) + cookie_replies (+{cookies}) grew by less than {expect}; counters: {}",
            after["counters"]
        );
    }
    Ok(())
}
