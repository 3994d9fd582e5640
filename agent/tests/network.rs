//! The serverless control plane in a namespace lab, the way a user runs it:
//! `init` a first node, `invite`/`join` the others through different
//! members (two at the same time), every member lists all as alive with
//! distinct addresses, and every ordered pair pings over the overlay. Then
//! kill -9 and restart, a join through another member while the first node
//! is down, refused tokens, a forged record that never enters anyone's
//! state, and a revocation that cuts a node off.

mod common;

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testbed::serde_json::{self, Value};
use testbed::{Lab, Node, Proc};

const CIDR: &str = "100.64.0.0/24";

struct Member {
    node: Node,
    state: PathBuf,
    agent: Option<Proc>,
}

struct Net {
    lab: Lab,
    members: Vec<Member>,
}

impl Net {
    fn cli(&self, i: usize, args: &[&str]) -> Result<String> {
        let m = &self.members[i];
        let mut argv = vec![common::bin()];
        argv.extend_from_slice(args);
        let state = m.state.to_string_lossy().into_owned();
        argv.extend_from_slice(&["--state", &state]);
        self.lab.run(&m.node, &argv)
    }

    fn ip(&self, i: usize) -> String {
        self.lab.addr(&self.members[i].node).to_string()
    }

    fn node_args(&self, i: usize, name: &str) -> Vec<String> {
        let ip = self.ip(i);
        vec![
            "--name".into(),
            name.into(),
            "--listen".into(),
            format!("{ip}:51820"),
            "--control-listen".into(),
            format!("{ip}:51821"),
        ]
    }

    fn start(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let state = m.state.to_string_lossy().into_owned();
        let label = format!("agent-{}", m.node.name);
        // Interface names differ per node: the UAPI sockets of all
        // namespaces share /var/run/wireguard.
        let iface = self.lab.ifname(&m.node.name);
        self.lab
            .remove_on_drop(format!("/var/run/wireguard/{iface}.sock"));
        let p = self.lab.spawn(
            &m.node,
            &label,
            &[common::bin(), "agent", "--state", &state, "--iface", &iface],
        )?;
        self.members[i].agent = Some(p);
        let ok = testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(50), || {
            self.cli(i, &["status", "--json"]).is_ok()
        });
        if !ok {
            bail!("agent of {} did not come up", self.members[i].node.name);
        }
        Ok(())
    }

    fn invite(&self, i: usize, extra: &[&str]) -> Result<String> {
        let mut args = vec!["invite"];
        args.extend_from_slice(extra);
        Ok(self.cli(i, &args)?.trim().to_string())
    }

    fn join_cmd(&self, i: usize, name: &str, token: &str) -> Vec<String> {
        let mut argv: Vec<String> = vec![common::bin().into(), "join".into(), token.into()];
        argv.extend(self.node_args(i, name));
        argv.push("--state".into());
        argv.push(self.members[i].state.to_string_lossy().into_owned());
        argv
    }

    fn join(&self, i: usize, name: &str, token: &str) -> Result<String> {
        self.lab.run(&self.members[i].node, &self.join_cmd(i, name, token))
    }

    fn status(&self, i: usize) -> Result<Value> {
        Ok(serde_json::from_str(&self.cli(i, &["status", "--json"])?)?)
    }

    fn members(&self, i: usize) -> Result<Vec<Value>> {
        let v: Value = serde_json::from_str(&self.cli(i, &["members", "--json"])?)?;
        v.as_array().cloned().context("members is not a list")
    }

    fn address(&self, i: usize) -> Result<String> {
        self.status(i)?["address"]
            .as_str()
            .map(str::to_string)
            .context("status has no address")
    }

    /// Waits until member `i` lists exactly `names` as alive with distinct
    /// addresses.
    fn wait_alive(&self, i: usize, names: &[&str], timeout: Duration) -> Result<()> {
        let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        let mut last = String::new();
        let ok = testbed::wait_until_every(timeout, Duration::from_millis(200), || {
            let Ok(list) = self.members(i) else { return false };
            let alive: BTreeSet<String> = list
                .iter()
                .filter(|m| m["state"] == "alive")
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect();
            let addrs: BTreeSet<&str> = list
                .iter()
                .filter(|m| m["state"] == "alive")
                .filter_map(|m| m["address"].as_str())
                .collect();
            last = format!("{list:?}");
            alive == want && addrs.len() == want.len()
        });
        if !ok {
            bail!("{} never listed {names:?} alive with distinct addresses; last: {last}", self.members[i].node.name);
        }
        Ok(())
    }
}

