//! Federation as a user makes it (issue 12): networks created
//! independently (alpha: 3 nodes, a2 invited with `--tag shared`; beta: 3;
//! gamma: 1; delta only to overlap beta); alpha offers with `--expose
//! shared`, beta accepts with `--expose all`: `federate list` on every
//! member of both shows it, a2 and every beta node ping each other both
//! ways, the untagged alpha nodes and beta reach each other in neither
//! direction and beta never lists them; beta federates with gamma and alpha
//! never lists or reaches gamma; a beta revocation reaches alpha in
//! seconds; a federated node killed with -9 reaches beta again on its own;
//! `federate end` cuts every cross pair within seconds, leaves each mesh
//! and beta–gamma up, and a later new agreement is possible. Bad offers
//! are refused with one sentence.

mod common;

use anyhow::{bail, Context, Result};
use common::net::{setup, Net};
use std::time::{Duration, Instant};
use testbed::serde_json::{self, Value};
use testbed::Lab;

const ALPHA: &str = "100.64.1.0/24";
const BETA: &str = "100.64.2.0/24";
const GAMMA: &str = "100.64.3.0/24";
/// Overlaps BETA.
const DELTA: &str = "100.64.2.128/25";

#[test]
fn federated_networks_reach_what_they_expose_and_nothing_else() -> Result<()> {
    if testbed::skip_unless_root("federation lab") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let mut net = setup(lab, &["a1", "a2", "a3", "b1", "b2", "b3", "g1", "d1"])?;
    let r = scenario(&mut net);
    net.lab.check(r)
}

/// `federate list --json` of member `i`.
fn list(net: &Net, i: usize) -> Result<Vec<Value>> {
    let v: Value = serde_json::from_str(&net.cli(i, &["federate", "list", "--json"])?)?;
    v.as_array().cloned().context("federate list is not a list")
}

/// Waits until every member in `who` lists exactly one agreement with `org`
/// in `state`; the time it took.
fn wait_listed(net: &Net, who: &[usize], org: &str, state: &str) -> Result<Duration> {
    let start = Instant::now();
    let ok = testbed::wait_until_every(Duration::from_secs(15), Duration::from_millis(100), || {
        who.iter().all(|i| {
            list(net, *i).is_ok_and(|l| {
                l.iter()
                    .filter(|f| f["org"] == org)
                    .map(|f| f["state"].clone())
                    .collect::<Vec<_>>()
                    == vec![Value::from(state)]
            })
        })
    });
    if !ok {
        let seen: Vec<String> = who
            .iter()
            .map(|i| format!("{}: {:?}", net.members[*i].node.name, list(net, *i)))
            .collect();
        bail!("not every member lists {org} as {state}: {seen:?}");
    }
    Ok(start.elapsed())
}

/// Runs a CLI command of member `i` that must fail; its error text.
fn refused(net: &Net, i: usize, args: &[&str]) -> Result<String> {
    match net.cli(i, args) {
        Ok(out) => bail!("{args:?} succeeded: {out}"),
        Err(e) => Ok(e.to_string()),
    }
}

/// Member `i`'s overlay address.
fn addr(net: &Net, i: usize) -> Result<String> {
    net.address(i)
}

/// Waits until every (from, to) pair answers one ping over the overlay;
/// the time it took.
fn wait_pings(net: &Net, pairs: &[(usize, usize)], timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    for (from, to) in pairs {
        let dst = addr(net, *to)?;
        let left = timeout.saturating_sub(start.elapsed());
        if !net.lab.wait_ping(&net.members[*from].node, &dst, left) {
            bail!(
                "no ping {} -> {} ({dst}) within {timeout:?}",
                net.members[*from].node.name,
                net.members[*to].node.name
            );
        }
    }
    Ok(start.elapsed())
}

/// Checks that no (from, to) pair answers a ping (two tries each).
fn no_pings(net: &Net, pairs: &[(usize, usize)]) -> Result<()> {
    for (from, to) in pairs {
        let dst = addr(net, *to)?;
        let node = &net.members[*from].node;
        if net.lab.ping1(node, &dst) || net.lab.ping1(node, &dst) {
            bail!(
                "{} reached {} ({dst}) and must not",
                node.name,
                net.members[*to].node.name
            );
        }
    }
    Ok(())
}

/// The names (NAME@ORG) member `i` lists.
fn listed(net: &Net, i: usize) -> Result<Vec<String>> {
    Ok(net
        .members(i)?
        .iter()
        .map(|m| {
            format!(
                "{}@{}",
                m["name"].as_str().unwrap_or("?"),
                m["org"].as_str().unwrap_or("?")
            )
        })
        .collect())
}

fn init_network(net: &mut Net, first: usize, name: &str, network: &str, cidr: &str) -> Result<()> {
    net.init_with(first, name, &["--network", network, "--cidr", cidr])?;
    net.start(first)
}

