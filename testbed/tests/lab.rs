//! Lab self-tests (root only; they skip loudly otherwise).

use anyhow::{ensure, Result};
use std::net::SocketAddrV4;
use std::time::Duration;
use testbed::wg::{self, Kind};
use testbed::wire;
use testbed::{skip_unless_root, Lab};

#[test]
fn two_namespaces_ping_over_underlay() -> Result<()> {
    if skip_unless_root("two_namespaces_ping_over_underlay") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let a = lab.add_node("a")?;
    let b = lab.add_node("b")?;
    let (aa, ba) = (lab.addr(&a), lab.addr(&b));
    ensure!(
        lab.wait_ping(&a, ba, Duration::from_secs(5)),
        "a cannot ping b ({ba})"
    );
    ensure!(lab.ping1(&b, aa), "b cannot ping a ({aa})");
    // roaming helper: b moves to a new address, old one is gone
    let nb = "198.18.0.200".parse()?;
    lab.set_addr(&b, nb)?;
    ensure!(
        lab.wait_ping(&a, nb, Duration::from_secs(5)),
        "a cannot ping b's new address"
    );
    ensure!(!lab.ping1(&a, ba), "old address still answers");
    // the namespaces exist while the lab lives and are gone after
    let names = [a.ns.clone(), b.ns.clone()];
    let listed = std::fs::read_dir("/run/netns")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    ensure!(
        names.iter().all(|n| listed.contains(n)),
        "namespaces not listed"
    );
    let mut p = lab.spawn(&a, "sleeper", &["sleep", "30"])?;
    ensure!(p.is_alive(), "sleep not running");
    let pid = p.pid();
    drop(p);
    ensure!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "sleeper not reaped"
    );
    drop(lab);
    for n in names {
        ensure!(
            !std::path::Path::new(&format!("/run/netns/{n}")).exists(),
            "{n} left behind"
        );
    }
    Ok(())
}

/// Validates the hostile-input generator's initiation builder: a crafted
/// initiation with a key wireguard-go knows must be answered with a response.
#[test]
fn crafted_initiation_is_answered_by_wireguard_go() -> Result<()> {
    if skip_unless_root("crafted_initiation_is_answered_by_wireguard_go") {
        return Ok(());
    }
    let Some(wgo) = Kind::wireguard_go() else {
        eprintln!("!!! SKIPPED: wireguard-go not installed (scripts/test.sh installs it)");
        return Ok(());
    };
    let lab = Lab::new()?;
    let a = lab.add_node("a")?;
    let m = lab.add_node("m")?;
    let mut rng = testbed::rng::Rng::from_time();
    let (resp_priv, init_priv) = (rng.key(), rng.key());
    let conf = wg::IfaceConf {
        private_key: wire::encode_key(&resp_priv),
        listen_port: 51820,
        addresses: vec!["100.64.0.1/24".into()],
        peers: vec![wg::PeerConf {
            public_key: wire::encode_key(&wire::public_key(&init_priv)),
            allowed_ips: vec!["100.64.0.2/32".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let _t = wg::start(&lab, &a, &wgo, &lab.ifname("a"), &conf)?;
    let ini = wire::Initiator::new(init_priv, rng.key(), wire::public_key(&resp_priv));
    let msg = ini.initiation(0xdead_beef, wire::tai64n_now());
    let dst = SocketAddrV4::new(lab.addr(&a), 51820);
    let reply = lab.in_netns(&m, || -> Result<Vec<u8>> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.send_to(&msg, dst)?;
        let mut buf = [0u8; 256];
        let (n, _) = s.recv_from(&mut buf)?;
        Ok(buf[..n].to_vec())
    })??;
    ensure!(
        reply.len() == wire::RESPONSE_LEN && reply[0] == 2,
        "expected a handshake response, got {reply:?}"
    );
    ensure!(
        reply[8..12] == 0xdead_beef_u32.to_le_bytes(),
        "response not addressed to our sender index"
    );
    Ok(())
}

/// Two wireguard-go ends through the lab: the interop plumbing itself works.
#[test]
fn wireguard_go_pair_over_lab() -> Result<()> {
    if skip_unless_root("wireguard_go_pair_over_lab") {
        return Ok(());
    }
    let Some(wgo) = Kind::wireguard_go() else {
        eprintln!("!!! SKIPPED: wireguard-go not installed");
        return Ok(());
    };
    let lab = Lab::new()?;
    let a = lab.add_node("a")?;
    let b = lab.add_node("b")?;
    let keys = [
        wg::KeyPair::generate_for(&wgo)?,
        wg::KeyPair::generate_for(&wgo)?,
    ];
    let confs = wg::full_mesh(&keys, &[lab.addr(&a), lab.addr(&b)], 51820);
    let ta = wg::start(&lab, &a, &wgo, &lab.ifname("a"), &confs[0])?;
    let tb = wg::start(&lab, &b, &wgo, &lab.ifname("b"), &confs[1])?;
    ensure!(
        lab.wait_ping(&a, tb.overlay(), Duration::from_secs(10)),
        "overlay ping failed"
    );
    let s = ta.show(&lab)?;
    let p = wg::Tunnel::peer(&s, &keys[1].public)
        .ok_or_else(|| anyhow::anyhow!("peer missing: {s}"))?;
    ensure!(!p["last_handshake_ms"].is_null(), "no handshake: {s}");
    Ok(())
}
