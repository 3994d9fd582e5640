//! Hostile load on the data plane: a stranger's namespace sends a member a
//! flood of invalid datagrams (by default 1,000,000: random bytes,
//! truncated and random-bodied handshake and transport messages, replays
//! of the member's real traffic, and well-formed initiations from unknown
//! keys, interleaved) while a legitimate iperf3 stream from its peer runs
//! through it. It measures:
//!
//! 1. the stream's throughput under the flood against the mean of a clean
//!    run just before and just after, in the same lab (the ratio; aim ≥ 90 %),
//!    and the same for a stream paced at half that clean rate (what a
//!    stream gets when the machine has room to spare for it);
//! 2. that every invalid datagram that reached the agent was counted: the
//!    agent's drops plus its cookie replies against what was sent minus the
//!    kernel's UDP receive errors (socket buffer full, also counted), and
//!    that the unknown-key initiations beyond the load limit were answered
//!    with cookies;
//! 3. that the peer's endpoint did not move and both members still ping;
//! 4. the tunnel's own cost of the flood: the same datagrams once more with
//!    no stream running, and the tunnel process's CPU time over them.
//!
//! Every run of the flood sends the same datagrams; the counts cover the
//! three.
//!
//! The same flood then hits wireguard-go and boringtun-cli (those
//! installed), each in a fresh lab of its own, for the throughput ratio side
//! by side (their drops are not counted: they have no counters).
//!
//! `sudo cargo bench -p cladnet --bench hostile_load [-- DATAGRAMS SECONDS]`
//! or `sudo testbed/hostile_load.sh`: each iperf3 run lasts SECONDS
//! (default 20) and the flood is spread evenly over SECONDS + 2, starting
//! half a second before the stream. Needs root, ping
//! and iperf3. The flood sender shares the machine's cores with both
//! tunnels and iperf3, and the kernel's receive work for its datagrams runs
//! on the sender's time: both are part of what the ratio shows.

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "support/procfs.rs"]
mod procfs;

use anyhow::{ensure, Context, Result};
use common::*;
use std::net::SocketAddrV4;
use std::time::Duration;
use testbed::serde_json::Value;
use testbed::wg::{self, Kind};
use testbed::wire::{self, Hostile};

/// Share of each kind in the flood, in percent.
const MIX: [(Hostile, usize); 8] = [
    (Hostile::Garbage, 30),
    (Hostile::TruncatedInit, 10),
    (Hostile::RandomInit, 10),
    (Hostile::RandomResponse, 10),
    (Hostile::RandomCookie, 10),
    (Hostile::RandomTransport, 20),
    (Hostile::Replay, 5),
    (Hostile::UnknownKeyInit, 5),
];

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let total: usize = match args.first() {
        Some(a) => a.parse().context("DATAGRAMS must be a whole number")?,
        None => 1_000_000,
    };
    let secs: u32 = match args.get(1) {
        Some(a) => a.parse().context("SECONDS must be a whole number")?,
        None => 20,
    };
    ensure!(secs >= 5, "SECONDS must be at least 5");
    ensure!(
        testbed::is_root(),
        "the hostile-load benchmark needs root (namespaces, TUN)"
    );
    let mut kinds = vec![ours()];
    kinds.extend(Kind::wireguard_go());
    kinds.extend(Kind::boringtun());
    for kind in kinds {
        let mut m = Mesh::new(&[kind.clone(), kind])?;
        let r = run(&mut m, total, secs);
        m.lab.check(r)?;
    }
    Ok(())
}

