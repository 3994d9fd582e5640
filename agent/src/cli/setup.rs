//! `init`, and what it shares with `join` ([`super::join`]): both prepare
//! a state directory and exit (the agent runs from it); they check the
//! node's name and labels, take the host's name without `--name`, and
//! write the node's first record.

use super::args::NodeArgs;
use crate::advertise::Advertise;
use crate::inventory::scan;
use crate::statedir::{now_ms, Settings, StateDir, DEFAULT_MTU, DEFAULT_STATE};
use anyhow::{Context, Result};
use drivers::store::Store;
use federation::addrspace;
use federation::admission::CERT_TTL_MS;
use federation::cert::{valid_name, Cert, Claim};
use federation::member::{AuthorityRecord, Body, MemberRecord};
use federation::{address, Cidr, Network, NodeKey};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

/// Hosts `init` sizes the overlay for when nothing else is known.
const DEFAULT_HOSTS: u64 = 250;

/// Checks the name and the labels before anything is created or spent.
pub(super) fn check_node(opts: &NodeOptions) -> Result<()> {
    let name = opts.name;
    if !valid_name(name) {
        let lower = name.to_ascii_lowercase();
        if valid_name(&lower) {
            anyhow::bail!("node names are lowercase: use --name {lower}");
        }
        anyhow::bail!("node name {name:?} is invalid: use 1-63 characters of a-z, 0-9 and -, not starting with -");
    }
    labels(opts.labels).map(drop)
}

/// The node name for a host called `host`, as `init` and `join` take it
/// without `--name`: the first label, lowercased, every character other
/// than a-z, 0-9 and - made a -, at most 63 characters.
pub fn name_of_host(host: &str) -> Option<String> {
    let first = host.trim().split('.').next().unwrap_or_default();
    let name: String = first
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let name = name.trim_matches('-').to_string();
    valid_name(&name).then_some(name)
}

/// This host's name as a node name (see [`name_of_host`]).
pub fn host_node_name() -> Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read this host's name: pass --name NAME")?;
    name_of_host(&host).with_context(|| {
        format!(
            "this host's name {:?} makes no node name: pass --name NAME (a-z, 0-9 and -)",
            host.trim()
        )
    })
}

/// The command that starts the node whose state is in `dir`.
pub fn start_command(dir: &Path) -> String {
    if dir == Path::new(DEFAULT_STATE) {
        "systemctl enable --now cladnet (or in the foreground: cladnet agent)".into()
    } else {
        format!("cladnet agent --state {}", dir.display())
    }
}

/// Refuses a directory that already holds a state.
pub(super) fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.join(drivers::store::STATE_FILE).exists() {
        anyhow::bail!(
            "{} already holds a cladnet state; use it with `cladnet agent --state`, or pick an empty directory",
            dir.display()
        );
    }
    Ok(())
}

/// Options shared by `init` and `join`.
pub struct NodeOptions<'a> {
    /// State directory.
    pub state: &'a Path,
    /// Node name.
    pub name: &'a str,
    /// WireGuard UDP address.
    pub listen: SocketAddr,
    /// QUIC UDP address.
    pub control_listen: SocketAddr,
    /// Where this node is reached from outside (`--advertise`).
    pub advertise: &'a [Advertise],
    /// What the node says about itself (`--label K=V`).
    pub labels: &'a [(String, String)],
}

impl NodeArgs {
    /// The options, with the host's name when `--name` is not given.
    pub fn options(&mut self) -> Result<NodeOptions<'_>> {
        if self.name.is_none() {
            self.name = Some(host_node_name()?);
        }
        Ok(NodeOptions {
            state: &self.state.state,
            name: self.name.as_deref().unwrap_or_default(),
            listen: self.listen,
            control_listen: self.control_listen,
            advertise: &self.advertise,
            labels: &self.labels,
        })
    }
}

impl NodeOptions<'_> {
    /// The settings a new state directory starts with.
    pub(super) fn settings(&self) -> Settings {
        Settings {
            name: self.name.to_string(),
            listen: self.listen,
            control_listen: self.control_listen,
            advertise: self.advertise.to_vec(),
            metrics_listen: None,
            no_relay: false,
        }
    }
}

/// Says what `--advertise auto` finds (the agent asks again when it
/// starts); nothing when `list` does not name it.
pub fn say_auto(list: &[Advertise]) {
    if list.contains(&Advertise::Auto) {
        match crate::metadata::public_ipv4() {
            Ok(f) => eprintln!(
                "--advertise auto: {} reports this VM's public address {}",
                f.service, f.ip
            ),
            Err(why) => eprintln!("WARNING: --advertise auto: {why}"),
        }
    }
}

/// The labels given with `--label`, checked (the last of a repeated key
/// wins).
pub fn labels(given: &[(String, String)]) -> Result<BTreeMap<String, String>> {
    let labels: BTreeMap<String, String> = given.iter().cloned().collect();
    if labels.len() > federation::member::MAX_LABELS {
        anyhow::bail!(
            "--label is given for {} keys; a node carries at most {}",
            labels.len(),
            federation::member::MAX_LABELS
        );
    }
    Ok(labels)
}

