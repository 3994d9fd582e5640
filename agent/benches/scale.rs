//! Many real agents on one machine, as an operator would run them: for
//! each size given (default 12 and 60), that many members, each in its own
//! namespace, the first initialised and every other one joined with an
//! invite from a member picked at random among those already running. It
//! measures:
//!
//! 1. time from the last join until every member lists all of them alive
//!    (every member's `members --json`, checked in turn);
//! 2. idle, after 20 s of settling: each agent's RSS and open file
//!    descriptors, and its CPU and control-plane bytes (the `gossip`
//!    counters of `status --json`: every request, answer and gossip
//!    message's payload, in and out) and all its underlay bytes (eth0 in
//!    and out: QUIC and gossipsub framing, WireGuard keepalives and path
//!    probes included) over 60 s or one metrics interval if longer (120 s
//!    at 60 members), so every member publishes its metrics once in it;
//! 3. that 16 sampled ordered pairs ping over the overlay.
//!
//! It prints one table and the ratio of control bytes per node per second
//! at the largest size to the smallest.
//!
//! `sudo cargo bench -p cladnet --bench scale [-- SIZES…]` (about six
//! minutes for 12 and 60), or `sudo testbed/scale.sh`. Needs root and ping.
//! All namespaces share the kernel's IPv4 neighbour table (1,024 entries by
//! default): past ~30 hosts on one bridge it overflows and packets fail
//! with ENOBUFS, so the bench raises `net.ipv4.neigh.default.gc_thresh1/2/3`
//! to 4096/8192/16384 while it runs and puts the old values back after.

#[path = "../tests/common/neigh.rs"]
mod neigh;
#[allow(dead_code)]
#[path = "../tests/common/net.rs"]
mod net;
#[path = "support/procfs.rs"]
mod procfs;

use anyhow::{bail, Context, Result};
use net::{setup, Net};
use std::time::{Duration, Instant};
use testbed::Lab;

/// The cladnet binary measured (what `net` runs).
fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cladnet")
}

