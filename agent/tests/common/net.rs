//! A lab of cladnet network members driven through the CLI, as a user
//! would: init, invite, join, agent, status, members.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use testbed::serde_json::{self, Value};
use testbed::{Lab, Node, Proc};

pub const CIDR: &str = "100.64.0.0/24";
/// An address two concurrent joiners both pin.
pub const PINNED: &str = "100.64.0.200";

/// One node of a network lab.
pub struct Member {
    pub node: Node,
    pub state: PathBuf,
    pub agent: Option<Proc>,
    /// How to run cladnet on it: the binary, or an emulator and a binary.
    pub program: Vec<String>,
}

impl Member {
    /// A member on `node`, its state directory in the lab's directory.
    pub fn in_lab(lab: &Lab, node: Node) -> Member {
        let state = lab.dir().join(format!("state-{}", node.name));
        Member {
            node,
            state,
            agent: None,
            program: vec![super::bin().into()],
        }
    }
}

/// A lab of network members (state directories in the lab dir).
pub struct Net {
    pub lab: Lab,
    pub members: Vec<Member>,
}

impl Net {
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<String> {
        let m = &self.members[i];
        let mut argv = self.program(i);
        argv.extend_from_slice(args);
        let state = m.state.to_string_lossy().into_owned();
        argv.extend_from_slice(&["--state", &state]);
        self.lab.run(&m.node, &argv)
    }

    /// The command line that runs cladnet on member `i`.
    pub fn program(&self, i: usize) -> Vec<&str> {
        self.members[i].program.iter().map(String::as_str).collect()
    }

    pub fn ip(&self, i: usize) -> String {
        self.lab.addr(&self.members[i].node).to_string()
    }

    /// Node arguments as a user gives them: a name, and the default listen
    /// addresses (every host address, so a changed address keeps working).
    pub fn node_args(&self, name: &str) -> Vec<String> {
        vec!["--name".into(), name.into()]
    }

    pub fn start(&mut self, i: usize) -> Result<()> {
        self.start_with(i, &[])
    }

    /// Initialises node `i` as the first node of a new network on [`CIDR`].
    pub fn init(&self, i: usize, name: &str) -> Result<()> {
        self.init_with(i, name, &[])
    }

    /// [`Net::init`] with extra arguments (which may give another `--cidr`).
    pub fn init_with(&self, i: usize, name: &str, extra: &[&str]) -> Result<()> {
        let mut init: Vec<String> = self.members[i].program.clone();
        init.push("init".into());
        init.extend(self.node_args(name));
        init.extend(extra.iter().map(|s| s.to_string()));
        if !extra.contains(&"--cidr") {
            init.extend(["--cidr".into(), CIDR.into()]);
        }
        init.push("--state".into());
        init.push(self.members[i].state.to_string_lossy().into_owned());
        self.lab.run(&self.members[i].node, &init)?;
        Ok(())
    }

    /// Starts node `i`'s agent with extra arguments and waits for its socket.
    pub fn start_with(&mut self, i: usize, extra: &[&str]) -> Result<()> {
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
            &[
                &self.program(i)[..],
                &["agent", "--state", &state, "--iface", &iface],
                extra,
            ]
            .concat(),
        )?;
        self.members[i].agent = Some(p);
        let ok =
            testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(50), || {
                self.cli(i, &["status", "--json"]).is_ok()
            });
        if !ok {
            bail!("agent of {} did not come up", self.members[i].node.name);
        }
        Ok(())
    }

    pub fn invite(&self, i: usize, extra: &[&str]) -> Result<String> {
        let mut args = vec!["invite"];
        args.extend_from_slice(extra);
        Ok(self.cli(i, &args)?.trim().to_string())
    }

    pub fn join_cmd(&self, i: usize, name: &str, token: &str) -> Vec<String> {
        let mut argv: Vec<String> = self.members[i].program.clone();
        argv.extend(["join".into(), token.into()]);
        argv.extend(self.node_args(name));
        argv.push("--state".into());
        argv.push(self.members[i].state.to_string_lossy().into_owned());
        argv
    }

    pub fn join(&self, i: usize, name: &str, token: &str) -> Result<String> {
        self.lab
            .run(&self.members[i].node, &self.join_cmd(i, name, token))
    }

    pub fn status(&self, i: usize) -> Result<Value> {
        Ok(serde_json::from_str(&self.cli(i, &["status", "--json"])?)?)
    }

    /// Member `i`'s tunnels (`peers --json`).
    pub fn peers(&self, i: usize) -> Result<Vec<Value>> {
        let v: Value = serde_json::from_str(&self.cli(i, &["peers", "--json"])?)?;
        v.as_array().cloned().context("peers is not a list")
    }

    pub fn members(&self, i: usize) -> Result<Vec<Value>> {
        let v: Value = serde_json::from_str(&self.cli(i, &["members", "--json"])?)?;
        v.as_array().cloned().context("members is not a list")
    }

    pub fn address(&self, i: usize) -> Result<String> {
        self.status(i)?["address"]
            .as_str()
            .map(str::to_string)
            .context("status has no address")
    }

    /// Waits until member `i` lists exactly `names` as alive with distinct
    /// addresses.
    pub fn wait_alive(&self, i: usize, names: &[&str], timeout: Duration) -> Result<()> {
        let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        let mut last = String::new();
        let ok = testbed::wait_until_every(timeout, Duration::from_millis(200), || {
            let Ok(list) = self.members(i) else {
                return false;
            };
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
            bail!(
                "{} never listed {names:?} alive with distinct addresses; last: {last}",
                self.members[i].node.name
            );
        }
        Ok(())
    }
}

pub fn setup(lab: Lab, names: &[&str]) -> Result<Net> {
    let mut members = Vec::new();
    for n in names {
        let node = lab.add_node(n)?;
        members.push(Member::in_lab(&lab, node));
    }
    Ok(Net { lab, members })
}
