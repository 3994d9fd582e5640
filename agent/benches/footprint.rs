//! The agent's footprint in network mode, measured as an operator would see
//! it (`/proc/PID/status` VmRSS, `/proc/PID/stat` CPU ticks), on the release
//! build (the shipped binary's shape):
//!
//! 1. ten members, each in its own namespace, idle: RSS of every agent
//!    after settling, and CPU over 60 s;
//! 2. two of them after a 10 s iperf3 burst across the overlay;
//! 3. 90 more members admitted on paper (joined, never started: the state
//!    holds 100 members, 90 of them down), idle again;
//! 4. the binary's size, stripped.
//!
//! `sudo cargo bench -p cladnet --bench footprint` (about four minutes).
//! Needs root, iperf3 and strip; prints one table.

#[allow(dead_code)]
#[path = "../tests/common/net.rs"]
mod net;
#[allow(dead_code)]
#[path = "support/procfs.rs"]
mod procfs;

use anyhow::{Context, Result};
use net::{setup, Net};
use std::time::Duration;
use testbed::Lab;

const NODES: usize = 10;

/// The cladnet binary measured (what `net` runs).
fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cladnet")
}
const PAPER_MEMBERS: usize = 90;
const CPU_WINDOW: Duration = Duration::from_secs(60);

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    anyhow::ensure!(
        testbed::is_root(),
        "the footprint benchmark needs root (namespaces, TUN)"
    );
    let names: Vec<String> = (0..NODES).map(|i| format!("n{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let lab = Lab::new()?;
    let mut net = setup(lab, &names)?;
    let r = run(&mut net);
    net.lab.check(r)
}

fn run(net: &mut Net) -> Result<()> {
    net.init(0, "n0")?;
    net.start(0)?;
    for i in 1..NODES {
        // Each joins through the one before it.
        let t = net.invite(i - 1, &[])?;
        net.join(i, &format!("n{i}"), &t)?;
        net.start(i)?;
    }
    let names: Vec<String> = (0..NODES).map(|i| format!("n{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    net.wait_alive(0, &names, Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(20));
    let idle = rss_all(net)?;
    let anon: Vec<u64> = (0..NODES)
        .map(|i| procfs::status_kb(pid(net, i)?, "RssAnon"))
        .collect::<Result<_>>()?;
    let cpu = cpu_percent_all(net, CPU_WINDOW)?;

    // A 10 s TCP burst from n1 to n2 across the overlay.
    let dst: std::net::Ipv4Addr = net.address(2)?.parse()?;
    let _srv = testbed::wg::iperf3_server(&net.lab, &net.members[2].node, dst)?;
    let gbps = testbed::wg::iperf3(&net.lab, &net.members[1].node, dst, 10, false)? / 1e9;
    std::thread::sleep(Duration::from_secs(5));
    let burst = [procfs::rss_kb(pid(net, 1)?)?, procfs::rss_kb(pid(net, 2)?)?];

    // 90 members on paper: admitted by n0, never started.
    for k in 0..PAPER_MEMBERS {
        let t = net.invite(0, &[])?;
        let state = net.lab.dir().join(format!("paper-{k}"));
        let state = state.to_string_lossy().into_owned();
        let mut argv = net.program(3);
        argv.extend(["join", &t, "--name"]);
        let name = format!("p{k}");
        argv.extend([name.as_str(), "--state", &state]);
        net.lab.run(&net.members[3].node, &argv)?;
    }
    std::thread::sleep(Duration::from_secs(30));
    let listed = net.members(5)?.len();
    let hundred = rss_all(net)?;
    let hundred_cpu = cpu_percent_all(net, Duration::from_secs(30))?;

    let size = stripped_size(bin())?;
    let mb = |kb: u64| kb as f64 / 1024.0;
    let stats = |v: &[u64]| {
        let (median, max) = procfs::median_max(v).unwrap_or((0, 0));
        (mb(median), mb(max))
    };
    let (idle_med, idle_max) = stats(&idle);
    let (anon_med, anon_max) = stats(&anon);
    let (h_med, h_max) = stats(&hundred);
    let cpu_max = cpu.iter().cloned().fold(0.0, f64::max);
    let cpu_mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
    let hcpu_max = hundred_cpu.iter().cloned().fold(0.0, f64::max);
    println!("footprint (release build, network mode)");
    println!("| measure | median | max |");
    println!("|---|---|---|");
    println!("| idle RSS, {NODES} members | {idle_med:.1} MB | {idle_max:.1} MB |");
    println!("| of which anonymous (heap, stacks) | {anon_med:.1} MB | {anon_max:.1} MB |");
    println!(
        "| RSS after a 10 s iperf3 burst ({gbps:.2} Gbit/s), sender / receiver | {:.1} MB | {:.1} MB |",
        mb(burst[0]),
        mb(burst[1])
    );
    println!("| idle RSS, {listed} members in the state ({NODES} running) | {h_med:.1} MB | {h_max:.1} MB |");
    println!(
        "| idle CPU over {} s, {NODES} members | {cpu_mean:.2} % (mean) | {cpu_max:.2} % |",
        CPU_WINDOW.as_secs()
    );
    println!("| idle CPU over 30 s, {listed} members in the state | | {hcpu_max:.2} % |");
    println!("| binary, stripped | {:.1} MB | |", size as f64 / 1e6);
    Ok(())
}

fn pid(net: &Net, i: usize) -> Result<u32> {
    Ok(net.members[i].agent.as_ref().context("agent runs")?.pid())
}

fn rss_all(net: &Net) -> Result<Vec<u64>> {
    (0..NODES).map(|i| procfs::rss_kb(pid(net, i)?)).collect()
}

/// Each agent's CPU use over `window`, in % of one core.
fn cpu_percent_all(net: &Net, window: Duration) -> Result<Vec<f64>> {
    let pids: Vec<u32> = (0..NODES).map(|i| pid(net, i)).collect::<Result<_>>()?;
    procfs::cpu_percent(&pids, window)
}

/// Size of `bin` once stripped (a copy is stripped).
fn stripped_size(bin: &str) -> Result<u64> {
    let copy = std::env::temp_dir().join(format!("cladnet-footprint-{}", std::process::id()));
    std::fs::copy(bin, &copy)?;
    let ok = std::process::Command::new("strip")
        .arg(&copy)
        .status()?
        .success();
    let size = std::fs::metadata(&copy)?.len();
    std::fs::remove_file(&copy)?;
    anyhow::ensure!(ok, "strip failed");
    Ok(size)
}
