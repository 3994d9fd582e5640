//! Asking any node about the whole network: the RTT matrix of four members
//! printed on one of them, `--via` answers from another member (and refusals
//! for outsiders and unknown targets), `ping` over the overlay, and the
//! Prometheus endpoint and mesh page on `--metrics-listen`.

mod common;

use anyhow::{bail, Context, Result};
use common::net::{setup, Net};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use testbed::serde_json::{self, Value};
use testbed::Lab;

const METRICS_PORT: &str = "9100";

#[test]
fn any_member_shows_the_network_and_answers_for_others() -> Result<()> {
    if testbed::skip_unless_root("observe lab") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let mut net = setup(lab, &["a", "b", "c", "d", "x"])?;
    let r = scenario(&mut net);
    net.lab.check(r)
}

fn query(net: &Net, i: usize, args: &[&str]) -> Result<Value> {
    Ok(serde_json::from_str(&net.cli(i, args)?)?)
}

/// Unordered pairs with a measured RTT in a `metrics` document.
fn measured_pairs(m: &Value) -> BTreeSet<(String, String)> {
    m["rtt"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["rtt_ms"].as_f64().is_some())
        .filter_map(|r| {
            let (f, t) = (
                r["from"].as_str()?.to_string(),
                r["to"].as_str()?.to_string(),
            );
            Some(if f < t { (f, t) } else { (t, f) })
        })
        .collect()
}

/// The stable part of a `peers` document: name, address, endpoint, path.
fn peer_identity(p: &Value) -> BTreeSet<String> {
    p.as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            format!(
                "{} {} {} {}",
                x["name"], x["address"], x["endpoint"], x["path"]
            )
        })
        .collect()
}

