//! Federation agreements as a user makes them (issue 12, first slice):
//! networks created independently, an offer from one authority accepted by
//! another, handed to a member of the offering network and carried in the
//! members' records, so `federate list` on every member of both networks
//! shows it (after a `kill -9` too); bad offers refused with one sentence;
//! `federate end` told to the other network, and a later new agreement. Cross-network records and
//! tunnels are not built yet: no pings across networks here.

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
fn agreements_spread_to_both_networks_and_bad_offers_are_refused() -> Result<()> {
    if testbed::skip_unless_root("federation lab") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let mut net = setup(lab, &["a1", "a2", "b1", "b2", "g1", "d1"])?;
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

fn init_network(net: &mut Net, first: usize, name: &str, network: &str, cidr: &str) -> Result<()> {
    net.init_with(first, name, &["--network", network, "--cidr", cidr])?;
    net.start(first)
}

fn scenario(net: &mut Net) -> Result<()> {
    let (a1, a2, b1, b2, g1, d1) = (0, 1, 2, 3, 4, 5);
    init_network(net, a1, "a1", "alpha", ALPHA)?;
    let t = net.invite(a1, &["--tag", "shared"])?;
    net.join(a2, "a2", &t)?;
    net.start(a2)?;
    init_network(net, b1, "b1", "beta", BETA)?;
    let t = net.invite(b1, &[])?;
    net.join(b2, "b2", &t)?;
    net.start(b2)?;
    init_network(net, g1, "g1", "gamma", GAMMA)?;
    init_network(net, d1, "d1", "delta", DELTA)?;
    net.wait_alive(a2, &["a1", "a2"], Duration::from_secs(20))?;
    net.wait_alive(b2, &["b1", "b2"], Duration::from_secs(20))?;

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

    // beta accepts alpha's offer: every member of both networks lists it.
    let started = Instant::now();
    let said = net.cli(b1, &["federate", "accept", &offer, "--expose", "all"])?;
    assert!(said.contains("federated with alpha"), "{said}");
    wait_listed(net, &[b1, b2], "alpha", "active")?;
    wait_listed(net, &[a1, a2], "beta", "active")?;
    eprintln!(
        "FIGURE federate accept to the agreement listed on all 4 members of both networks: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let item = list(net, a2)?
        .into_iter()
        .find(|f| f["org"] == "beta")
        .context("beta not listed")?;
    assert_eq!(item["exposes"], "shared", "{item}");
    assert_eq!(item["exposed_to_us"], "all", "{item}");
    assert_eq!(item["cidr"], BETA, "{item}");

    // One-time: the same offer again, from beta or from a third network.
    let why = refused(net, b1, &["federate", "accept", &offer, "--expose", "all"])?;
    assert!(why.contains("already"), "{why}");
    let why = refused(net, g1, &["federate", "accept", &offer, "--expose", "all"])?;
    assert!(why.contains("already accepted"), "{why}");
    for i in [a1, a2] {
        assert!(
            list(net, i)?.iter().all(|f| f["org"] != "gamma"),
            "a used offer federated gamma"
        );
    }

    // Stored durably: a member killed with -9 lists it again after restart.
    net.members[a2]
        .agent
        .as_mut()
        .context("a2 runs")?
        .kill_hard()?;
    net.start(a2)?;
    wait_listed(net, &[a2], "beta", "active")?;

    // alpha ends it: every member of both networks lists it ended.
    let started = Instant::now();
    let said = net.cli(a1, &["federate", "end", "beta"])?;
    assert!(said.contains("beta was told"), "{said}");
    wait_listed(net, &[a1, a2], "beta", "ended")?;
    wait_listed(net, &[b1, b2], "alpha", "ended")?;
    eprintln!(
        "FIGURE federate end to the agreement listed ended on all 4 members of both networks: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let why = refused(net, a1, &["federate", "end", "beta"])?;
    assert!(why.contains("no agreement in force"), "{why}");

    // A later new agreement is possible.
    let again = net
        .cli(a1, &["federate", "offer", "--expose", "all"])?
        .trim()
        .to_string();
    net.cli(b1, &["federate", "accept", &again, "--expose", "all"])?;
    let ok = testbed::wait_until_every(Duration::from_secs(15), Duration::from_millis(100), || {
        list(net, a2).is_ok_and(|l| {
            l.iter()
                .any(|f| f["org"] == "beta" && f["state"] == "active")
        })
    });
    assert!(
        ok,
        "the new agreement did not reach a2: {:?}",
        list(net, a2)
    );
    Ok(())
}
