//! `init` and `join`: they prepare a state directory and exit (the agent
//! runs from it). A refused join leaves no state behind, and only records
//! the ledger accepts are stored.

use super::args::NodeArgs;
use super::conversation::{Conversation, UNEXPECTED};
use crate::advertise::Advertise;
use crate::inventory::scan;
use crate::statedir::{now_ms, Settings, StateDir};
use anyhow::{Context, Result};
use drivers::store::Store;
use federation::addrspace;
use federation::admission::CERT_TTL_MS;
use federation::cert::{valid_name, Cert, Claim};
use federation::member::{AuthorityRecord, Body, MemberRecord};
use federation::protocol::{JoinRequest, Request, Response};
use federation::token::Invite;
use federation::{address, Cidr, Ledger, Network, NodeId, NodeKey};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::dataplane::DEFAULT_MTU;
/// How long `join` waits for the inviter.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `join` waits for the inviter to take its first record.
const INTRODUCE_TIMEOUT: Duration = Duration::from_secs(3);
/// Hosts `init` sizes the overlay for when nothing else is known.
const DEFAULT_HOSTS: u64 = 250;

/// Checks the name and the labels before anything is created or spent.
fn check_node(opts: &NodeOptions) -> Result<()> {
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

fn fresh_dir(dir: &Path) -> Result<()> {
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
    fn settings(&self) -> Settings {
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

fn own_record(
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
        crate::statedir::start_command(opts.state)
    );
    Ok(())
}

/// `cladnet join`: presents the token to the inviter, stores the
/// certificate and state it answers with, and claims an address. The
/// state directory is made first (a disk that cannot take it fails before
/// the invite is spent) and removed again if the join is refused.
pub fn join(opts: &NodeOptions, token: &str, pinned: Option<Ipv4Addr>) -> Result<()> {
    check_node(opts)?;
    let invite = Invite::decode(token)?;
    let network = Network::of(invite.authority);
    if network.id != invite.network {
        anyhow::bail!(federation::token::TokenError::Malformed);
    }
    fresh_dir(opts.state)?;
    say_auto(opts.advertise);
    let made_dir = !opts.state.exists();
    let store = Store::create(opts.state)?;
    let result = join_into(store, opts, &invite, network, pinned);
    if result.is_err() {
        // Nothing of a refused join stays behind.
        let _ = std::fs::remove_file(opts.state.join(drivers::store::STATE_FILE));
        if made_dir {
            let _ = std::fs::remove_dir(opts.state);
        }
    }
    result
}

fn join_into(
    store: Store,
    opts: &NodeOptions,
    invite: &Invite,
    network: Network,
    pinned: Option<Ipv4Addr>,
) -> Result<()> {
    let key = NodeKey::generate();
    let wg = netstack::PrivateKey::generate();
    let rt = crate::process::runtime()?;
    // Everything that can fail here fails before the invite is spent.
    let mut inventory = rt.block_on(scan(None, None))?;
    let (
        mut talk,
        Admission {
            chain,
            records,
            taken,
        },
    ) = rt.block_on(ask_to_join(&key, invite, &wg, opts.name, pinned))?;
    let now = now_ms();
    let (ledger, accepted) = admitted_state(network, &records, now);
    let authority = ledger
        .authority()
        .cloned()
        .context("the member sent no network description; ask for a new invite")?;
    // Addresses inside the overlay (an interface of an earlier run) are
    // not this host's networks.
    inventory
        .networks
        .retain(|n| !authority.cidr.contains(n.addr()));
    let clash = addrspace::conflicts(authority.cidr, &inventory.networks);
    if !clash.is_empty() {
        eprintln!(
            "WARNING: the network's overlay {} overlaps this host's network(s) {}: packets to those addresses may go into the overlay instead of the local network. Consider moving the network to {}.",
            authority.cidr,
            clash.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
            addrspace::replacement(authority.cidr, &inventory.networks).map_or("a free private range".into(), |r| r.to_string())
        );
    }
    // The inviter checked a pinned address before spending the invite. The
    // records may be only the first batch of a large network's: the
    // addresses taken come apart.
    let taken: BTreeSet<Ipv4Addr> = ledger
        .address_owners(now)
        .into_keys()
        .chain(taken)
        .collect();
    let address = match pinned {
        Some(a) => a,
        None => address::pick(&authority.block, &key.id(), &taken)
            .context("the network's address range is full")?,
    };
    let record = own_record(
        &network,
        opts.name,
        chain,
        address,
        pinned.is_some(),
        inventory.networks,
        labels(opts.labels)?,
    );
    let node = StateDir::create(store, key, wg, None, network, opts.settings())?;
    node.save_records(&accepted)?;
    let own = node.save_own(&record, 1)?;
    // The member that answered learns the newcomer now (and gossips it),
    // so members know it before its agent starts; the agent introduces
    // itself anyway.
    let pushed = rt.block_on(talk.ask(&Request::Push(vec![own]), INTRODUCE_TIMEOUT));
    if !matches!(pushed, Ok(Response::Ack)) {
        tracing::debug!("the member did not take this node's first record now: {pushed:?}");
    }
    rt.block_on(talk.close(INTRODUCE_TIMEOUT));
    println!(
        "joined network {} (id {}) as {} with address {address}\nstart it with: {}",
        authority.name,
        network.id,
        opts.name,
        crate::statedir::start_command(opts.state)
    );
    Ok(())
}

/// The state a join answer carries, as a ledger of `network`, and the
/// records it accepted (the only ones stored).
fn admitted_state(
    network: Network,
    records: &[Vec<u8>],
    now_ms: u64,
) -> (Ledger, Vec<(NodeId, Vec<u8>)>) {
    let mut ledger = Ledger::new(network);
    let mut accepted = Vec::new();
    for r in records {
        if let Ok(Some(delta)) = ledger.ingest(r, now_ms) {
            accepted.push((delta.writer, r.clone()));
        }
    }
    (ledger, accepted)
}

/// What a member answered to a join.
struct Admission {
    /// The newcomer's certificate chain.
    chain: Vec<Cert>,
    /// The first batch of the network's state.
    records: Vec<Vec<u8>>,
    /// The overlay addresses held.
    taken: Vec<Ipv4Addr>,
}

/// Presents the invite to the members the token names: the conversation,
/// to go on with the member that admitted this node, and its answer.
async fn ask_to_join(
    key: &NodeKey,
    invite: &Invite,
    wg: &netstack::PrivateKey,
    name: &str,
    address: Option<Ipv4Addr>,
) -> Result<(Conversation, Admission)> {
    let mut talk = Conversation::open(key, &invite.network, invite.contacts())?;
    let request = Request::Join(JoinRequest {
        network: invite.network,
        invite: invite.id,
        secret: invite.secret,
        wg_key: wg.public_key().0,
        name: name.to_string(),
        address,
        inviter: Some(invite.inviter),
    });
    match talk.ask(&request, JOIN_TIMEOUT).await? {
        Response::Admitted {
            chain,
            records,
            taken,
        } => Ok((
            talk,
            Admission {
                chain,
                records,
                taken,
            },
        )),
        Response::Refused(why) => anyhow::bail!("{why}"),
        Response::NotMember | Response::Revoked(_) => anyhow::bail!("the member you reached is no longer part of the network: ask another member for an invite"),
        _ => anyhow::bail!(UNEXPECTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use federation::fixture::TestNetwork;

    #[test]
    fn a_join_stores_only_what_the_ledger_accepts() {
        let net = TestNetwork::new(6);
        let a = net.member(1);
        // A record signed by someone the authority never certified.
        let stranger = TestNetwork::new(7).member(2);
        let records = vec![
            net.authority_record(),
            a.signed(1),
            stranger.signed(1),
            b"junk".to_vec(),
        ];
        let (ledger, accepted) = admitted_state(net.network, &records, 0);
        let writers: Vec<NodeId> = accepted.iter().map(|(w, _)| *w).collect();
        assert_eq!(writers.len(), 2, "{writers:?}");
        assert!(writers.contains(&net.network.authority) && writers.contains(&a.key.id()));
        assert_eq!(ledger.state().len(), 2);
    }

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