fn setup(lab: Lab, names: &[&str]) -> Result<Net> {
    let mut members = Vec::new();
    for n in names {
        let node = lab.add_node(n)?;
        let state = lab.dir().join(format!("state-{n}"));
        members.push(Member {
            node,
            state,
            agent: None,
        });
    }
    Ok(Net { lab, members })
}

#[test]
fn five_nodes_join_through_each_other_and_survive_kill_restart_and_revocation() -> Result<()> {
    if testbed::skip_unless_root("network lab") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let mut net = setup(lab, &["a", "b", "c", "d", "e", "f"])?;
    let r = scenario(&mut net);
    net.lab.check(r)
}

fn scenario(net: &mut Net) -> Result<()> {
    let (a, b, c, d, e, f) = (0, 1, 2, 3, 4, 5);
    // A first node.
    let mut init: Vec<String> = vec![common::bin().into(), "init".into()];
    init.extend(net.node_args(a, "a"));
    init.extend(["--cidr".into(), CIDR.into(), "--state".into()]);
    init.push(net.members[a].state.to_string_lossy().into_owned());
    net.lab.run(&net.members[a].node, &init)?;
    net.start(a)?;
    let st = net.status(a)?;
    for key in ["name", "id", "address", "network", "cidr", "mtu"] {
        assert!(!st[key].is_null(), "status lacks {key}: {st}");
    }
    assert_eq!(st["cidr"], CIDR);

    // B through A, C through B.
    let tb = net.invite(a, &[])?;
    net.join(b, "b", &tb)?;
    net.start(b)?;
    let tc = net.invite(b, &[])?;
    net.join(c, "c", &tc)?;
    net.start(c)?;
    // D and E through C at the same time.
    let td = net.invite(c, &[])?;
    let te = net.invite(c, &[])?;
    let jd = net.lab.spawn(&net.members[d].node, "join-d", &net.join_cmd(d, "d", &td))?;
    let je = net.lab.spawn(&net.members[e].node, "join-e", &net.join_cmd(e, "e", &te))?;
    for (mut p, who) in [(jd, "d"), (je, "e")] {
        let st = p.wait_timeout(Duration::from_secs(30)).context("join did not finish")?;
        if !st.success() {
            bail!("join of {who} failed: {}", p.log());
        }
    }
    net.start(d)?;
    net.start(e)?;
    let five = ["a", "b", "c", "d", "e"];
    for i in [a, b, c, d, e] {
        net.wait_alive(i, &five, Duration::from_secs(30))?;
    }
    let addrs: Vec<String> = (0..5).map(|i| net.address(i)).collect::<Result<_>>()?;
    assert_eq!(addrs.iter().collect::<BTreeSet<_>>().len(), 5, "addresses {addrs:?}");
    for i in 0..5 {
        for j in 0..5 {
            if i != j && !net.lab.wait_ping(&net.members[i].node, &addrs[j], Duration::from_secs(10)) {
                bail!("{} cannot ping {} at {}", net.members[i].node.name, net.members[j].node.name, addrs[j]);
            }
        }
    }

    // Refused tokens: used, expired, another network's, garbage.
    let used = net.lab.exec(&net.members[f].node, &net.join_cmd(f, "f", &tb))?;
    let msg = String::from_utf8_lossy(&used.stderr);
    assert!(!used.status.success() && msg.contains("already used"), "used token: {msg}");
    let short = net.invite(a, &["--ttl", "1s"])?;
    std::thread::sleep(Duration::from_millis(1500));
    let expired = net.lab.exec(&net.members[f].node, &net.join_cmd(f, "f", &short))?;
    let msg = String::from_utf8_lossy(&expired.stderr);
    assert!(!expired.status.success() && msg.contains("expired"), "expired token: {msg}");
    let foreign = foreign_token(&net.invite(a, &[])?)?;
    let out = net.lab.exec(&net.members[f].node, &net.join_cmd(f, "f", &foreign))?;
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && msg.contains("another network"), "foreign token: {msg}");
    for garbage in ["hello", "cladnet1.AAAA", &tb[..tb.len() / 2]] {
        let out = net.lab.exec(&net.members[f].node, &net.join_cmd(f, "f", garbage))?;
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && msg.contains("not a cladnet invite token"), "garbage: {msg}");
        assert_eq!(msg.trim().lines().count(), 1, "one sentence: {msg}");
    }
    assert!(!net.members[f].state.join("state.redb").exists(), "refused joins leave no state");

    // A dies hard; F joins through D; everyone alive reaches F.
    net.members[a].agent.as_mut().context("a runs")?.kill_hard()?;
    let tf = net.invite(d, &[])?;
    let t0 = Instant::now();
    net.join(f, "f", &tf)?;
    net.start(f)?;
    let addr_f = net.address(f)?;
    if !net.lab.wait_ping(&net.members[f].node, &addrs[d], Duration::from_secs(10)) {
        bail!("f cannot reach d");
    }
    let join_to_ping = t0.elapsed();
    eprintln!("FIGURE join-to-first-ping (join + agent start + first overlay ping): {join_to_ping:?}");
    for i in [b, c, d, e] {
        if !net.lab.wait_ping(&net.members[i].node, &addr_f, Duration::from_secs(15)) {
            bail!("{} cannot reach f", net.members[i].node.name);
        }
    }
    // A comes back from its state directory with the same address and reaches F.
    net.start(a)?;
    assert_eq!(net.address(a)?, addrs[a], "a keeps its address");
    if !net.lab.wait_ping(&net.members[a].node, &addr_f, Duration::from_secs(20)) {
        bail!("restarted a cannot reach f");
    }

    // Revocation: E is cut off within seconds, and stays out.
    let t0 = Instant::now();
    net.cli(a, &["revoke", "e"])?;
    let cut = testbed::wait_until_every(Duration::from_secs(5), Duration::from_millis(100), || {
        [a, b, c, d, f].iter().all(|i| !net.lab.ping1(&net.members[*i].node, &addrs[e]))
    });
    assert!(cut, "revoked e still reachable after 5 s");
    eprintln!("FIGURE revocation to loss of connectivity: {:?}", t0.elapsed());
    let list = net.members(b)?;
    let e_state = list.iter().find(|m| m["name"] == "e").map(|m| m["state"].clone());
    assert_eq!(e_state, Some(Value::from("revoked")));
    // The revoked node's old credentials do not get it back in.
    net.members[e].agent.as_mut().context("e runs")?.stop()?;
    net.start(e)?;
    std::thread::sleep(Duration::from_secs(3));
    assert!(!net.lab.ping1(&net.members[e].node, &addrs[d]), "revoked e got back in");
    Ok(())
}

/// A token of another network: same inviter and secret, but naming a
/// network (and authority) the inviter does not belong to.
fn foreign_token(token: &str) -> Result<String> {
    use federation::token::Invite;
    let mut invite = Invite::decode(token)?;
    let other = federation::NodeKey::generate().id();
    invite.authority = other;
    invite.network = federation::NetworkId::of(&other);
    Ok(invite.encode())
}
