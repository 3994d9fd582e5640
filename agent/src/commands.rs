//! `init` and `join`: they prepare a state directory and exit (the agent
//! runs from it). A refused join leaves no state behind, and only records
//! the ledger accepts are stored.

use crate::inventory::scan;
use crate::statedir::{now_ms, Settings, StateDir};
use anyhow::{Context, Result};
use drivers::store::Store;
use federation::addrspace;
use federation::admission::CERT_TTL_MS;
use federation::cert::{valid_name, Cert, Claim};
use federation::member::{AuthorityRecord, Body, MemberRecord};
use federation::net::{Event, Shell};
use federation::protocol::{JoinRequest, Request, Response};
use federation::token::Invite;
use federation::{address, Cidr, Ledger, Network, NodeId, NodeKey};
use std::collections::BTreeSet;
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

fn check_name(name: &str) -> Result<()> {
    if !valid_name(name) {
        anyhow::bail!("node name {name:?} is invalid: use 1-63 characters of a-z, 0-9 and -, not starting with -");
    }
    Ok(())
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
}

impl NodeOptions<'_> {
    fn settings(&self) -> Settings {
        Settings {
            name: self.name.to_string(),
            listen: self.listen,
            control_listen: self.control_listen,
        }
    }
}

fn own_record(
    network: &Network,
    name: &str,
    chain: Vec<Cert>,
    address: Ipv4Addr,
    pinned: bool,
    host_networks: Vec<Cidr>,
) -> MemberRecord {
    MemberRecord {
        network: network.id,
        name: name.to_string(),
        chain,
        endpoints: vec![],
        reflexive: vec![],
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
    }
}

/// `cladnet init`: creates a network, its authority and its first node.
pub fn init(opts: &NodeOptions, cidr: Option<Cidr>, network_name: &str) -> Result<()> {
    check_name(opts.name)?;
    if network_name.is_empty() || network_name.len() > 63 {
        anyhow::bail!("--network must be 1 to 63 characters");
    }
    fresh_dir(opts.state)?;
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
        None => addrspace::recommend(&inventory.networks, DEFAULT_HOSTS)?.recommended,
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
        "initialised network {network_name} (id {}), overlay {cidr}; this node {} has address {address}\nstart it with: cladnet agent --state {}",
        network.id,
        opts.name,
        opts.state.display()
    );
    Ok(())
}

/// `cladnet join`: presents the token to the inviter, stores the
/// certificate and state it answers with, and claims an address. The
/// state directory is made first (a disk that cannot take it fails before
/// the invite is spent) and removed again if the join is refused.
pub fn join(opts: &NodeOptions, token: &str, pinned: Option<Ipv4Addr>) -> Result<()> {
    check_name(opts.name)?;
    let invite = Invite::decode(token)?;
    let network = Network::of(invite.authority);
    if network.id != invite.network {
        anyhow::bail!(federation::token::TokenError::Malformed);
    }
    fresh_dir(opts.state)?;
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
    let (mut shell, chain, records) =
        rt.block_on(ask_to_join(&key, invite, &wg, opts.name, pinned))?;
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
    // The inviter checked a pinned address before spending the invite.
    let taken: BTreeSet<Ipv4Addr> = ledger.address_owners(now).keys().copied().collect();
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
    );
    let node = StateDir::create(store, key, wg, None, network, opts.settings())?;
    node.save_records(&accepted)?;
    let own = node.save_own(&record, 1)?;
    // The inviter learns the newcomer now (and gossips it), so members
    // know it before its agent starts; the agent introduces itself anyway.
    let push = Request::Push(vec![own]);
    let pushed = rt.block_on(exchange(&mut shell, invite, push, INTRODUCE_TIMEOUT));
    if !matches!(pushed, Ok(Ok(Response::Ack))) {
        tracing::debug!("the inviter did not take this node's first record now: {pushed:?}");
    }
    rt.block_on(shell.close(INTRODUCE_TIMEOUT));
    println!(
        "joined network {} (id {}) as {} with address {address}\nstart it with: cladnet agent --state {}",
        authority.name,
        network.id,
        opts.name,
        opts.state.display()
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

async fn ask_to_join(
    key: &NodeKey,
    invite: &Invite,
    wg: &netstack::PrivateKey,
    name: &str,
    address: Option<Ipv4Addr>,
) -> Result<(Shell, Vec<Cert>, Vec<Vec<u8>>)> {
    let mut shell = Shell::client(key.seed(), &invite.network)?;
    let request = Request::Join(JoinRequest {
        network: invite.network,
        invite: invite.id,
        secret: invite.secret,
        wg_key: wg.public_key().0,
        name: name.to_string(),
        address,
    });
    let answer = exchange(&mut shell, invite, request, JOIN_TIMEOUT).await;
    let where_ = invite
        .addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match answer {
        Err(_) => anyhow::bail!("no answer from the inviting member at {where_} within {}s: check that its agent runs and that UDP to it is allowed", JOIN_TIMEOUT.as_secs()),
        Ok(Err(e)) => anyhow::bail!("cannot reach the inviting member at {where_}: {e}"),
        Ok(Ok(Response::Admitted { chain, records })) => Ok((shell, chain, records)),
        Ok(Ok(Response::Refused(why))) => anyhow::bail!("{why}"),
        Ok(Ok(Response::NotMember | Response::Revoked(_))) => anyhow::bail!("the member you reached is no longer part of the network: ask another member for an invite"),
        Ok(Ok(_)) => anyhow::bail!("the inviting member answered something unexpected; is it a cladnet agent of the same version?"),
    }
}

/// Sends `request` to the inviter of `invite` and waits (up to `timeout`)
/// for its answer (`Err` inside: the request failed, with why).
async fn exchange(
    shell: &mut Shell,
    invite: &Invite,
    request: Request,
    timeout: Duration,
) -> Result<Result<Response, String>, tokio::time::error::Elapsed> {
    let Some(id) = shell.request(&invite.inviter, &invite.addrs, request) else {
        return Ok(Err("the token names an invalid inviter".into()));
    };
    tokio::time::timeout(timeout, async {
        loop {
            match shell.next().await {
                Event::Response {
                    id: got, response, ..
                } if got == id => return Ok(response),
                Event::Failed { id: got, error, .. } if got == id => return Err(error),
                _ => {}
            }
        }
    })
    .await
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
}
