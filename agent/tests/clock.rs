//! Clock skew, as it happens on real fleets: members whose wall clocks are
//! ten minutes ahead and ten minutes behind (libfaketime, for the agent
//! and the CLI alike) join, invite and admit others, and the network agrees
//! on one view; members ahead are named by the others' `status`, one behind
//! shows old samples in `metrics`; an invite's expiry is judged by its
//! issuer's clock alone, so a joiner whose clock reads it as expired still
//! joins. Then a member ahead, having spoken first to its peers, has its
//! clock set right, restarts and speaks first again: its handshakes now
//! carry timestamps ten minutes older than the ones its peers hold, and the
//! tunnels must come back anyway.
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

/// libfaketime's library (Debian's `libfaketime`, which `faketime` pulls in).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// `program` for member `i`: cladnet under a wall clock shifted by `shift`
/// (libfaketime's syntax, e.g. "+10m"), the monotonic clock left alone.
/// The library is preloaded through `env`, which execs: the `faketime`
/// wrapper forks, and a lab stopping the wrapper left the agent running.
fn shifted(shift: &str) -> Vec<String> {
    vec![
        "env".into(),
        format!("LD_PRELOAD={LIBFAKETIME}"),
        format!("FAKETIME={shift}"),
        "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
        common::bin().into(),
    ]
}

#[test]
fn members_ten_minutes_off_join_invite_agree_and_recover() -> Result<()> {
    if testbed::skip_unless_root("clock lab") {
        return Ok(());
    }
    ensure!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "the clock lab needs {LIBFAKETIME} (apt install faketime; scripts/test.sh does)"
    );
    let names = ["a", "ahead", "behind", "d", "e"];
    let mut net = setup(Lab::new()?, &names)?;
    let dir = net.lab.dir().display().to_string();
    let r = scenario(&mut net, &names);
    let r = net.lab.check(r);
    drop(net);
    // Regression: agents under the `faketime` wrapper outlived the lab.
    let left: Vec<String> = std::fs::read_dir("/proc")?
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&dir))
        .collect();
    ensure!(left.is_empty(), "processes outlived the lab: {left:?}");
    r
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
        pings(net, names, from, to)?;
    }
    // Metrics records carry sample times: the member ahead is named, and
    // the one behind shows samples ten minutes old.
    let flagged = |s: &testbed::serde_json::Value| skewed(s) == ["ahead"];
    testbed::wait_until(Duration::from_secs(30), || {
        net.status(a).is_ok_and(|s| flagged(&s))
    });
    let status = net.status(a)?;
    eprintln!("FIGURE clock: a's verdict: {}", status["verdict"]);
    ensure!(
        flagged(&status) && status["healthy"] == false,
        "a does not flag the member whose clock is ten minutes ahead: {status}"
    );
    // Metrics records go out every 20 s or so.
    let sample_age = || -> Option<u64> {
        let text = net.cli(a, &["metrics", "--json"]).ok()?;
        let metrics: testbed::serde_json::Value = testbed::serde_json::from_str(&text).ok()?;
        metrics["nodes"]
            .as_array()?
            .iter()
            .find(|x| x["name"] == names[behind])?["sampled_ago_ms"]
            .as_u64()
    };
    testbed::wait_until(Duration::from_secs(45), || sample_age().is_some());
    let behind_age = sample_age().context("a never received a metrics sample from behind")?;
    eprintln!("FIGURE clock: a reads behind's metrics as sampled {behind_age} ms ago");
    ensure!(
        behind_age >= 9 * 60 * 1000,
        "behind's clock does not look ten minutes behind ({behind_age} ms): faketime had no effect"
    );

    // An invite with five minutes left, read by a clock ten minutes ahead:
    // the issuer judges it, by its own clock.
    let short = net.invite(a, &["--ttl", "5m"])?;
    net.join(e, names[e], &short)
        .context("a joiner ten minutes ahead with a 5-minute invite")?;
    net.start(e)?;
    net.wait_alive(a, names, Duration::from_secs(30))?;
    let both = |s: &testbed::serde_json::Value| skewed(s) == ["ahead", "e"];
    testbed::wait_until(Duration::from_secs(30), || {
        net.status(a).is_ok_and(|s| both(&s))
    });
    let status = net.status(a)?;
    ensure!(
        both(&status),
        "a does not name e, whose clock is ten minutes ahead too: {status}"
    );

    // The member ahead restarts and speaks first, so its peers hold
    // handshake timestamps ten minutes in the future; then its clock is set
    // right and it restarts and speaks first again: its initiations now
    // carry timestamps older than the ones its peers hold.
    for program in [shifted("+10m"), vec![common::bin().into()]] {
        if let Some(mut agent) = net.members[ahead].agent.take() {
            agent.stop()?;
        }
        net.members[ahead].program = program;
        net.start(ahead)?;
        for to in [a, behind, d] {
            pings(net, names, ahead, to)?;
        }
    }
    for i in [a, ahead, behind, d, e] {
        net.wait_alive(i, names, Duration::from_secs(30))?;
    }
    Ok(())
}

/// Member `from` pings `to`'s overlay address within 15 s.
fn pings(net: &Net, names: &[&str], from: usize, to: usize) -> Result<()> {
    let ip: Ipv4Addr = net.address(to)?.parse()?;
    ensure!(
        net.lab
            .wait_ping(&net.members[from].node, ip, Duration::from_secs(15)),
        "{} does not reach {} over the overlay",
        names[from],
        names[to]
    );
    Ok(())
}

/// The members a `status` verdict names as having a clock ahead, sorted.
fn skewed(status: &testbed::serde_json::Value) -> Vec<String> {
    let verdict = status["verdict"].as_str().unwrap_or_default();
    let Some(names) = verdict
        .split_once("the clock of ")
        .and_then(|(_, rest)| rest.split_once(" is over a minute ahead"))
        .map(|(names, _)| names)
    else {
        return vec![];
    };
    let mut names: Vec<String> = names.split(", ").map(str::to_string).collect();
    names.sort();
    names
}
