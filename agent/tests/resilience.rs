//! Crash and partition: kill -9 and restart with the same configuration
//! (stale API socket left behind), and an underlay link cut and restored.

mod common;

use anyhow::{ensure, Result};
use common::*;
use std::time::{Duration, Instant};

#[test]
fn kill9_and_restart() -> Result<()> {
    with_pair("kill9_and_restart", run_kill9)
}

fn run_kill9(m: &mut Mesh) -> Result<()> {
    m.start_all()?;
    m.ping(0, 1, FIRST_PING)?;
    m.ping(1, 0, FIRST_PING)?;
    let ifname = m.t(0)?.ifname.clone();
    m.kill9(0)?;
    let gone = testbed::wait_until(Duration::from_secs(5), || {
        !m.lab
            .ok(&m.nodes[0], &["ip", "link", "show", "dev", &ifname])
    });
    ensure!(gone, "TUN device {ifname} outlived its SIGKILLed agent");

    // Same config, same interface name, same API socket path (a stale socket
    // file is left behind by the crash).
    m.start(0, "a")?;
    // B still holds the old session: its first packets hit an agent that
    // lost it. B must notice (no answer) and handshake again by itself.
    let t0 = Instant::now();
    m.ping(1, 0, Duration::from_secs(30))?;
    eprintln!(
        "kill9_and_restart: B reached the restarted A after {:?}",
        t0.elapsed()
    );
    m.ping(0, 1, Duration::from_secs(10))?;
    m.assert_alive(0)?;
    m.assert_alive(1)?;
    Ok(())
}

#[test]
fn partition_and_heal() -> Result<()> {
    with_pair("partition_and_heal", run_partition)
}

fn run_partition(m: &mut Mesh) -> Result<()> {
    m.start_all()?;
    m.ping(0, 1, FIRST_PING)?;
    m.ping(1, 0, FIRST_PING)?;
    m.lab.set_link(&m.nodes[1], false)?;
    // Traffic into the partition (queued, dropped, retried by the agents).
    for _ in 0..3 {
        ensure!(!m.lab.ping1(&m.nodes[0], ov(1)), "ping crossed a partition");
    }
    std::thread::sleep(Duration::from_secs(5));
    m.lab.set_link(&m.nodes[1], true)?;
    let t0 = Instant::now();
    m.ping(0, 1, Duration::from_secs(20))?;
    m.ping(1, 0, Duration::from_secs(10))?;
    eprintln!("partition_and_heal: healed after {:?}", t0.elapsed());
    m.assert_alive(0)?;
    m.assert_alive(1)?;
    Ok(())
}
