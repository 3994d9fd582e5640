//! The sentences a new operator meets when something is off,
//! each reproduced as it happens: not root, an interface or a port
//! another agent holds (and that agent left untouched, also by an agent
//! with the same interface name in another namespace), a public --cidr, an
//! upper-case name, `ping --count 0`, and `status` while the agent stops
//! after `leave`. Each must say what is wrong and what to do, and exit 1.

mod common;

use anyhow::{bail, Context, Result};
use std::time::Duration;
use testbed::{Lab, Node};

/// Runs `args` in `node`; it must fail: its stderr.
fn refused(lab: &Lab, node: &Node, args: &[&str]) -> Result<String> {
    let out = lab.exec(node, args)?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        bail!(
            "{args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    if out.status.code() != Some(1) && out.status.code() != Some(2) {
        bail!("{args:?} exited with {}: {err}", out.status);
    }
    Ok(err)
}

#[test]
fn mistakes_are_answered_with_what_to_do() -> Result<()> {
    if testbed::skip_unless_root("messages lab") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let r = scenario(&lab);
    lab.check(r)
}

fn scenario(lab: &Lab) -> Result<()> {
    let bin = common::bin();
    let a = lab.add_node("a")?;
    let dir = |n: &str| lab.dir().join(n).to_string_lossy().into_owned();
    let (one, two, three) = (dir("one"), dir("two"), dir("three"));

    // Before anything runs: names, ranges, counts.
    let why = refused(lab, &a, &[bin, "init", "--name", "Web-1", "--state", &one])?;
    assert!(
        why.contains("node names are lowercase: use --name web-1"),
        "{why}"
    );
    let why = refused(
        lab,
        &a,
        &[
            bin,
            "init",
            "--name",
            "w",
            "--cidr",
            "8.8.8.0/24",
            "--state",
            &one,
        ],
    )?;
    assert!(
        why.contains("public address space") && why.contains("--allow-public-range"),
        "{why}"
    );
    let why = refused(
        lab,
        &a,
        &[bin, "ping", "x", "--count", "0", "--state", &one],
    )?;
    assert!(why.contains("0 is not in 1..=100000"), "{why}");
    let why = refused(lab, &a, &[bin, "status", "--state", &one])?;
    assert!(
        why.contains("run `cladnet init` or `cladnet join` first"),
        "{why}"
    );

    // A first node; a second one on other ports in the same namespace.
    let init = |name: &str, cidr: &str, extra: &[&str], state: &str| {
        let args = [
            &[bin, "init", "--name", name, "--cidr", cidr][..],
            extra,
            &["--state", state],
        ]
        .concat();
        lab.run(&a, &args)
    };
    init("one", "100.64.9.0/24", &["--network", "lab"], &one)?;
    init(
        "two",
        "100.64.10.0/24",
        &[
            "--listen",
            "0.0.0.0:51830",
            "--control-listen",
            "0.0.0.0:51831",
        ],
        &two,
    )?;
    init("three", "100.64.11.0/24", &[], &three)?;
    let iface = lab.ifname("one");
    let uapi = format!("/var/run/wireguard/{iface}.sock");
    lab.remove_on_drop(&uapi);
    let _one = lab.spawn(
        &a,
        "agent-one",
        &[bin, "agent", "--iface", &iface, "--state", &one],
    )?;
    let up = testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(50), || {
        lab.ok(&a, &[bin, "status", "--state", &one])
    });
    assert!(up, "the first agent did not come up");

    // Not root: says so (not "run init").
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let why = refused(
        lab,
        &a,
        &[&nobody[..], &[bin, "status", "--state", &one]].concat(),
    )?;
    assert!(why.contains("needs root"), "{why}");
    let why = refused(
        lab,
        &a,
        &[
            &nobody[..],
            &[bin, "agent", "--state", &one, "--iface", "x0"],
        ]
        .concat(),
    )?;
    assert!(why.contains("needs root"), "{why}");

    // The interface another agent holds: --iface; the first agent and its
    // sockets untouched.
    let why = refused(lab, &a, &[bin, "agent", "--iface", &iface, "--state", &two])?;
    assert!(
        why.contains("already in use") && why.contains("--iface"),
        "{why}"
    );
    assert!(
        std::path::Path::new(&uapi).exists(),
        "the first agent's UAPI socket was removed"
    );
    lab.run(&a, &[bin, "status", "--state", &one])
        .context("the first agent stopped answering")?;

    // The same interface name in another namespace (containers share
    // /run): the second agent runs without WireGuard's socket, says why,
    // and on its way out removes nothing of the first's.
    let b = lab.add_node("b")?;
    let mut second = lab.spawn(
        &b,
        "agent-two",
        &[bin, "agent", "--iface", &iface, "--state", &two],
    )?;
    let up = testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(50), || {
        lab.ok(&b, &[bin, "status", "--state", &two])
    });
    assert!(
        up,
        "the second agent did not come up: {}",
        second.log_tail(5)
    );
    assert!(
        second.log().contains("wg show will not see this agent"),
        "{}",
        second.log_tail(5)
    );
    second.stop()?;
    assert!(
        std::path::Path::new(&uapi).exists(),
        "the second agent removed the first agent's UAPI socket"
    );
    lab.run(&a, &["wg", "show", &iface])
        .context("`wg show` no longer reaches the first agent")?;

    // A port another agent holds: `cladnet set --listen`.
    let why = refused(lab, &a, &[bin, "agent", "--iface", "x1", "--state", &three])?;
    assert!(
        why.contains("UDP 0.0.0.0:51820 is already in use") && why.contains("cladnet set --listen"),
        "{why}"
    );
    let said = lab.run(
        &a,
        &[
            bin,
            "set",
            "--listen",
            "0.0.0.0:51840",
            "--control-listen",
            "0.0.0.0:51841",
            "--state",
            &three,
        ],
    )?;
    assert!(said.starts_with("saved:"), "{said}");

    // `status` while the agent stops after `leave`: the agent still
    // answers during its farewell (standing: left), or one sentence once
    // it stopped — never a parse error.
    lab.run(&a, &[bin, "leave", "--state", &one])?;
    let out = lab.exec(&a, &[bin, "status", "--state", &one])?;
    let (said, why) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if out.status.success() {
        assert!(said.contains("standing: left"), "{said}");
    } else {
        assert!(
            why.contains("the agent is stopping") || why.contains("is not running"),
            "{why}"
        );
    }
    Ok(())
}
