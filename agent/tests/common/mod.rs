//! Shared helpers of the lab integration tests (each test builds its own lab).
#![allow(dead_code)]

pub mod neigh;
pub mod net;
pub mod pings;

use anyhow::{anyhow, Context, Result};
use std::net::Ipv4Addr;
use std::time::Duration;
use testbed::serde_json::Value;
use testbed::wg::{self, IfaceConf, KeyPair, Kind, Tunnel};
use testbed::{Lab, Node};

/// Runs `body` on a fresh lab of two cladnet nodes in a mesh (skipped, with
/// a loud message, when not root); on failure the lab keeps its directory and
/// prints the daemons' logs.
pub fn with_pair(test: &str, body: impl FnOnce(&mut Mesh) -> Result<()>) -> Result<()> {
    if testbed::skip_unless_root(test) {
        return Ok(());
    }
    let k = ours();
    let mut m = Mesh::new(&[k.clone(), k])?;
    let r = body(&mut m);
    m.lab.check(r)
}

/// WireGuard port used by every node in these labs.
pub const PORT: u16 = 51820;
/// Bound on waiting for a first overlay ping (includes the handshake).
pub const FIRST_PING: Duration = Duration::from_secs(10);

/// The cladnet binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cladnet")
}

/// The implementation for "our" nodes (cladnet unless the dev-only
/// CLADNET_TESTBED_STANDIN variable says otherwise).
pub fn ours() -> Kind {
    wg::ours(bin())
}

/// Overlay address of node index `i` in [`wg::full_mesh`] configs.
pub fn ov(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, 0, (i + 1) as u8)
}

/// A lab of `kinds.len()` nodes named a, b, c... in a full mesh, node i
/// running `kinds[i]` with overlay 100.64.0.(i+1)/24.
pub struct Mesh {
    pub lab: Lab,
    pub nodes: Vec<Node>,
    pub keys: Vec<KeyPair>,
    pub confs: Vec<IfaceConf>,
    pub tunnels: Vec<Option<Tunnel>>,
    pub kinds: Vec<Kind>,
}

const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

impl Mesh {
    /// Creates the lab and configs; starts nothing.
    pub fn new(kinds: &[Kind]) -> Result<Mesh> {
        let lab = Lab::new()?;
        let nodes = kinds
            .iter()
            .enumerate()
            .map(|(i, _)| lab.add_node(NAMES[i]))
            .collect::<Result<Vec<_>>>()?;
        let keys = kinds
            .iter()
            .map(KeyPair::generate_for)
            .collect::<Result<Vec<_>>>()?;
        let underlay: Vec<_> = nodes.iter().map(|n| lab.addr(n)).collect();
        let confs = wg::full_mesh(&keys, &underlay, PORT);
        Ok(Mesh {
            lab,
            nodes,
            keys,
            confs,
            tunnels: kinds.iter().map(|_| None).collect(),
            kinds: kinds.to_vec(),
        })
    }

    /// Starts node i's daemon (interface name unique per start: `tag`).
    pub fn start(&mut self, i: usize, tag: &str) -> Result<()> {
        let ifname = self.lab.ifname(tag);
        let t = wg::start(
            &self.lab,
            &self.nodes[i],
            &self.kinds[i],
            &ifname,
            &self.confs[i],
        )
        .with_context(|| format!("starting {} on node {}", self.kinds[i].name(), NAMES[i]))?;
        self.tunnels[i] = Some(t);
        Ok(())
    }

    /// Starts every node (tags "a", "b", ...).
    pub fn start_all(&mut self) -> Result<()> {
        for (i, tag) in NAMES.iter().enumerate().take(self.nodes.len()) {
            self.start(i, tag)?;
        }
        Ok(())
    }

    /// Running tunnel of node i.
    pub fn t(&self, i: usize) -> Result<&Tunnel> {
        self.tunnels[i]
            .as_ref()
            .ok_or_else(|| anyhow!("node {} not running", NAMES[i]))
    }

    /// Stops node i; returns its exit status description and log tail.
    pub fn stop(&mut self, i: usize) -> Result<std::process::ExitStatus> {
        let t = self.tunnels[i]
            .take()
            .ok_or_else(|| anyhow!("node {} not running", NAMES[i]))?;
        t.stop()
    }

    /// SIGKILLs node i's daemon (a crash: no cleanup on its side).
    pub fn kill9(&mut self, i: usize) -> Result<()> {
        let mut t = self.tunnels[i]
            .take()
            .ok_or_else(|| anyhow!("node {} not running", NAMES[i]))?;
        t.proc.kill_hard()?;
        Ok(())
    }

