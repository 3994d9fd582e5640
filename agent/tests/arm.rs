//! A mixed network: two x86 nodes and one aarch64 node (the ARM build of
//! cladnet, from `scripts/build-arm64.sh`, run by qemu-user inside its
//! namespace) formed with init/invite/join, the ARM node admitting one of
//! the x86 nodes. Every ordered pair pings, an HTTP file crosses intact
//! both ways through the ARM node, `members` and `metrics` on the ARM node
//! show the whole network, `--via` the ARM node answers, and the ARM node
//! survives `kill -9` and a restart.
//!
//! The ARM binary is `target/aarch64-unknown-linux-gnu/release/cladnet`
//! (or `$CLADNET_ARM64_BIN`); `scripts/test.sh` builds it first. It runs
//! against Debian's arm64 C library (`libc6:arm64`, what an ARM Debian box
//! has), found through the host's loader paths.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::net::{setup, Net};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testbed::serde_json::{self, Value};
use testbed::Lab;

/// Where the ARM build is.
fn arm_binary() -> PathBuf {
    std::env::var_os("CLADNET_ARM64_BIN").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/aarch64-unknown-linux-gnu/release/cladnet")
        },
        PathBuf::from,
    )
}

#[test]
fn an_arm_node_under_qemu_joins_a_mixed_network() -> Result<()> {
    if testbed::skip_unless_root("mixed-architecture lab") {
        return Ok(());
    }
    let bin = arm_binary();
    ensure!(
        bin.exists(),
        "{} is missing: build the ARM binary first with scripts/build-arm64.sh (scripts/test.sh does)",
        bin.display()
    );
    let qemu = testbed::find_program("qemu-aarch64-static", "CLADNET_QEMU_AARCH64")
        .context("qemu-aarch64-static is missing: scripts/build-arm64.sh installs it")?;
    let lab = Lab::new()?;
    let mut net = setup(lab, &["x1", "r1", "x2"])?;
    net.members[1].program = vec![
        qemu.to_string_lossy().into_owned(),
        bin.to_string_lossy().into_owned(),
    ];
    let r = scenario(&mut net);
    net.lab.check(r)
}

fn scenario(net: &mut Net) -> Result<()> {
    let (x1, r1, x2) = (0, 1, 2);
    let version = net.cli(r1, &["--version"])?;
    ensure!(version.starts_with("cladnet "), "{version}");
    // ELF e_machine 183 (0xb7) is AArch64.
    let elf = std::fs::read(&net.members[r1].program[1])?;
    ensure!(
        elf.get(18..20) == Some(&[0xb7, 0][..]),
        "not an aarch64 binary: {}",
        net.members[r1].program[1]
    );

    // x1 starts the network, r1 (ARM) joins through it, x2 through r1.
    let started = Instant::now();
    net.init(x1, "x1")?;
    net.start(x1)?;
    let t = net.invite(x1, &[])?;
    net.join(r1, "r1", &t)?;
    net.start(r1)?;
    let t = net.invite(r1, &[])?;
    net.join(x2, "x2", &t)?;
    net.start(x2)?;
    for i in [x1, r1, x2] {
        net.wait_alive(i, &["x1", "r1", "x2"], Duration::from_secs(30))?;
    }
    eprintln!(
        "FIGURE mixed network of 3 (one ARM under qemu) formed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let addrs: Vec<String> = (0..3).map(|i| net.address(i)).collect::<Result<_>>()?;
    every_pair_pings(net, &addrs)?;

    // A file crosses intact, into and out of the ARM node.
    net.lab.http_transfer(
        &net.members[x1].node,
        &addrs[x1],
        &net.members[r1].node,
        4 << 20,
    )?;
    net.lab.http_transfer(
        &net.members[r1].node,
        &addrs[r1],
        &net.members[x2].node,
        4 << 20,
    )?;

    // The ARM node's views of the whole network.
    let names: Vec<String> = net
        .members(r1)?
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    ensure!(names.len() == 3, "r1 lists {names:?}");
    let mut last = Value::Null;
    let full =
        testbed::wait_until_every(
            Duration::from_secs(60),
            Duration::from_secs(1),
            || match net
                .cli(r1, &["metrics", "--json"])
                .map(|t| serde_json::from_str::<Value>(&t))
            {
                Ok(Ok(m)) => {
                    let nodes = m["nodes"].as_array().map_or(0, Vec::len);
                    let rtts = m["rtt"].as_array().map_or(0, |r| {
                        r.iter().filter(|x| x["rtt_ms"].as_f64().is_some()).count()
                    });
                    last = m;
                    nodes == 3 && rtts >= 3
                }
                _ => false,
            },
        );
    ensure!(full, "r1's metrics do not show the whole network: {last}");

    // --via the ARM node, from both x86 nodes.
    for i in [x1, x2] {
        let via: Value = serde_json::from_str(&net.cli(i, &["status", "--json", "--via", "r1"])?)?;
        ensure!(via["name"] == "r1", "--via r1 answered {via}");
    }

    // kill -9 of the ARM agent, then a restart: the mesh takes it back.
    net.members[r1]
        .agent
        .as_mut()
        .context("r1 runs")?
        .kill_hard()?;
    let killed = Instant::now();
    net.start(r1)?;
    every_pair_pings(net, &addrs)?;
    eprintln!(
        "FIGURE ARM node back in the mesh {:.1} s after kill -9",
        killed.elapsed().as_secs_f64()
    );
    net.wait_alive(r1, &["x1", "r1", "x2"], Duration::from_secs(30))?;
    Ok(())
}

/// Every ordered pair of members pings (30 s each at most).
fn every_pair_pings(net: &Net, addrs: &[String]) -> Result<()> {
    for from in 0..addrs.len() {
        for (to, dst) in addrs.iter().enumerate().filter(|(to, _)| *to != from) {
            let node = &net.members[from].node;
            if !net.lab.wait_ping(node, dst, Duration::from_secs(30)) {
                bail!(
                    "no ping {} -> {} ({dst})",
                    node.name,
                    net.members[to].node.name
                );
            }
        }
    }
    Ok(())
}
