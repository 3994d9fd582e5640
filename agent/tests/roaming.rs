//! Roaming: B's underlay address changes mid-flow; A learns B's new endpoint
//! from authenticated packets and the flow resumes.

mod common;

use anyhow::{ensure, Result};
use common::*;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

#[test]
fn roaming() -> Result<()> {
    with_pair("roaming", run)
}

fn run(m: &mut Mesh) -> Result<()> {
    m.start_all()?;
    let (a, b) = (0, 1);
    m.ping(b, a, FIRST_PING)?;
    m.ping(a, b, FIRST_PING)?;

    // A steady flow B -> A (5 pings/s, bounded: at most 150 pings / 45 s).
    let a_ov = ov(a).to_string();
    let mut flow = m.lab.spawn(
        &m.nodes[b],
        "flow-b-to-a",
        &["ping", "-n", "-i", "0.2", "-c", "150", "-w", "45", &a_ov],
    )?;
    let flow_start = Instant::now();
    std::thread::sleep(Duration::from_secs(2));

    let old = m.lab.addr(&m.nodes[b]);
    let new = Ipv4Addr::new(198, 18, 0, 102);
    eprintln!("roaming: moving node b {old} -> {new}");
    m.lab.set_addr(&m.nodes[b], new)?;
    let t0 = Instant::now();
    let want = format!("{new}:{PORT}");

    // A must learn the new endpoint from B's authenticated traffic.
    let mut last = testbed::serde_json::Value::Null;
    let learned = testbed::wait_until(Duration::from_secs(15), || match m.peer_view(a, b) {
        Ok(p) => {
            let ok = p["endpoint"] == want.as_str();
            last = p;
            ok
        }
        Err(_) => false,
    });
    let learn_time = t0.elapsed();
    ensure!(
        learned,
        "A did not learn B's new endpoint {want} within 15 s; A's view of B: {last}"
    );
    m.ping(b, a, Duration::from_secs(10))?;
    m.ping(a, b, Duration::from_secs(10))?;
    let heal_time = t0.elapsed();
    eprintln!("roaming: endpoint learned after {learn_time:?}, both directions ping after {heal_time:?} (budget: < 3 s)");

    // The background flow gets replies again after the move.
    let seq_healed = (flow_start.elapsed().as_secs_f64() / 0.2) as u32;
    std::thread::sleep(Duration::from_secs(2));
    let _ = flow.signal(testbed::libc_sigint());
    let st = flow.wait_timeout(Duration::from_secs(5));
    let log = flow.log();
    let summary = log
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("(no summary)")
        .to_string();
    eprintln!("roaming: background flow: {summary} (exit {st:?})");
    let replies_after_move = log
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            l.split("icmp_seq=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .filter(|seq| *seq >= seq_healed)
        .count();
    ensure!(
        replies_after_move > 0,
        "background flow got no reply after the move:\n{log}"
    );
    m.assert_alive(a)?;
    m.assert_alive(b)?;
    Ok(())
}
