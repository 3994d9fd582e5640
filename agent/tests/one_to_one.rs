//! Real clouds: every VM behind its cloud's 1:1 NAT, its interface holding
//! only a private address (two clouds even use the same one), plus a VM
//! behind an ordinary masquerading NAT. The first node is told its public
//! address (`init --advertise`); nobody else is. A second cloud's VM joins
//! with its token; a third joins with a token issued by the second (which
//! learned its public address from what members see); every pair pings,
//! directly between the 1:1 NAT VMs. A token issued by the VM behind the
//! ordinary NAT (which nobody outside can dial) still works: the joiner
//! asks another member the token names, which passes the join on. When
//! none of the token's members can be reached, the join fails in one
//! sentence within 15 s, leaves no state and keeps the invite.

mod common;

use anyhow::{bail, Context, Result};
use common::net::{Member, Net};
use common::pings::sustained_check;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use testbed::{Firewall, Lab, NatKind};

#[test]
fn vms_behind_one_to_one_nat_bootstrap_and_mesh() -> Result<()> {
    one_to_one(Firewall::Filtering)
}

#[test]
fn vms_behind_one_to_one_nat_instances_bootstrap_and_mesh() -> Result<()> {
    one_to_one(Firewall::Open)
}

fn one_to_one(firewall: Firewall) -> Result<()> {
    if testbed::skip_unless_root("1:1 NAT lab") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let same = Ipv4Addr::new(10, 0, 1, 5);
    let site = |name, subnet, kind| lab.add_site_with(name, subnet, kind, firewall, 1500);
    let c1s = site("c1s", "10.0.1.0/24", NatKind::OneToOne)?;
    let c2s = site("c2s", "10.0.1.0/24", NatKind::OneToOne)?;
    let c3s = site("c3s", "10.0.3.0/24", NatKind::OneToOne)?;
    let ms = site("ms", "192.168.9.0/24", NatKind::Cone)?;
    let c1 = lab.add_site_node(&c1s, "c1", same)?;
    let c2 = lab.add_site_node(&c2s, "c2", same)?;
    let c3 = lab.add_site_node(&c3s, "c3", Ipv4Addr::new(10, 0, 3, 5))?;
    let m = lab.add_site_node(&ms, "m", Ipv4Addr::new(192, 168, 9, 10))?;
    let members = vec![
        Member::in_lab(&lab, c1),
        Member::in_lab(&lab, c2),
        Member::in_lab(&lab, c3),
        Member::in_lab(&lab, m),
    ];
    let mut net = Net { lab, members };
    let r = scenario(&mut net, c1s.wan_addr(), c2s.wan_addr())
        .and_then(|()| sustained_check(&net, &[0, 1, 2, 3], "1:1 NAT", firewall));
    net.lab.check(r)
}

/// Runs `join` for member `i` with `token`; returns how long until it
/// pinged `target` (the join, the agent's start, the first ping).
fn join_and_ping(net: &mut Net, i: usize, name: &str, token: &str, target: &str) -> Result<f64> {
    let started = Instant::now();
    net.join(i, name, token)?;
    net.start(i)?;
    if !net
        .lab
        .wait_ping(&net.members[i].node, target, Duration::from_secs(20))
    {
        bail!("{name} cannot ping {target} after joining");
    }
    Ok(started.elapsed().as_secs_f64())
}