/// Sizes run when none are given.
const DEFAULT_SIZES: [usize; 2] = [12, 60];
const SETTLE: Duration = Duration::from_secs(20);
const WINDOW: Duration = Duration::from_secs(60);
const SAMPLED_PAIRS: usize = 16;
/// What one size measured.
struct Figures {
    members: usize,
    formed: Duration,
    rss_kb: Vec<u64>,
    fds: Vec<usize>,
    cpu: Vec<f64>,
    /// Control-plane payload bytes per second, in + out, per agent.
    control: Vec<f64>,
    /// Underlay bytes per second, in + out, per node.
    underlay: Vec<f64>,
    pinged: usize,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    anyhow::ensure!(
        testbed::is_root(),
        "the scale benchmark needs root (namespaces, TUN)"
    );
    let sizes: Vec<usize> = if args.is_empty() {
        DEFAULT_SIZES.to_vec()
    } else {
        args.iter()
            .map(|a| {
                a.parse()
                    .with_context(|| format!("{a:?} is not a number of members"))
            })
            .collect::<Result<_>>()?
    };
    if let Some(bad) = sizes.iter().find(|n| !(2..=250).contains(*n)) {
        bail!("{bad} members: give sizes from 2 to 250 (one /24 of underlay and overlay)");
    }
    let _thresholds = neigh::Thresholds::raise()?;
    println!("| members | all list all alive, after the last join | idle RSS median / max | fds median / max | idle CPU mean / max | control payload in+out mean / max | underlay in+out mean / max | sampled pairs ping |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut all = Vec::new();
    for &n in &sizes {
        let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut net = setup(Lab::new()?, &names)?;
        let r = run(&mut net, &names);
        let figures = net.lab.check(r)?;
        print_row(&figures);
        all.push(figures);
    }
    if let (Some(small), Some(large)) = (all.first(), all.last()) {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        println!(
            "per node per second, {} members / {} members: control payload {:.2}x, underlay bytes {:.2}x",
            large.members,
            small.members,
            mean(&large.control) / mean(&small.control).max(1.0),
            mean(&large.underlay) / mean(&small.underlay).max(1.0)
        );
    }
    Ok(())
}

fn run(net: &mut Net, names: &[&str]) -> Result<Figures> {
    let n = names.len();
    let mut rng = testbed::rng::Rng::new(0x9E37_79B9_7F4A_7C15 ^ n as u64);
    net.init(0, names[0])?;
    net.start(0)?;
    for (i, name) in names.iter().enumerate().skip(1) {
        let inviter = rng.below(i);
        let token = net.invite(inviter, &[])?;
        net.join(i, name, &token)?;
        net.start(i)?;
    }
    let last_join = Instant::now();
    for i in 0..n {
        net.wait_alive(i, names, Duration::from_secs(120))?;
    }
    let formed = last_join.elapsed();
    eprintln!("{n} members: every member lists all alive {formed:.1?} after the last join");

    std::thread::sleep(SETTLE);
    let pids: Vec<u32> = (0..n)
        .map(|i| Ok(net.members[i].agent.as_ref().context("agent runs")?.pid()))
        .collect::<Result<_>>()?;
    let rss_kb = pids
        .iter()
        .map(|p| procfs::rss_kb(*p))
        .collect::<Result<_>>()?;
    let fds = pids
        .iter()
        .map(|p| procfs::fds(*p))
        .collect::<Result<_>>()?;
    let (before, wire_before) = (gossip_bytes(net)?, underlay_bytes(net)?);
    let started = Instant::now();
    // At least one metrics interval, so every member publishes once in it.
    let window = WINDOW.max(federation::member::metrics_interval(pids.len()));
    let cpu = procfs::cpu_percent(&pids, window)?;
    let (after, wire_after) = (gossip_bytes(net)?, underlay_bytes(net)?);
    let seconds = started.elapsed().as_secs_f64();
    let rate = |b: &[u64], a: &[u64]| -> Vec<f64> {
        b.iter()
            .zip(a)
            .map(|(b, a)| a.saturating_sub(*b) as f64 / seconds)
            .collect()
    };
    let (control, underlay) = (rate(&before, &after), rate(&wire_before, &wire_after));

    let addresses: Vec<String> = (0..n).map(|i| net.address(i)).collect::<Result<_>>()?;
    let mut pinged = 0;
    for _ in 0..SAMPLED_PAIRS {
        let from = rng.below(n);
        let to = (from + 1 + rng.below(n - 1)) % n;
        if net.lab.ping1(&net.members[from].node, &addresses[to]) {
            pinged += 1;
        } else {
            eprintln!("{} does not reach {}", names[from], names[to]);
        }
    }
    if pinged < SAMPLED_PAIRS {
        bail!("{pinged} of {SAMPLED_PAIRS} sampled pairs pinged");
    }
    Ok(Figures {
        members: n,
        formed,
        rss_kb,
        fds,
        cpu,
        control,
        underlay,
        pinged,
    })
}

/// Each node's underlay bytes so far (eth0 received + sent, from the
/// namespace's `/proc/net/dev`).
fn underlay_bytes(net: &Net) -> Result<Vec<u64>> {
    net.members
        .iter()
        .map(|m| {
            let dev = net.lab.run(&m.node, &["cat", "/proc/net/dev"])?;
            let line = dev
                .lines()
                .find_map(|l| l.trim_start().strip_prefix("eth0:"))
                .context("no eth0 in /proc/net/dev")?;
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // Receive bytes is the first field, transmit bytes the ninth.
            Ok(f.first().context("no rx bytes")? + f.get(8).context("no tx bytes")?)
        })
        .collect()
}

/// Each agent's control-plane bytes so far, in + out.
fn gossip_bytes(net: &Net) -> Result<Vec<u64>> {
    (0..net.members.len())
        .map(|i| {
            let g = &net.status(i)?["gossip"];
            let count = |k: &str| {
                g[k].as_u64()
                    .with_context(|| format!("status has no gossip.{k}"))
            };
            Ok(count("in_bytes")? + count("out_bytes")?)
        })
        .collect()
}

fn print_row(f: &Figures) {
    let mb = |kb: u64| kb as f64 / 1024.0;
    let (rss_med, rss_max) = procfs::median_max(&f.rss_kb).unwrap_or((0, 0));
    let (fd_med, fd_max) = procfs::median_max(&f.fds).unwrap_or((0, 0));
    let (_, cpu_max) = procfs::median_max(&f.cpu).unwrap_or((0.0, 0.0));
    let (ctl_med, ctl_max) = procfs::median_max(&f.control).unwrap_or((0.0, 0.0));
    let cpu_mean = f.cpu.iter().sum::<f64>() / f.cpu.len().max(1) as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let ctl_mean = mean(&f.control);
    let (_, wire_max) = procfs::median_max(&f.underlay).unwrap_or((0.0, 0.0));
    println!(
        "| {} | {:.1} s | {:.1} / {:.1} MB | {fd_med} / {fd_max} | {cpu_mean:.2} / {cpu_max:.2} % | {ctl_mean:.0} (median {ctl_med:.0}) / {ctl_max:.0} B/s | {:.0} / {wire_max:.0} B/s | {}/{SAMPLED_PAIRS} |",
        f.members,
        f.formed.as_secs_f64(),
        mb(rss_med),
        mb(rss_max),
        mean(&f.underlay),
        f.pinged,
    );
}