/// The first record of a node: no endpoints yet, the default MTU.
pub(super) fn own_record(
    network: &Network,
    name: &str,
    chain: Vec<Cert>,
    address: Ipv4Addr,
    pinned: bool,
    host_networks: Vec<Cidr>,
    labels: BTreeMap<String, String>,
) -> MemberRecord {
    MemberRecord {
        network: network.id,
        name: name.to_string(),
        chain,
        endpoints: vec![],
        reflexive: vec![],
        advertised: vec![],
        control: vec![],
        host_networks,
        mtu: DEFAULT_MTU,
        host_mtu: None,
        path_mtu: None,
        address,
        claimed_ms: now_ms(),
        pinned,
        no_relay: false,
        left_ms: None,
        revocations: vec![],
        metrics: None,
        labels,
        agreements: vec![],
        endings: vec![],
        partner_contacts: vec![],
    }
}

/// `cladnet init`: creates a network, its authority and its first node.
pub fn init(
    opts: &NodeOptions,
    cidr: Option<Cidr>,
    allow_public_range: bool,
    network_name: &str,
) -> Result<()> {
    check_node(opts)?;
    if let Some(c) = cidr.filter(|c| !allow_public_range && !addrspace::is_private(c)) {
        anyhow::bail!("--cidr {c} is public address space: the overlay would hide the real hosts there; use a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10), or pass --allow-public-range if you own it");
    }
    if network_name.is_empty() || network_name.len() > 63 {
        anyhow::bail!("--network must be 1 to 63 characters");
    }
    fresh_dir(opts.state)?;
    say_auto(opts.advertise);
    let inventory = crate::process::runtime()?.block_on(scan(None, None))?;
    let cidr = match cidr {
        Some(c) => {
            let clash = addrspace::conflicts(c, &inventory.networks);
            if !clash.is_empty() {
                eprintln!("WARNING: overlay {c} overlaps this host's network(s) {}; traffic to them would be ambiguous. A free range of the same size: {}",
                    clash.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
                    addrspace::replacement(c, &inventory.networks).map_or("none".into(), |r| r.to_string()));
            }
            c
        }
        None => {
            let drawn = addrspace::draw(&inventory.networks, DEFAULT_HOSTS, &mut rand_core::OsRng)?;
            println!(
                "overlay range {} drawn at random among {} free blocks of {} that overlap none of this host's networks, so independently created networks almost never collide and can federate (choose one yourself with --cidr)",
                drawn.block, drawn.choices, drawn.region
            );
            drawn.block
        }
    };
    if cidr.prefix() > 30 {
        anyhow::bail!("--cidr {cidr} is too small for a network: use /30 or larger (e.g. /24)");
    }
    let authority = NodeKey::generate();
    let network = Network::of(authority.id());
    let key = NodeKey::generate();
    let wg = netstack::PrivateKey::generate();
    let now = now_ms();
    let authority_body = Body::Authority(AuthorityRecord {
        network: network.id,
        name: network_name.to_string(),
        cidr,
        block: cidr,
        mtu: DEFAULT_MTU,
        revocations: vec![],
    });
    let chain = vec![Cert::issue(
        &authority,
        Claim {
            network: network.id,
            subject: key.id(),
            wg_key: wg.public_key().0,
            name: opts.name.to_string(),
            admit: true,
            tags: vec![],
            issued_ms: now,
            expires_ms: now + CERT_TTL_MS,
        },
    )];
    let address = address::pick(&cidr, &key.id(), &BTreeSet::new())
        .context("the overlay range has no host addresses")?;
    let record = own_record(
        &network,
        opts.name,
        chain,
        address,
        false,
        inventory.networks,
        labels(opts.labels)?,
    );
    let store = Store::create(opts.state)?;
    let node = StateDir::create(store, key, wg, Some(authority), network, opts.settings())?;
    let auth_bytes = node
        .authority
        .as_ref()
        .map(|a| a.sign(1, authority_body.to_bytes()).encode())
        .context("authority key missing")?;
    node.save_records(&[(network.authority, auth_bytes)])?;
    node.save_own(&record, 1)?;
    println!(
        "initialised network {network_name} (id {}), overlay {cidr}; this node {} has address {address}\nstart it with: {}",
        network.id,
        opts.name,
        start_command(opts.state)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_name_becomes_a_node_name() {
        assert_eq!(
            name_of_host("Web_01.Example.COM\n").as_deref(),
            Some("web-01")
        );
        assert_eq!(
            name_of_host("ip-10-0-1-5.ec2.internal").as_deref(),
            Some("ip-10-0-1-5")
        );
        assert_eq!(name_of_host("_db_").as_deref(), Some("db"));
        assert_eq!(name_of_host(&"x".repeat(80)).map(|n| n.len()), Some(63));
        assert_eq!(name_of_host("___"), None);
    }
}
