//! `cladnet join`: presents an invite to the members its token names
//! ([`Conversation`]), stores the certificate and state the member that
//! admits this node answers with (only the records the ledger accepts),
//! claims an address, and hands the member the new node's first record.
//! A refused join leaves no state behind.

use super::conversation::{Conversation, UNEXPECTED};
use super::setup::{
    check_node, fresh_dir, labels, own_record, say_auto, start_command, NodeOptions,
};
use crate::inventory::scan;
use crate::statedir::{now_ms, StateDir};
use anyhow::{Context, Result};
use drivers::store::Store;
use federation::addrspace;
use federation::cert::Cert;
use federation::protocol::{JoinRequest, Request, Response};
use federation::token::Invite;
use federation::{address, Ledger, Network, NodeId, NodeKey};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

/// How long `join` waits for the inviter.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `join` waits for the inviter to take its first record.
const INTRODUCE_TIMEOUT: Duration = Duration::from_secs(3);

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

/// `join` into the fresh `store`: the member admits this node, then its
/// state is written.
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
    let Admission {
        mut talk,
        chain,
        records,
        taken,
    } = rt.block_on(ask_to_join(&key, invite, &wg, opts.name, pinned))?;
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
        start_command(opts.state)
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
    /// The conversation, to go on with the member that answered.
    talk: Conversation,
    /// The newcomer's certificate chain.
    chain: Vec<Cert>,
    /// The first batch of the network's state.
    records: Vec<Vec<u8>>,
    /// The overlay addresses held.
    taken: Vec<Ipv4Addr>,
}

/// Presents the invite to the members the token names; what the one
/// that admits this node answers.
async fn ask_to_join(
    key: &NodeKey,
    invite: &Invite,
    wg: &netstack::PrivateKey,
    name: &str,
    address: Option<Ipv4Addr>,
) -> Result<Admission> {
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
        } => Ok(Admission {
            talk,
            chain,
            records,
            taken,
        }),
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
}
