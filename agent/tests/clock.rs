//! Clock skew, as it happens on real fleets: members whose wall clocks are
//! ten minutes ahead and ten minutes behind (libfaketime, for the agent
//! and the CLI alike) join, invite and admit others, and the network agrees
//! on one view; a member ahead is named by the others' `status`; an
//! invite's expiry is judged by its issuer's clock alone, so a joiner whose
//! clock reads it as expired still joins. Then the member that was ahead has its clock set right
//! and restarts: its handshakes now carry timestamps ten minutes older
//! than the ones its peers last saw, and the tunnels must come back anyway.
//!
//! Records carry version counters, not times, and liveness runs on the
//! monotonic clock, so they do not care; what reads the wall clock is
//! invite and certificate expiry, metrics sample times and WireGuard's
//! handshake timestamps.

mod common;

use anyhow::{ensure, Context, Result};
use common::net::{setup, Net};
use std::net::Ipv4Addr;
use std::time::Duration;
use testbed::Lab;

/// `program` for member `i`: cladnet under a wall clock shifted by `shift`
/// (libfaketime's syntax, e.g. "+10m"), the monotonic clock left alone.
fn shifted(shift: &str) -> Vec<String> {
    [
        "env",
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
        "faketime",
        "-f",
        shift,
        common::bin(),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn members_ten_minutes_off_join_invite_agree_and_recover() -> Result<()> {
    if testbed::skip_unless_root("clock lab") {
        return Ok(());
    }
    ensure!(
        testbed::find_program("faketime", "FAKETIME").is_some(),
        "the clock lab needs libfaketime's `faketime` (apt install faketime; scripts/test.sh does)"
    );
    let names = ["a", "ahead", "behind", "d", "e"];
    let mut net = setup(Lab::new()?, &names)?;
    let r = scenario(&mut net, &names);
    net.lab.check(r)
}

fn scenario(net: &mut Net, names: &[&str]) -> Result<()> {
    let (a, ahead, behind, d, e) = (0, 1, 2, 3, 4);
    net.members[ahead].program = shifted("+10m");
    net.members[behind].program = shifted("-10m");
    net.members[e].program = shifted("+10m");
    net.init(a, names[a])?;
    net.start(a)?;
    // A right clock admits one ahead, which admits one behind, which admits
    // one with a right clock.
    for (inviter, joiner) in [(a, ahead), (ahead, behind), (behind, d)] {
        let token = net.invite(inviter, &[])?;
        net.join(joiner, names[joiner], &token)
            .with_context(|| format!("{} joining through {}", names[joiner], names[inviter]))?;
        net.start(joiner)?;
    }
    let four = &names[..4];
    for i in [a, ahead, behind, d] {
        net.wait_alive(i, four, Duration::from_secs(30))?;
    }
    for (from, to) in [(a, ahead), (ahead, behind), (behind, d), (d, a)] {
        let to_ip: Ipv4Addr = net.address(to)?.parse()?;
        ensure!(
            net.lab
                .wait_ping(&net.members[from].node, to_ip, Duration::from_secs(10)),
            "{} does not reach {} over the overlay",
            names[from],
            names[to]
        );
    }
    // Metrics records carry sample times: the member ahead is named.
    let named = testbed::wait_until(Duration::from_secs(30), || {
        net.status(a)
            .is_ok_and(|s| s["verdict"].as_str().is_some_and(|v| v.contains("ahead")))
    });
    let status = net.status(a)?;
    eprintln!("FIGURE clock: a's verdict: {}", status["verdict"]);
    ensure!(
        named && status["verdict"].as_str().is_some_and(|v| v.contains("ahead")),
        "a does not say that a member's clock is ahead: {status}"
    );
    ensure!(
        status["healthy"] == false,
        "a clock ten minutes ahead is not flagged: {status}"
    );

    // An invite with five minutes left, read by a clock ten minutes ahead:
    // the issuer judges it, by its own clock.
    let short = net.invite(a, &["--ttl", "5m"])?;
    net.join(e, names[e], &short)
        .context("a joiner ten minutes ahead with a 5-minute invite")?;
    net.start(e)?;
    net.wait_alive(a, names, Duration::from_secs(30))?;

    // The clock that was ahead is set right; the agent restarts.
    if let Some(mut agent) = net.members[ahead].agent.take() {
        agent.stop()?;
    }
    net.members[ahead].program = vec![common::bin().into()];
    net.start(ahead)?;
    // It speaks first: its handshake initiations are the ones whose
    // timestamps went back.
    for to in [a, behind, d] {
        let ip: Ipv4Addr = net.address(to)?.parse()?;
        ensure!(
            net.lab
                .wait_ping(&net.members[ahead].node, ip, Duration::from_secs(15)),
            "the member whose clock went back ten minutes no longer reaches {}",
            names[to]
        );
    }
    for i in [a, ahead, behind, d, e] {
        net.wait_alive(i, names, Duration::from_secs(30))?;
    }
    Ok(())
}
