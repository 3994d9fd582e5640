//! cladnet as an operator installs it (issue 13): `scripts/package.sh`
//! builds the .deb with cargo-deb (from the debug binary the tests built);
//! it holds the binary, the systemd unit, man pages and completions;
//! `systemd-analyze verify` accepts the unit; it installs with `dpkg -i`
//! into a scratch root; and the installed binary runs a two-node network
//! the way the 5-minute guide says, without `--state` on the first node
//! (the default /var/lib/cladnet) and with `CLADNET_STATE` on the second:
//! init, agent, invite, join, members, ping, `status --check` (0 when
//! healthy, 1 with the reason once revoked), and names over DNS (`dig`)
//! that answer a member's address and NXDOMAIN once it is revoked (and
//! `ping` says it was revoked).

mod common;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testbed::Lab;

const DEFAULT_STATE: &str = "/var/lib/cladnet";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes the default state directory when dropped (the test made it).
struct DefaultState;

impl Drop for DefaultState {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(DEFAULT_STATE);
    }
}

#[test]
fn the_package_installs_and_runs_a_network_bare() -> Result<()> {
    if testbed::skip_unless_root("package lab") {
        return Ok(());
    }
    // The debug binary this test run built, packaged.
    let out = run(Command::new("bash")
        .arg(repo().join("scripts/package.sh"))
        .current_dir(repo())
        .env("CLADNET_PACKAGE_PROFILE", "dev")
        .env("CLADNET_PACKAGE_NO_BUILD", "1"))?;
    let deb = PathBuf::from(
        out.lines()
            .last()
            .context("package.sh printed nothing")?
            .trim(),
    );
    assert!(
        deb.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("cladnet_")),
        "{deb:?}"
    );
    let contents = run(Command::new("dpkg-deb").arg("-c").arg(&deb))?;
    for path in [
        "./usr/bin/cladnet",
        "./lib/systemd/system/cladnet.service",
        "./usr/share/man/man1/cladnet.1",
        "./usr/share/man/man1/cladnet-init.1",
        "./usr/share/bash-completion/completions/cladnet",
        "./usr/share/zsh/vendor-completions/_cladnet",
        "./usr/share/fish/vendor_completions.d/cladnet.fish",
    ] {
        assert!(
            contents.contains(path),
            "{path} is not in the package:\n{contents}"
        );
    }

    // Installed with dpkg into a scratch root.
    let lab = Lab::new()?;
    let root = lab.dir().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(f), "")?;
    }
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-depends", "--force-script-chrootless", "-i"])
        .arg(&deb))?;
    let bin = root.join("usr/bin/cladnet");
    let version = run(Command::new(&bin).arg("--version"))?;
    assert!(version.starts_with("cladnet "), "{version}");
    // The unit, as systemd reads it (its binary is the one installed).
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/cladnet.service"))?;
    let checked = lab.write_file(
        "cladnet.service",
        unit.replace("/usr/bin/cladnet", &bin.to_string_lossy()),
    )?;
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&checked)
        .output()?;
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && !said.contains("cladnet.service:"),
        "systemd-analyze verify: {said}"
    );
    for needed in [
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
        "StateDirectory=cladnet",
        "Restart=on-failure",
        "Type=exec",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    let r = network(&lab, &bin);
    lab.check(r)
}

