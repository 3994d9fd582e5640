//! An idle agent sleeps: no busy loop (DESIGN §10 budgets < 1 % of a core;
//! this only catches gross spinning, with a wide margin for a debug build
//! on a shared machine).

mod common;

use anyhow::{ensure, Context, Result};
use common::*;
use std::time::{Duration, Instant};

/// utime + stime of a process (all threads), in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(") ").context("bad /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // after "(comm) ": [0] state ... [11] utime [12] stime (clock ticks)
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    // USER_HZ (the unit of these fields) is 100 on every Linux ABI.
    Ok(ticks as f64 / 100.0)
}

#[test]
fn idle_agent_does_not_spin() -> Result<()> {
    with_pair("idle_agent_does_not_spin", run)
}

fn run(m: &mut Mesh) -> Result<()> {
    m.start_all()?;
    m.ping(0, 1, FIRST_PING)?; // sessions up, then silence
    std::thread::sleep(Duration::from_secs(1));
    let pids = [m.t(0)?.proc.pid(), m.t(1)?.proc.pid()];
    let c0 = [cpu_seconds(pids[0])?, cpu_seconds(pids[1])?];
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let wall = t0.elapsed().as_secs_f64();
    for (i, pid) in pids.iter().enumerate() {
        let used = cpu_seconds(*pid)? - c0[i];
        let share = used / wall;
        eprintln!(
            "idle: node {i} used {used:.2} s CPU in {wall:.1} s ({:.1} % of a core)",
            share * 100.0
        );
        ensure!(
            share < 0.10,
            "idle agent on node {i} used {:.0} % of a core: a busy loop?",
            share * 100.0
        );
    }
    Ok(())
}
