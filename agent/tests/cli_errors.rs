//! `cladnet agent` refuses bad input with a non-zero exit and a clear message
//! on stderr, and leaves no device behind.

mod common;

use anyhow::{ensure, Result};
use common::*;
use std::time::Duration;
use testbed::wg::{IfaceConf, KeyPair, PeerConf};
use testbed::{skip_unless_root, Lab, Node};

/// Runs the agent (bounded: 15 s), prefixed by `wrapper` (e.g. a privilege
/// drop), and expects it to fail on its own.
fn expect_failure(
    lab: &Lab,
    node: &Node,
    what: &str,
    conf_text: &str,
    ifname: &str,
    wrapper: &[&str],
) -> Result<String> {
    let cfg = lab.write_file(&format!("{ifname}.conf"), conf_text)?;
    let sock = lab.dir().join(format!("{ifname}.sock"));
    let agent = testbed::wg::cladnet_agent_argv(std::path::Path::new(bin()), &cfg, ifname, &sock);
    let wrapper: Vec<String> = wrapper.iter().map(|w| w.to_string()).collect();
    let out = lab.exec_timeout(node, &[wrapper, agent].concat(), Duration::from_secs(15))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "cli_errors [{what}]: {} stderr: {}",
        out.status,
        stderr.trim()
    );
    ensure!(!out.status.success(), "{what}: agent exited 0");
    ensure!(!stderr.trim().is_empty(), "{what}: nothing on stderr");
    ensure!(
        !lab.ok(node, &["ip", "link", "show", "dev", ifname]),
        "{what}: device {ifname} left behind"
    );
    Ok(stderr)
}

#[test]
fn agent_rejects_bad_input() -> Result<()> {
    if skip_unless_root("agent_rejects_bad_input") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let r = run(&lab);
    lab.check(r)
}

fn run(lab: &Lab) -> Result<()> {
    let n = lab.add_node("a")?;
    let keys = [
        KeyPair::generate_with(std::path::Path::new(bin()))?,
        KeyPair::generate_with(std::path::Path::new(bin()))?,
    ];
    let good = IfaceConf {
        private_key: keys[0].private.clone(),
        listen_port: PORT,
        addresses: vec!["100.64.0.1/24".into()],
        mtu: None,
        peers: vec![PeerConf {
            public_key: keys[1].public.clone(),
            endpoint: Some(format!("198.18.0.2:{PORT}").parse()?),
            allowed_ips: vec!["100.64.0.2/32".into()],
            ..PeerConf::default()
        }],
    };

    // Malformed private key.
    let bad_key = good.wg_quick().replace(&keys[0].private, "not-a-key");
    let e = expect_failure(lab, &n, "bad key", &bad_key, &lab.ifname("k"), &[])?;
    ensure!(
        !e.contains(&keys[0].private),
        "error output leaks key material"
    );

    // Missing [Interface] section.
    expect_failure(
        lab,
        &n,
        "no interface",
        "[Peer]\nPublicKey = x\n",
        &lab.ifname("i"),
        &[],
    )?;

    // A CIDR with an impossible prefix: the message names the line and the value.
    let bad_cidr = good.wg_quick().replace("100.64.0.1/24", "100.64.0.1/33");
    let e = expect_failure(lab, &n, "bad CIDR", &bad_cidr, &lab.ifname("c"), &[])?;
    ensure!(
        e.contains("line") && e.contains("/33"),
        "bad-CIDR error should name line and value: {e}"
    );

    // No permission to create a TUN device (root without CAP_NET_ADMIN).
    let no_cap = [
        "setpriv",
        "--inh-caps=-net_admin",
        "--bounding-set=-net_admin",
    ];
    let e = expect_failure(
        lab,
        &n,
        "no TUN permission",
        &good.wg_quick(),
        &lab.ifname("t"),
        &no_cap,
    )?;
    ensure!(
        e.contains("CAP_NET_ADMIN"),
        "TUN-permission error should say what is needed: {e}"
    );
    ensure!(e.lines().count() == 1, "one sentence, one line: {e}");

    // Port in use: something else holds the UDP port.
    let _holder = lab.spawn(
        &n,
        "port-holder",
        &[
            "python3",
            "-c",
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',51820))\nprint('bound',flush=True)\ntime.sleep(40)",
        ],
    )?;
    let bound = testbed::wait_until(Duration::from_secs(10), || {
        lab.exec(&n, &["ss", "-Huln", "sport = :51820"])
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    });
    ensure!(bound, "port holder did not bind");
    let e = expect_failure(
        lab,
        &n,
        "port in use",
        &good.wg_quick(),
        &lab.ifname("p"),
        &[],
    )?;
    ensure!(
        e.contains("51820"),
        "port-in-use error should name the port: {e}"
    );
    Ok(())
}
