//! Churn soak: four long-lived members, and four slots where members join,
//! leave, crash (`kill -9`) and restart, one event after another at random
//! for a set time. Afterwards the long-lived agents' resident memory and
//! open file descriptors are what they were after the first quarter of the
//! run (within a margin for the allocator), every running member is listed
//! alive by every other, churned members reach the long-lived ones, and no
//! agent's log holds a panic.
//!
//! CI runs 2 minutes; `sudo testbed/soak.sh --minutes N` (default 60) runs
//! the same test longer through `CLADNET_SOAK_MINUTES`. The seed is printed
//! and `CLADNET_SOAK_SEED` replays the order of events.

mod common;

#[path = "../benches/support/procfs.rs"]
#[allow(dead_code)]
mod procfs;

use anyhow::{bail, ensure, Context, Result};
use common::net::{setup, Net};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use testbed::rng::Rng;
use testbed::Lab;

/// Members that stay up the whole run (indices 0..LONG).
const LONG: usize = 4;
/// Slots that churn (indices LONG..LONG + SLOTS).
const SLOTS: usize = 4;
/// Resident memory may grow by this share of the first sample...
const RSS_GROWTH: f64 = 0.25;
/// ...plus this much (kB), for the allocator's arenas settling.
const RSS_SLACK_KB: u64 = 6 * 1024;
/// Open descriptors may differ by this many (sockets of connections in
/// flight at the moment of sampling).
const FD_SLACK: usize = 12;

#[test]
fn churn_leaves_long_lived_agents_flat_and_the_network_whole() -> Result<()> {
    if testbed::skip_unless_root("soak lab") {
        return Ok(());
    }
    let minutes: u64 = match std::env::var("CLADNET_SOAK_MINUTES") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("CLADNET_SOAK_MINUTES={v:?} is not a whole number"))?,
        Err(_) => 2,
    };
    ensure!(
        (1..=24 * 60).contains(&minutes),
        "CLADNET_SOAK_MINUTES: from 1 to 1440"
    );
    let seed = common::seed("CLADNET_SOAK_SEED")?;
    eprintln!("soak seed {seed:#x} (CLADNET_SOAK_SEED replays it), {minutes} min");
    let names: Vec<String> = (0..LONG + SLOTS).map(|i| format!("s{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut net = setup(Lab::new()?, &names)?;
    let r = soak(
        &mut net,
        &names,
        Duration::from_secs(minutes * 60),
        &mut Rng::new(seed),
    );
    // Panics are looked for whatever the outcome: one may be the cause.
    let r = match (r, no_panics(&net)) {
        (Ok(()), panics) => panics,
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(p)) => Err(e.context(p.to_string())),
    };
    net.lab.check(r)
}

/// What a churn slot holds now.
#[derive(Clone, Debug, PartialEq)]
enum Slot {
    /// Nothing: its state directory is gone.
    Empty,
    /// A running member of this name.
    Member(String),
}

/// Resident memory (kB) and open descriptors of each long-lived agent.
fn sample(net: &Net) -> Result<Vec<(u64, usize)>> {
    (0..LONG)
        .map(|i| {
            let pid = net.members[i]
                .agent
                .as_ref()
                .map(testbed::Proc::pid)
                .context("a long-lived agent is not running")?;
            Ok((procfs::rss_kb(pid)?, procfs::fds(pid)?))
        })
        .collect()
}