    /// Node i's `show --json`.
    pub fn show(&self, i: usize) -> Result<Value> {
        self.t(i)?.show(&self.lab)
    }

    /// Node i's view of node j (its peer entry).
    pub fn peer_view(&self, i: usize, j: usize) -> Result<Value> {
        let s = self.show(i)?;
        Tunnel::peer(&s, &self.keys[j].public)
            .cloned()
            .ok_or_else(|| anyhow!("node {i} has no peer {j}: {s}"))
    }

    /// Asserts node i's daemon is still running (with its log tail if not).
    pub fn assert_alive(&mut self, i: usize) -> Result<()> {
        let t = self.tunnels[i]
            .as_mut()
            .ok_or_else(|| anyhow!("node {} not running", NAMES[i]))?;
        if let Some(st) = t.proc.try_status() {
            anyhow::bail!(
                "{} on {} died ({st}):\n{}",
                t.kind.name(),
                NAMES[i],
                t.proc.log_tail(40)
            );
        }
        Ok(())
    }

    /// Waits for a ping from node i to node j's overlay address.
    pub fn ping(&self, i: usize, j: usize, timeout: Duration) -> Result<()> {
        if self.lab.wait_ping(&self.nodes[i], ov(j), timeout) {
            Ok(())
        } else {
            Err(anyhow!(
                "no overlay ping {} -> {} ({}) within {timeout:?}",
                NAMES[i],
                NAMES[j],
                ov(j)
            ))
        }
    }
}

impl Mesh {
    /// Captures real datagrams arriving at node `a`'s port (node `b`'s
    /// initiation, transport data, keepalives) while `b` starts talking to
    /// `a`, to replay them from elsewhere; at least 5, or an error.
    pub fn capture_real_datagrams(&self, a: usize, b: usize) -> Result<Vec<Vec<u8>>> {
        let a_ul = self.lab.addr(&self.nodes[a]);
        let captured = std::thread::scope(|s| -> Result<Vec<Vec<u8>>> {
            let cap = s.spawn(|| {
                testbed::wire::capture_udp(
                    &self.lab,
                    &self.nodes[a],
                    a_ul,
                    PORT,
                    64,
                    Duration::from_secs(4),
                )
            });
            std::thread::sleep(Duration::from_millis(300));
            self.ping(b, a, FIRST_PING)?;
            let a_ov = ov(a).to_string();
            self.lab.run(
                &self.nodes[b],
                &[
                    "ping", "-n", "-q", "-c", "20", "-i", "0.05", "-W", "1", &a_ov,
                ],
            )?;
            cap.join().map_err(|_| anyhow!("capture thread panicked"))?
        })?;
        let types: Vec<u8> = captured.iter().map(|d| d[0]).collect();
        eprintln!(
            "captured {} real datagrams, types {types:?}",
            captured.len()
        );
        anyhow::ensure!(
            captured.len() >= 5,
            "captured too few datagrams to replay ({})",
            captured.len()
        );
        Ok(captured)
    }
}

/// How much each `counters.dropped` reason of a `show --json` grew from
/// `before` to `after` (reasons that did not grow are left out).
pub fn dropped_by_reason(before: &Value, after: &Value) -> std::collections::BTreeMap<String, u64> {
    let mut grown = std::collections::BTreeMap::new();
    if let Some(reasons) = after
        .pointer("/counters/dropped")
        .and_then(Value::as_object)
    {
        for (k, v) in reasons {
            let was = before
                .pointer(&format!("/counters/dropped/{k}"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let d = v.as_u64().unwrap_or(0).saturating_sub(was);
            if d > 0 {
                grown.insert(k.clone(), d);
            }
        }
    }
    grown
}

/// A random seed for a lab's order of events: the hex number in the
/// environment variable `var` (to replay a printed seed), else one from
/// the clock.
pub fn seed(var: &str) -> Result<u64> {
    match std::env::var(var) {
        Ok(v) => u64::from_str_radix(v.trim_start_matches("0x"), 16)
            .with_context(|| format!("{var}={v:?} is not a hex number")),
        Err(_) => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 | 1)),
    }
}

/// Integer field at a JSON pointer, with a readable error.
pub fn u64_at(v: &Value, ptr: &str) -> Result<u64> {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("no integer at {ptr} in {v}"))
}