fn scenario(net: &mut Net) -> Result<()> {
    let (a, b, c, d, x) = (0, 1, 2, 3, 4);
    net.init(a, "a")?;
    let metrics_at = format!("{}:{METRICS_PORT}", net.ip(a));
    net.start_with(a, &["--metrics-listen", &metrics_at])?;
    for (i, name, via) in [(b, "b", a), (c, "c", b), (d, "d", c)] {
        let t = net.invite(via, &[])?;
        net.join(i, name, &t)?;
        net.start(i)?;
    }
    let last_join = Instant::now();

    // The RTT matrix on any one member covers all six pairs.
    let mut last = Value::Null;
    let complete = testbed::wait_until_every(
        Duration::from_secs(60),
        Duration::from_secs(1),
        || match query(net, b, &["metrics", "--json"]) {
            Ok(m) => {
                let full = measured_pairs(&m).len() == 6;
                last = m;
                full
            }
            Err(_) => false,
        },
    );
    assert!(complete, "b's RTT matrix is incomplete after 60 s: {last}");
    eprintln!(
        "FIGURE RTT matrix complete on b {:?} after the last join",
        last_join.elapsed()
    );
    let nodes = last["nodes"].as_array().map_or(0, Vec::len);
    assert_eq!(nodes, 4, "metrics lists four nodes: {last}");
    let table = net.cli(b, &["metrics"])?;
    assert!(
        table.contains("RTT") && table.contains(" -> "),
        "human table: {table}"
    );

    // peers --via c on a equals peers on c.
    let here = query(net, c, &["peers", "--json"])?;
    let there = query(net, a, &["peers", "--json", "--via", "c"])?;
    assert_eq!(peer_identity(&here), peer_identity(&there));
    assert_eq!(peer_identity(&here).len(), 3, "c has three peers: {here}");
    // By control address and by overlay address too.
    let c_ctl = format!("{}:51821", net.ip(c));
    let st = query(net, a, &["status", "--json", "--via", &c_ctl])?;
    assert_eq!(st["name"], "c");
    let c_addr = net.address(c)?;
    assert_eq!(
        query(net, d, &["status", "--json", "--via", &c_addr])?["name"],
        "c"
    );

    // Unknown target; a node of another network.
    let out = net.lab.exec(
        &net.members[a].node,
        &[
            common::bin(),
            "peers",
            "--via",
            "nosuch",
            "--state",
            &net.members[a].state.to_string_lossy(),
        ],
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no member is called"),
        "unknown target: {err}"
    );
    let mut other: Vec<String> = vec![common::bin().into(), "init".into()];
    other.extend(net.node_args("x"));
    other.extend([
        "--cidr".into(),
        "100.65.0.0/24".into(),
        "--state".into(),
        net.members[x].state.to_string_lossy().into_owned(),
    ]);
    net.lab.run(&net.members[x].node, &other)?;
    net.start(x)?;
    let a_ctl = format!("{}:51821", net.ip(a));
    let out = net.lab.exec(
        &net.members[x].node,
        &[
            common::bin(),
            "peers",
            "--via",
            &a_ctl,
            "--state",
            &net.members[x].state.to_string_lossy(),
        ],
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("only members"),
        "outsider: {err}"
    );
    // Forged endpoint echoes from the outsider, questions and answers with
    // made-up key ids and MACs: dropped and counted, never answered.
    let dropped = |net: &Net| -> Result<u64> {
        let st = query(net, a, &["status", "--json"])?;
        st["echo"]["dropped"]
            .as_u64()
            .context("status.echo.dropped")
    };
    let before = dropped(net)?;
    let forge = format!(
        "import os, socket, struct\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(1.0)\n\
         for i in range(20):\n    s.sendto(struct.pack('<I', 18) + os.urandom(32), ('{a_ip}', 51820))\n\
         for i in range(20):\n    s.sendto(struct.pack('<I', 19) + os.urandom(52), ('{a_ip}', 51820))\n\
         try:\n    s.recvfrom(100)\n    print('answered')\n\
         except socket.timeout:\n    print('silent')\n",
        a_ip = net.ip(a)
    );
    let out = net
        .lab
        .run(&net.members[x].node, &["python3", "-c", &forge])?;
    assert_eq!(out.trim(), "silent", "a forged echo question got an answer");
    let counted =
        testbed::wait_until_every(Duration::from_secs(5), Duration::from_millis(200), || {
            dropped(net).is_ok_and(|n| n >= before + 40)
        });
    assert!(counted, "40 forged echoes should be counted as dropped");

    let unreachable = format!("{}:51899", net.ip(a));
    let out = net.lab.exec_timeout(
        &net.members[x].node,
        &[
            common::bin(),
            "members",
            "--via",
            &unreachable,
            "--state",
            &net.members[x].state.to_string_lossy(),
        ],
        Duration::from_secs(30),
    )?;
    assert!(
        !out.status.success(),
        "an address where nothing answers must fail"
    );

    // ping by name over the overlay, with the path.
    let out = net.cli(a, &["ping", "d", "--count", "3"])?;
    assert!(
        out.contains("reply from d") && out.contains("direct via"),
        "ping: {out}"
    );

    // Prometheus and the mesh page, as a scraper and a browser get them.
    let metrics = net.lab.run(
        &net.members[b].node,
        &["curl", "-sf", &format!("http://{metrics_at}/metrics")],
    )?;
    for series in [
        "cladnet_peer_rtt_seconds{peer=\"b\"}",
        "cladnet_peer_rx_bytes_total{peer=\"c\"}",
        "cladnet_peer_tx_packets_total{peer=\"d\"}",
        "cladnet_peer_handshakes_total{peer=\"b\"}",
        "cladnet_dropped_packets_total{reason=\"replay\"}",
        "cladnet_gossip_messages_total{direction=\"in\"}",
        "cladnet_gossip_bytes_total{direction=\"out\"}",
        "cladnet_members{state=\"alive\"} 4",
        "cladnet_build_info{version=",
        "cladnet_healthy 1",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "cladnet_peer_last_handshake_timestamp_seconds{peer=\"b\"} 1",
        "cladnet_relayed_bytes_total ",
        "cladnet_relay_refused_total ",
        "cladnet_echo_questions_total{result=\"answered\"}",
        "cladnet_echo_questions_total{result=\"dropped\"}",
    ] {
        assert!(metrics.contains(series), "missing {series} in:\n{metrics}");
    }
    let page = net.lab.run(
        &net.members[b].node,
        &["curl", "-sf", &format!("http://{metrics_at}/")],
    )?;
    let svg = page
        .split("<svg")
        .nth(1)
        .and_then(|rest| rest.split("</svg>").next())
        .context("the page has no drawing")?;
    let svg = format!("<svg{svg}</svg>");
    // The drawing is well-formed XML, names every member and draws measured links.
    let check = net.lab.exec(&net.members[b].node, &["python3", "-c", "import sys, xml.etree.ElementTree as E; r = E.fromstring(sys.argv[1]); ns='{http://www.w3.org/2000/svg}'; print(len(r.findall(ns+'line')), ' '.join(t.text for t in r.iter(ns+'text')))", &svg])?;
    let parsed = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "SVG does not parse: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let lines: usize = parsed
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(lines >= 6, "the page draws {lines} links: {parsed}");
    for name in ["a", "b", "c", "d"] {
        assert!(
            parsed.split_whitespace().any(|w| w == name),
            "{name} not drawn: {parsed}"
        );
    }
    assert!(
        svg.contains("#2e7d32"),
        "LAN links should be green (< 5 ms)"
    );
    let missing = net.lab.exec(
        &net.members[b].node,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{metrics_at}/nope"),
        ],
    )?;
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");

    // Gossip bytes per node per second, measured on a quiet 4-node network.
    let g0 = query(net, b, &["status", "--json"])?["gossip"].clone();
    std::thread::sleep(Duration::from_secs(20));
    let g1 = query(net, b, &["status", "--json"])?["gossip"].clone();
    let rate = |k: &str| (g1[k].as_f64().unwrap_or(0.0) - g0[k].as_f64().unwrap_or(0.0)) / 20.0;
    eprintln!(
        "FIGURE control-plane payload on b, 4 members, quiet: in {:.0} B/s ({:.2} msg/s), out {:.0} B/s",
        rate("in_bytes"), rate("in_messages"), rate("out_bytes")
    );
    if rate("in_bytes") <= 0.0 {
        bail!("no control-plane traffic measured: {g0} → {g1}");
    }

    // The mesh page as a person sees it, in a real browser: d freezes;
    // a's page draws it suspect and none of its links green.
    net.members[d]
        .agent
        .as_mut()
        .context("d runs")?
        .signal(libc::SIGSTOP)?;
    let frozen_at = Instant::now();
    let suspect =
        testbed::wait_until_every(Duration::from_secs(60), Duration::from_millis(500), || {
            net.members(a).is_ok_and(|l| {
                l.iter()
                    .any(|m| m["name"] == "d" && m["state"] == "suspect")
            })
        });
    let dom = browse(net, b, &format!("http://{metrics_at}/"));
    net.members[d]
        .agent
        .as_mut()
        .context("d runs")?
        .signal(libc::SIGCONT)?;
    assert!(suspect, "a never saw d as suspect");
    eprintln!(
        "FIGURE d frozen to drawn suspect: {:.0} s",
        frozen_at.elapsed().as_secs_f64()
    );
    let dom = dom?;
    assert!(
        dom.contains("data-name=\"d\" data-state=\"suspect\""),
        "d not drawn suspect:\n{dom}"
    );
    assert!(dom.contains("you are here"), "no \"you are here\"");
    let d_links: Vec<&str> = dom
        .split("<line ")
        .skip(1)
        .filter(|l| l.contains("data-from=\"d\"") || l.contains("data-to=\"d\""))
        .collect();
    assert!(!d_links.is_empty(), "no link of d drawn");
    for l in &d_links {
        assert!(
            !l.contains("data-look=\"green\""),
            "a link of frozen d is green: {l}"
        );
    }
    Ok(())
}

/// Loads `url` in headless Chromium inside member `i`'s namespace: the DOM
/// after scripts ran; a 1280×800 screenshot is kept in the lab's directory.
fn browse(net: &Net, i: usize, url: &str) -> Result<String> {
    let shot = net.lab.dir().join("mesh-page.png");
    let profile = net.lab.dir().join("chromium-profile");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,800",
    ];
    let node = &net.members[i].node;
    let user = format!("--user-data-dir={}", profile.display());
    let mut args = vec!["chromium", user.as_str()];
    args.extend(flags);
    let screenshot = format!("--screenshot={}", shot.display());
    let mut shoot = args.clone();
    shoot.extend([screenshot.as_str(), url]);
    net.lab
        .exec_timeout(node, &shoot, Duration::from_secs(60))?;
    args.extend(["--dump-dom", url]);
    let out = net.lab.exec_timeout(node, &args, Duration::from_secs(60))?;
    if !out.status.success() {
        bail!("chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