fn soak(net: &mut Net, names: &[&str], length: Duration, rng: &mut Rng) -> Result<()> {
    net.init(0, names[0])?;
    net.start(0)?;
    for (i, name) in names.iter().enumerate().take(LONG).skip(1) {
        let token = net.invite(rng.below(i), &[])?;
        net.join(i, name, &token)?;
        net.start(i)?;
    }
    let mut slots = vec![Slot::Empty; SLOTS];
    let mut joined = 0usize;
    let mut events = [0usize; 4]; // joins, leaves, kills, restarts
    let start = Instant::now();
    let mut first: Option<Vec<(u64, usize)>> = None;
    // Bounded: at most one event per second of the run.
    for _ in 0..length.as_secs() {
        if start.elapsed() >= length {
            break;
        }
        if first.is_none() && start.elapsed() >= length / 4 {
            let s = sample(net)?;
            eprintln!("soak: first sample (rss kB, fds) {s:?}");
            first = Some(s);
        }
        let k = rng.below(SLOTS);
        let i = LONG + k;
        match slots[k].clone() {
            Slot::Empty => {
                joined += 1;
                let name = format!("{}-{joined}", names[i]);
                let token = net.invite(rng.below(LONG), &[])?;
                net.join(i, &name, &token)
                    .with_context(|| format!("{name} joining"))?;
                net.start(i)?;
                slots[k] = Slot::Member(name);
                events[0] += 1;
            }
            Slot::Member(name) => match rng.below(3) {
                0 => {
                    net.cli(i, &["leave"])
                        .with_context(|| format!("{name} leaving"))?;
                    if let Some(mut agent) = net.members[i].agent.take() {
                        agent
                            .wait_timeout(Duration::from_secs(15))
                            .with_context(|| format!("{name}'s agent did not stop after leave"))?;
                    }
                    std::fs::remove_dir_all(&net.members[i].state)?;
                    slots[k] = Slot::Empty;
                    events[1] += 1;
                }
                1 => {
                    if let Some(mut agent) = net.members[i].agent.take() {
                        agent.kill_hard()?;
                    }
                    std::thread::sleep(Duration::from_millis(rng.below(2000) as u64));
                    net.start(i)?;
                    events[2] += 1;
                }
                _ => {
                    if let Some(mut agent) = net.members[i].agent.take() {
                        agent.stop()?;
                    }
                    net.start(i)?;
                    events[3] += 1;
                }
            },
        }
        std::thread::sleep(Duration::from_millis(500 + rng.below(1500) as u64));
    }
    let first = first.context("the run ended before its first quarter")?;
    eprintln!(
        "FIGURE soak: {:.0} s, {} joins, {} leaves, {} kill -9, {} restarts",
        start.elapsed().as_secs_f64(),
        events[0],
        events[1],
        events[2],
        events[3]
    );

    // At least one churned member takes part in the checks below.
    if !slots.iter().any(|s| matches!(s, Slot::Member(_))) {
        joined += 1;
        let name = format!("{}-{joined}", names[LONG]);
        let token = net.invite(0, &[])?;
        net.join(LONG, &name, &token)?;
        net.start(LONG)?;
        slots[0] = Slot::Member(name);
    }
    // The network is whole: every running member lists every other alive.
    let mut running: Vec<(usize, String)> = (0..LONG).map(|i| (i, names[i].to_string())).collect();
    for (k, s) in slots.iter().enumerate() {
        if let Slot::Member(name) = s {
            running.push((LONG + k, name.clone()));
        }
    }
    let alive: Vec<&str> = running.iter().map(|(_, n)| n.as_str()).collect();
    for (i, _) in &running {
        net.wait_alive(*i, &alive, Duration::from_secs(60))?;
    }
    for (i, name) in running.iter().skip(LONG) {
        let to: Ipv4Addr = net.address(rng.below(LONG))?.parse()?;
        ensure!(
            net.lab
                .wait_ping(&net.members[*i].node, to, Duration::from_secs(10)),
            "{name} does not reach {to}"
        );
    }

    let last = sample(net)?;
    eprintln!("FIGURE soak: long-lived agents (rss kB, fds) after a quarter {first:?}, at the end {last:?}");
    for (i, ((rss0, fd0), (rss1, fd1))) in first.iter().zip(&last).enumerate() {
        let limit = (*rss0 as f64 * (1.0 + RSS_GROWTH)) as u64 + RSS_SLACK_KB;
        ensure!(
            *rss1 <= limit,
            "{}'s memory grew from {rss0} kB to {rss1} kB (limit {limit} kB)",
            names[i]
        );
        ensure!(
            *fd1 <= fd0 + FD_SLACK,
            "{}'s open descriptors grew from {fd0} to {fd1}",
            names[i]
        );
    }
    Ok(())
}

/// No agent of the lab (churned ones included) wrote a panic to its log.
fn no_panics(net: &Net) -> Result<()> {
    for entry in std::fs::read_dir(net.lab.dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path)?;
            if text.contains("panicked") {
                bail!("{} holds a panic", path.display());
            }
        }
    }
    Ok(())
}