fn scenario(net: &mut Net, c1_public: Ipv4Addr, c2_public: Ipv4Addr) -> Result<()> {
    let (c1, c2, c3, m) = (0, 1, 2, 3);
    let names = ["c1", "c2", "c3", "m"];
    net.init_with(c1, "c1", &["--advertise", &c1_public.to_string()])?;
    net.start(c1)?;
    let st = net.status(c1)?;
    let advertised = format!("{c1_public}:51820");
    assert!(
        st["advertised"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e == advertised.as_str())),
        "c1 does not publish its advertised endpoint: {st}"
    );
    // c1's token names its public address first.
    let token = net.invite(c1, &[])?;
    let invite = federation::token::Invite::decode(&token)?;
    assert_eq!(
        invite.addrs.first().map(|a| a.ip()),
        Some(std::net::IpAddr::V4(c1_public)),
        "the token does not lead with the advertised address: {:?}",
        invite.addrs
    );
    let c1_addr = net.address(c1)?;
    let t = join_and_ping(net, c2, "c2", &token, &c1_addr)?;
    eprintln!(
        "FIGURE 1:1 NAT: c2 joins through c1's advertised address, first ping after {t:.2} s"
    );
    // c2 was never told its public address; once a member has seen it
    // there (identify, right after c2 connects), its token carries it.
    let c2_public = std::net::SocketAddr::new(c2_public.into(), 51821);
    let seen = Instant::now();
    let observed =
        testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(50), || {
            net.status(c2).is_ok_and(|st| {
                st["control"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|a| a.as_str() == Some(&c2_public.to_string())))
            })
        });
    assert!(
        observed,
        "c2 never learned that members see it at {c2_public}: {:?}",
        net.status(c2)?["control"]
    );
    eprintln!(
        "FIGURE 1:1 NAT: c2 learns its public control endpoint from members {:.2} s after its first ping",
        seen.elapsed().as_secs_f64()
    );
    let token2 = net.invite(c2, &[])?;
    let addrs = federation::token::Invite::decode(&token2)?.addrs;
    assert!(
        addrs.contains(&c2_public),
        "c2's token lacks {c2_public}: {addrs:?}"
    );
    let t = join_and_ping(net, c3, "c3", &token2, &net.address(c2)?)?;
    eprintln!("FIGURE 1:1 NAT: c3 joins with c2's token (c2 never told its address), first ping after {t:.2} s");
    let token3 = net.invite(c1, &[])?;
    let t = join_and_ping(net, m, "m", &token3, &c1_addr)?;
    eprintln!("FIGURE 1:1 NAT: m (masquerade) joins, first ping after {t:.2} s");
    let addrs: Vec<String> = (0..4).map(|i| net.address(i)).collect::<Result<_>>()?;
    for i in 0..4 {
        for j in (0..4).filter(|j| *j != i) {
            if !net
                .lab
                .wait_ping(&net.members[i].node, &addrs[j], Duration::from_secs(20))
            {
                bail!("{} cannot ping {} ({})", names[i], names[j], addrs[j]);
            }
        }
    }
    // Between 1:1 NAT VMs the path is direct, c1 at its advertised endpoint.
    let view = net.peers(c2)?;
    let c1_peer = view
        .iter()
        .find(|p| p["name"] == "c1")
        .context("c2 has no peer c1")?;
    assert_eq!(c1_peer["endpoint"], advertised.as_str(), "{c1_peer}");
    assert_eq!(c1_peer["path"], "direct", "{c1_peer}");
    let c3_peer = view.iter().find(|p| p["name"] == "c3").context("no c3")?;
    assert_eq!(c3_peer["path"], "direct", "c2 -> c3: {c3_peer}");
    unreachable_token(net, m)
}

/// A token of `inviter` (behind a filtering NAT) whose members cannot be
/// reached (the joiner's uplink drops UDP to them): one sentence naming
/// what was tried and the ports to open, exit 1 within 15 s, no state.
/// With the uplink open, the same token works, through a member that
/// passes the join on to the inviter.
fn unreachable_token(net: &mut Net, inviter: usize) -> Result<()> {
    let lab = &net.lab;
    let joiner = lab.add_node("late")?;
    net.members.push(Member::in_lab(&net.lab, joiner));
    let late = net.members.len() - 1;
    let token = net.invite(inviter, &[])?;
    let node = net.members[late].node.clone();
    let rules = "table inet cut {\n  chain out {\n    type filter hook output priority 0; policy accept;\n    udp dport { 51820, 51821 } drop\n  }\n}\n";
    let file = net.lab.write_file("cut.nft", rules)?;
    let file = file.to_string_lossy().into_owned();
    net.lab.run(&node, &["nft", "-f", &file])?;
    let started = Instant::now();
    let out = net.lab.exec(&node, &net.join_cmd(late, "late", &token))?;
    let took = started.elapsed();
    let msg = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "FIGURE unreachable token refused after {:.1} s: {}",
        took.as_secs_f64(),
        msg.trim()
    );
    assert!(
        !out.status.success(),
        "a join through unreachable members succeeded"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        msg.contains("51820") && msg.contains("51821") && msg.trim().lines().count() == 1,
        "not one sentence naming the ports: {msg}"
    );
    assert!(
        !net.members[late].state.join("state.redb").exists(),
        "a failed join left state"
    );
    net.lab
        .run(&node, &["nft", "delete", "table", "inet", "cut"])?;
    let started = Instant::now();
    net.join(late, "late", &token)
        .context("the unreachable attempt burnt the invite")?;
    let passed_on = net
        .members
        .iter()
        .filter_map(|m| m.agent.as_ref())
        .any(|a| a.log().contains("passing a join on to its inviter"));
    assert!(passed_on, "the join did not go through another member");
    eprintln!(
        "FIGURE a token of a node nobody can dial: joined through another member in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