fn scenario(net: &mut Net) -> Result<()> {
    let (a1, a2, a3, b1, b2, b3, g1, d1) = (0, 1, 2, 3, 4, 5, 6, 7);
    init_network(net, a1, "a1", "alpha", ALPHA)?;
    let t = net.invite(a1, &["--tag", "shared"])?;
    net.join(a2, "a2", &t)?;
    net.start(a2)?;
    let t = net.invite(a1, &[])?;
    net.join(a3, "a3", &t)?;
    net.start(a3)?;
    init_network(net, b1, "b1", "beta", BETA)?;
    for (i, name) in [(b2, "b2"), (b3, "b3")] {
        let t = net.invite(b1, &[])?;
        net.join(i, name, &t)?;
        net.start(i)?;
    }
    init_network(net, g1, "g1", "gamma", GAMMA)?;
    init_network(net, d1, "d1", "delta", DELTA)?;
    net.wait_alive(a2, &["a1", "a2", "a3"], Duration::from_secs(20))?;
    net.wait_alive(b2, &["b1", "b2", "b3"], Duration::from_secs(20))?;

    // Refusals, each one sentence.
    let why = refused(net, a1, &["federate", "offer"])?;
    assert!(why.contains("--expose is required"), "{why}");
    let why = refused(net, a2, &["federate", "offer", "--expose", "all"])?;
    assert!(
        why.contains("does not hold the network's authority key"),
        "{why}"
    );
    let offer = net
        .cli(a1, &["federate", "offer", "--expose", "shared"])?
        .trim()
        .to_string();
    assert!(offer.starts_with("cladfed1."), "{offer}");
    let why = refused(net, a1, &["federate", "accept", &offer, "--expose", "all"])?;
    assert!(why.contains("your own network"), "{why}");
    let why = refused(net, b1, &["federate", "accept", &offer])?;
    assert!(why.contains("--expose is required"), "{why}");
    let why = refused(
        net,
        b1,
        &["federate", "accept", "cladfed1.garbage", "--expose", "all"],
    )?;
    assert!(why.contains("not a cladnet federation offer"), "{why}");
    let beta_offer = net
        .cli(b1, &["federate", "offer", "--expose", "all"])?
        .trim()
        .to_string();
    let why = refused(
        net,
        d1,
        &["federate", "accept", &beta_offer, "--expose", "all"],
    )?;
    assert!(
        why.contains(BETA) && why.contains(DELTA) && why.contains("overlaps"),
        "{why}"
    );

    // beta accepts alpha's offer: every member of both networks lists it,
    // and a2 (tagged shared) and every beta node ping each other.
    let started = Instant::now();
    let said = net.cli(b1, &["federate", "accept", &offer, "--expose", "all"])?;
    assert!(said.contains("federated with alpha"), "{said}");
    wait_listed(net, &[b1, b2, b3], "alpha", "active")?;
    wait_listed(net, &[a1, a2, a3], "beta", "active")?;
    eprintln!(
        "FIGURE federate accept to the agreement listed on all 6 members of both networks: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    wait_pings(net, &[(b1, a2)], Duration::from_secs(30))?;
    eprintln!(
        "FIGURE federate accept to the first cross-organisation ping (b1 -> a2): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let cross = [(a2, b1), (a2, b2), (a2, b3), (b2, a2), (b3, a2)];
    wait_pings(net, &cross, Duration::from_secs(30))?;
    eprintln!(
        "FIGURE federate accept to every exposed pair pinging both ways: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let item = list(net, a2)?
        .into_iter()
        .find(|f| f["org"] == "beta")
        .context("beta not listed")?;
    assert_eq!(item["exposes"], "shared", "{item}");
    assert_eq!(item["exposed_to_us"], "all", "{item}");
    assert_eq!(item["cidr"], BETA, "{item}");
    assert_eq!(item["members"], 3, "{item}");
    // The untagged alpha nodes: no tunnel either way, never listed by beta.
    no_pings(net, &[(a1, b1), (a3, b2), (b1, a1), (b2, a3), (b3, a1)])?;
    for i in [b1, b2, b3] {
        let names = listed(net, i)?;
        assert!(names.contains(&"a2@alpha".to_string()), "{names:?}");
        assert!(
            !names.iter().any(|n| n == "a1@alpha" || n == "a3@alpha"),
            "beta lists an unexposed alpha node: {names:?}"
        );
    }
    // Names repeat across organisations: NAME@ORG picks one.
    let why = refused(net, a2, &["ping", "b9@beta", "--count", "1"])?;
    assert!(why.contains("no member"), "{why}");
    net.cli(a2, &["ping", "b1@beta", "--count", "1"])?;

    // An admitter re-tags a3: it is exposed (both ways) within seconds,
    // and hidden again when the tag goes.
    let started = Instant::now();
    let said = net.cli(a1, &["tag", "a3", "shared"])?;
    assert!(said.contains("a3 now has tags [shared]"), "{said}");
    wait_pings(net, &[(b1, a3), (a3, b2)], Duration::from_secs(20))?;
    eprintln!(
        "FIGURE tag to the re-tagged node pinging across: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    net.cli(a1, &["tag", "a3", "--clear"])?;
    let hidden =
        testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(100), || {
            listed(net, b1).is_ok_and(|n| !n.contains(&"a3@alpha".to_string()))
        });
    assert!(
        hidden,
        "b1 still lists a3 after its tag went: {:?}",
        listed(net, b1)
    );
    no_pings(net, &[(b1, a3), (a3, b2)])?;
    // Another network's member cannot be tagged (nor revoked) from here.
    let why = refused(net, a2, &["tag", "b1@beta", "shared"])?;
    assert!(why.contains("no active member of this network"), "{why}");
    let why = refused(net, a2, &["revoke", "b1@beta"])?;
    assert!(why.contains("only its own network can revoke it"), "{why}");

    // One-time: the same offer again, from beta or from a third network.
    let why = refused(net, b1, &["federate", "accept", &offer, "--expose", "all"])?;
    assert!(why.contains("already"), "{why}");
    let why = refused(net, g1, &["federate", "accept", &offer, "--expose", "all"])?;
    assert!(why.contains("already accepted"), "{why}");

    // beta federates with gamma: beta reaches gamma, alpha never does.
    let to_gamma = net
        .cli(b1, &["federate", "offer", "--expose", "all"])?
        .trim()
        .to_string();
    net.cli(g1, &["federate", "accept", &to_gamma, "--expose", "all"])?;
    wait_listed(net, &[b1, b2, b3], "gamma", "active")?;
    wait_pings(net, &[(b2, g1), (g1, b3)], Duration::from_secs(30))?;
    let gamma = addr(net, g1)?;
    for i in [a1, a2, a3] {
        assert!(
            list(net, i)?.iter().all(|f| f["org"] != "gamma"),
            "alpha lists an agreement with gamma"
        );
        let names = listed(net, i)?;
        assert!(!names.iter().any(|n| n.ends_with("@gamma")), "{names:?}");
        assert!(
            !net.lab.ping1(&net.members[i].node, &gamma),
            "alpha reached gamma"
        );
    }

    // beta revokes b3: alpha drops it within seconds.
    let b3_addr = addr(net, b3)?;
    let started = Instant::now();
    net.cli(b1, &["revoke", "b3"])?;
    let dropped =
        testbed::wait_until_every(Duration::from_secs(5), Duration::from_millis(100), || {
            listed(net, a2).is_ok_and(|n| !n.contains(&"b3@beta".to_string()))
        });
    assert!(
        dropped,
        "a2 still lists b3 5 s after its revocation: {:?}",
        listed(net, a2)
    );
    eprintln!(
        "FIGURE revoke in beta to the member gone from alpha's view: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        !net.lab.ping1(&net.members[a2].node, &b3_addr),
        "a2 reached revoked b3"
    );

    // A federated node killed with -9 reaches beta again on its own.
    net.members[a2]
        .agent
        .as_mut()
        .context("a2 runs")?
        .kill_hard()?;
    net.start(a2)?;
    wait_listed(net, &[a2], "beta", "active")?;
    wait_pings(net, &[(a2, b1), (b2, a2)], Duration::from_secs(30))?;

    // alpha ends it: no cross pair answers within 5 s, both sides list it
    // ended, each mesh and beta–gamma still work.
    let started = Instant::now();
    let said = net.cli(a1, &["federate", "end", "beta"])?;
    assert!(said.contains("beta was told"), "{said}");
    let b1_addr = addr(net, b1)?;
    let a2_addr = addr(net, a2)?;
    let cut = testbed::wait_until_every(Duration::from_secs(5), Duration::from_millis(50), || {
        !net.lab.ping1(&net.members[a2].node, &b1_addr)
            && !net.lab.ping1(&net.members[b2].node, &a2_addr)
    });
    assert!(
        cut,
        "alpha and beta still reach each other 5 s after the end"
    );
    eprintln!(
        "FIGURE federate end to no alpha-beta pair answering: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    wait_listed(net, &[a1, a2, a3], "beta", "ended")?;
    wait_listed(net, &[b1, b2], "alpha", "ended")?;
    for i in [a1, a2, a3] {
        let names = listed(net, i)?;
        assert!(!names.iter().any(|n| n.ends_with("@beta")), "{names:?}");
    }
    wait_pings(
        net,
        &[(a1, a2), (a3, a2), (b1, b2), (b2, b1), (b1, g1), (g1, b2)],
        Duration::from_secs(10),
    )?;
    let why = refused(net, a1, &["federate", "end", "beta"])?;
    assert!(why.contains("no agreement in force"), "{why}");

    // A later new agreement is possible.
    let again = net
        .cli(a1, &["federate", "offer", "--expose", "all"])?
        .trim()
        .to_string();
    net.cli(b1, &["federate", "accept", &again, "--expose", "all"])?;
    wait_pings(net, &[(a1, b2), (b1, a3)], Duration::from_secs(30))?;
    Ok(())
}