/// One counter of `status` (`show --json`), 0 when absent.
fn counter(v: &Value, name: &str) -> u64 {
    v.pointer(&format!("/counters/{name}"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn run(m: &mut Mesh, total: usize, secs: u32) -> Result<()> {
    let attacker = m.lab.add_node("m")?;
    m.start_all()?;
    let (a, b) = (0, 1);
    let captured = m.capture_real_datagrams(a, b)?;
    m.ping(a, b, FIRST_PING)?;

    let mut rng = testbed::rng::Rng::from_time();
    let counts: Vec<(Hostile, usize)> = MIX.iter().map(|&(k, p)| (k, total * p / 100)).collect();
    let agent_pk = wire::decode_key(&m.keys[a].public)?;
    let set: Vec<Vec<u8>> = wire::hostile_set(&mut rng, agent_pk, &captured, &counts)?
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    let unknown_key_inits = counts
        .iter()
        .find(|(k, _)| *k == Hostile::UnknownKeyInit)
        .map_or(0, |c| c.1);

    let _srv = wg::iperf3_server(&m.lab, &m.nodes[a], ov(a))?;
    let stream = || wg::iperf3(&m.lab, &m.nodes[b], ov(a), secs, false);
    let clean_before = stream()?;

    let before = m.show(a)?;
    let inerr0 = m.lab.udp_snmp(&m.nodes[a], "InErrors")?;
    let dst = SocketAddrV4::new(m.lab.addr(&m.nodes[a]), PORT);
    // The flood starts half a second before the stream and ends about
    // as long after it (iperf3 takes a moment to connect), so the stream's
    // whole length is under it.
    let spread = Duration::from_secs(u64::from(secs) + 2);
    let flood = |during: &dyn Fn() -> Result<f64>| {
        with_flood(&m.lab, &attacker, dst, &set, spread, || {
            std::thread::sleep(Duration::from_millis(500));
            during()
        })
    };
    let (flooded, (sent, took)) = flood(&stream)?;
    let clean_after = stream()?;
    // The same at half the clean rate: what a stream gets when the
    // machine has room to spare for it.
    let pace = ((clean_before + clean_after) / 4e6).max(1.0) as u32;
    let paced = || wg::iperf3_paced(&m.lab, &m.nodes[b], ov(a), secs, pace);
    let clean_paced = paced()?;
    let (flooded_paced, (sent_paced, _)) = flood(&paced)?;
    // The tunnel's own cost: the flood again, nothing else running.
    let pid = m.t(a)?.proc.pid();
    let (cpu, (sent_alone, _)) = with_flood(&m.lab, &attacker, dst, &set, spread, || {
        procfs::cpu_percent(&[pid], spread)
    })?;
    let cpu = cpu.first().copied().unwrap_or(0.0);

    // Kernel receive errors also hit legitimate datagrams, so sent minus
    // them is a lower bound on the invalid datagrams that reached the
    // agent. Wait (bounded) until the agent has counted that many.
    let sent_all = (sent + sent_paced + sent_alone) as u64;
    let counted = |v: &Value| counter(v, "dropped_total") + counter(v, "cookie_replies");
    let counted0 = counted(&before);
    let (mut after, mut inerr) = (before.clone(), 0);
    testbed::wait_until(Duration::from_secs(10), || {
        inerr = m
            .lab
            .udp_snmp(&m.nodes[a], "InErrors")
            .unwrap_or(inerr0)
            .saturating_sub(inerr0);
        m.show(a).is_ok_and(|v| {
            after = v;
            counted(&after) >= counted0 + sent_all.saturating_sub(inerr)
        })
    });
    m.assert_alive(a)?;
    m.assert_alive(b)?;
    m.ping(a, b, Duration::from_secs(10))?;
    m.ping(b, a, Duration::from_secs(10))?;
    let p = m.peer_view(a, b)?;
    let want_ep = format!("{}:{PORT}", m.lab.addr(&m.nodes[b]));
    ensure!(
        p["endpoint"] == want_ep.as_str(),
        "replays moved b's endpoint: a now has {} (want {want_ep})",
        p["endpoint"]
    );

    let reached_at_least = sent_all.saturating_sub(inerr);
    let clean = (clean_before + clean_after) / 2.0;
    let ratio = flooded / clean;
    let name = m.kinds[a].name();
    println!(
        "hostile load on {name}: {sent} of {} invalid datagrams sent in {:.1} s ({:.0}/s), {unknown_key_inits} of them initiations from unknown keys",
        set.len(),
        took.as_secs_f64(),
        sent as f64 / took.as_secs_f64().max(1e-9)
    );
    println!(
        "  iperf3 b -> a, {secs} s each: clean before {:.0} Mbit/s, under the flood {:.0} Mbit/s, clean after {:.0} Mbit/s: ratio {:.1} % (aim >= 90 %); kernel UDP receive errors {inerr}",
        clean_before / 1e6,
        flooded / 1e6,
        clean_after / 1e6,
        ratio * 100.0
    );
    println!(
        "  paced at {pace} Mbit/s: clean {:.0} Mbit/s, under the flood {:.0} Mbit/s: ratio {:.1} %",
        clean_paced / 1e6,
        flooded_paced / 1e6,
        flooded_paced / clean_paced * 100.0
    );
    println!(
        "  the flood alone: {cpu:.0} % of one core for the tunnel process, {:.2} µs per datagram",
        cpu / 100.0 * spread.as_secs_f64() / sent_alone.max(1) as f64 * 1e6
    );
    if !m.kinds[a].is_cladnet() {
        return Ok(());
    }
    let delta = |name: &str| counter(&after, name).saturating_sub(counter(&before, name));
    let dropped = delta("dropped_total");
    let cookies = delta("cookie_replies");
    let by_reason = dropped_by_reason(&before, &after);
    println!(
        "  counted by the agent over the three floods: dropped {dropped} + cookie replies {cookies} = {}; sent minus kernel errors {reached_at_least}",
        dropped + cookies
    );
    println!("  dropped by reason: {by_reason:?}");
    // Datagrams lost on the way (the veth backlog) are in no UDP counter:
    // a tenth of a percent is allowed for them.
    let tolerance = reached_at_least / 1000;
    ensure!(
        dropped + cookies + tolerance >= reached_at_least,
        "the agent counted {} invalid datagrams, but at least {reached_at_least} reached it (less {tolerance} allowed for losses on the way)",
        dropped + cookies
    );
    ensure!(
        unknown_key_inits == 0 || cookies > 0,
        "{unknown_key_inits} initiations from unknown keys drew no cookie reply"
    );
    Ok(())
}

/// Runs `during` while `set` is sent to `dst` from `attacker`, spread evenly
/// over `spread`; returns what `during` returned and what the flood sent
/// and took.
fn with_flood<T>(
    lab: &testbed::Lab,
    attacker: &testbed::Node,
    dst: SocketAddrV4,
    set: &[Vec<u8>],
    spread: Duration,
    during: impl FnOnce() -> Result<T>,
) -> Result<(T, (usize, Duration))> {
    std::thread::scope(|s| {
        let flood = s.spawn(|| wire::send_spread(lab, attacker, dst, set, spread));
        let got = during();
        let flood = flood
            .join()
            .map_err(|_| anyhow::anyhow!("flood thread panicked"))??;
        Ok((got?, flood))
    })
}