fn network(lab: &Lab, bin: &Path) -> Result<()> {
    if Path::new(DEFAULT_STATE).exists() {
        bail!("{DEFAULT_STATE} exists on this machine: the test uses the default state directory and will not touch an existing one; move it away");
    }
    let _cleanup = DefaultState;
    let bin = bin.to_string_lossy().into_owned();
    let (a, b) = (lab.add_node("a")?, lab.add_node("b")?);
    let b_state = lab.dir().join("state-b").to_string_lossy().into_owned();
    let b_env = format!("CLADNET_STATE={b_state}");
    let said = lab.run(
        &a,
        &[
            &bin,
            "init",
            "--name",
            "a",
            "--network",
            "acme",
            "--cidr",
            "100.64.7.0/24",
        ],
    )?;
    assert!(said.contains("systemctl enable --now cladnet"), "{said}");
    let (ia, ib) = (lab.ifname("a"), lab.ifname("b"));
    for i in [&ia, &ib] {
        lab.remove_on_drop(format!("/var/run/wireguard/{i}.sock"));
    }
    let _agent_a = lab.spawn(&a, "agent-a", &[&bin, "agent", "--iface", &ia])?;
    let up = |node, env: &[&str]| {
        testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(50), || {
            lab.ok(node, &[env, &[bin.as_str(), "status", "--json"]].concat())
        })
    };
    assert!(up(&a, &[]), "the agent of a did not come up");
    let token = lab.run(&a, &[&bin, "invite"])?.trim().to_string();
    let said = lab.run(&b, &["env", &b_env, &bin, "join", &token, "--name", "b"])?;
    assert!(
        said.contains(&format!("cladnet agent --state {b_state}")),
        "{said}"
    );
    let _agent_b = lab.spawn(
        &b,
        "agent-b",
        &["env", &b_env, &bin, "agent", "--iface", &ib],
    )?;
    assert!(up(&b, &["env", &b_env]), "the agent of b did not come up");

    // Bare commands on a: members, ping, status --check.
    let alive =
        testbed::wait_until_every(Duration::from_secs(15), Duration::from_millis(200), || {
            lab.run(&a, &[&bin, "members"]).is_ok_and(|m| {
                m.lines()
                    .any(|l| l.starts_with("b ") && l.contains("alive"))
            })
        });
    assert!(
        alive,
        "a never listed b alive: {:?}",
        lab.run(&a, &[&bin, "members"])
    );
    lab.run(&a, &[&bin, "ping", "b", "--count", "1"])?;
    let check =
        testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(200), || {
            lab.run(&a, &[&bin, "status", "--check"])
                .is_ok_and(|s| s.contains("healthy: 1 of 1 members reachable, 1 direct"))
        });
    assert!(
        check,
        "status --check on a: {:?}",
        lab.exec(&a, &[&bin, "status", "--check"])
    );
    let status = lab.run(&a, &[&bin, "status"])?;
    assert!(status.starts_with("healthy:"), "{status}");

    // Names: b's address from a's DNS, over the overlay from b itself.
    let a_addr = overlay(lab, &a, &bin, &[])?;
    let b_addr = overlay(lab, &b, &bin, &["env", &b_env])?;
    let dig = |name: &str| {
        lab.run(
            &b,
            &[
                "dig",
                "+short",
                "+time=1",
                "+tries=2",
                &format!("@{a_addr}"),
                name,
                "A",
            ],
        )
    };
    let answered =
        testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(200), || {
            dig("b.acme.cladnet").is_ok_and(|s| s.trim() == b_addr)
        });
    assert!(
        answered,
        "dig b.acme.cladnet: {:?} (b is {b_addr})",
        dig("b.acme.cladnet")
    );
    let full = lab.run(
        &b,
        &[
            "dig",
            "+time=1",
            &format!("@{a_addr}"),
            "nobody.acme.cladnet",
            "A",
        ],
    )?;
    assert!(full.contains("NXDOMAIN"), "{full}");

    // Revoked: b says so and needs a human; its name is gone.
    lab.run(&a, &[&bin, "revoke", "b"])?;
    let revoked =
        testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(200), || {
            lab.exec(&b, &["env", &b_env, &bin, "status", "--check"])
                .is_ok_and(|o| {
                    !o.status.success()
                        && String::from_utf8_lossy(&o.stderr)
                            .contains("revoked: this node was revoked")
                })
        });
    assert!(
        revoked,
        "status --check on revoked b: {:?}",
        lab.exec(&b, &["env", &b_env, &bin, "status", "--check"])
    );
    let gone =
        testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(200), || {
            lab.run(
                &a,
                &[
                    "dig",
                    "+time=1",
                    &format!("@{a_addr}"),
                    "b.acme.cladnet",
                    "A",
                ],
            )
            .is_ok_and(|s| s.contains("NXDOMAIN"))
        });
    assert!(gone, "b.acme.cladnet still answered after b was revoked");
    let out = lab.exec(&a, &[&bin, "ping", "b", "--count", "1"])?;
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && why.contains("b was revoked from the network"),
        "{why}"
    );
    Ok(())
}

/// The overlay address of the node (its `status`).
fn overlay(lab: &Lab, node: &testbed::Node, bin: &str, env: &[&str]) -> Result<String> {
    let json = lab.run(node, &[env, &[bin, "status", "--json"]].concat())?;
    let v: testbed::serde_json::Value = testbed::serde_json::from_str(&json)?;
    v["address"]
        .as_str()
        .map(str::to_string)
        .context("no address in status")
}
