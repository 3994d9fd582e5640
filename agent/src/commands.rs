//! The network commands: `init` and `join` prepare a state directory and
//! exit; `invite`, `status`, `members`, `revoke` and `leave` ask the running
//! agent over its local socket; `addr-space recommend` works offline.

use crate::inventory::scan;
use crate::statedir::{now_ms, socket_path, Node, Settings};
use anyhow::{Context, Result};
use drivers::store::Store;
use federation::addrspace;
use federation::admission::CERT_TTL_MS;
use federation::cert::{valid_name, Cert, Claim};
use federation::member::{AuthorityRecord, Body, MemberRecord};
use federation::net::{Event, Shell};
use federation::protocol::{JoinRequest, Request, Response};
use federation::token::Invite;
use federation::{address, Cidr, Ledger, Network, NodeKey};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Default overlay MTU (1500 minus IPv6, UDP and WireGuard overhead).
pub const DEFAULT_MTU: u16 = 1420;
/// How long `join` waits for the inviter.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Hosts `init` sizes the overlay for when nothing else is known.
const DEFAULT_HOSTS: u64 = 250;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

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
    let inventory = runtime()?.block_on(scan(None, None))?;
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
    let node = Node::create(store, key, wg, Some(authority), network, opts.settings())?;
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
/// certificate and state it answers with, and claims an address.
pub fn join(opts: &NodeOptions, token: &str, pinned: Option<Ipv4Addr>) -> Result<()> {
    check_name(opts.name)?;
    let invite = Invite::decode(token)?;
    let network = Network::of(invite.authority);
    if network.id != invite.network {
        anyhow::bail!(federation::token::TokenError::Malformed);
    }
    fresh_dir(opts.state)?;
    let key = NodeKey::generate();
    let wg = netstack::PrivateKey::generate();
    let rt = runtime()?;
    let (chain, records) = rt.block_on(ask_to_join(&key, &invite, &wg, opts.name))?;
    let now = now_ms();
    let mut ledger = Ledger::new(network);
    for r in &records {
        let _ = ledger.ingest(r, now);
    }
    let authority = ledger
        .authority()
        .cloned()
        .context("the member sent no network description; ask for a new invite")?;
    let inventory = rt.block_on(scan(None, Some(authority.cidr)))?;
    let clash = addrspace::conflicts(authority.cidr, &inventory.networks);
    if !clash.is_empty() {
        eprintln!(
            "WARNING: the network's overlay {} overlaps this host's network(s) {}: packets to those addresses may go into the overlay instead of the local network. Consider moving the network to {}.",
            authority.cidr,
            clash.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
            addrspace::replacement(authority.cidr, &inventory.networks).map_or("a free private range".into(), |r| r.to_string())
        );
    }
    let taken: BTreeSet<Ipv4Addr> = ledger.address_owners(now).keys().copied().collect();
    let address = match pinned {
        Some(a) if !authority.block.is_host(a) => anyhow::bail!(
            "--address {a} is not a usable address of the network's range {}",
            authority.block
        ),
        Some(a) if taken.contains(&a) => anyhow::bail!(
            "--address {a} is already used by another member: pick another or leave --address out"
        ),
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
    let store = Store::create(opts.state)?;
    let node = Node::create(store, key, wg, None, network, opts.settings())?;
    let received: Vec<_> = records
        .iter()
        .filter_map(|r| {
            federation::SignedRecord::decode(r)
                .ok()
                .map(|s| (s.writer, r.clone()))
        })
        .collect();
    node.save_records(&received)?;
    node.save_own(&record, 1)?;
    println!(
        "joined network {} (id {}) as {} with address {address}\nstart it with: cladnet agent --state {}",
        authority.name,
        network.id,
        opts.name,
        opts.state.display()
    );
    Ok(())
}

async fn ask_to_join(
    key: &NodeKey,
    invite: &Invite,
    wg: &netstack::PrivateKey,
    name: &str,
) -> Result<(Vec<Cert>, Vec<Vec<u8>>)> {
    let mut shell = Shell::start(key.seed(), &invite.network, None)?;
    let addrs = invite.addrs.iter().filter_map(|a| a.parse().ok()).collect();
    let request = Request::Join(JoinRequest {
        network: invite.network,
        invite: invite.id,
        secret: invite.secret,
        wg_key: wg.public_key().0,
        name: name.to_string(),
    });
    let id = shell
        .request(&invite.inviter, addrs, request)
        .context("the token names an invalid inviter")?;
    let answer = tokio::time::timeout(JOIN_TIMEOUT, async {
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
    .await;
    let where_ = invite.addrs.join(", ");
    match answer {
        Err(_) => anyhow::bail!("no answer from the inviting member at {where_} within {}s: check that its agent runs and that UDP to it is allowed", JOIN_TIMEOUT.as_secs()),
        Ok(Err(e)) => anyhow::bail!("cannot reach the inviting member at {where_}: {e}"),
        Ok(Ok(Response::Admitted { chain, records })) => Ok((chain, records)),
        Ok(Ok(Response::Refused(why))) => anyhow::bail!("{why}"),
        Ok(Ok(_)) => anyhow::bail!("the inviting member answered something unexpected; is it a cladnet agent of the same version?"),
    }
}

/// Sends one JSON request to the agent of state directory `dir`.
pub fn ask(dir: &Path, request: Value) -> Result<Value> {
    let socket = socket_path(dir);
    let stream = std::os::unix::net::UnixStream::connect(&socket).with_context(|| {
        if dir.join(drivers::store::STATE_FILE).exists() {
            format!(
                "the agent of {} is not running: start it with `cladnet agent --state {}` (and run this as root)",
                dir.display(),
                dir.display()
            )
        } else {
            format!("no cladnet state in {}: run `cladnet init` or `cladnet join` first", dir.display())
        }
    })?;
    crate::api::exchange(stream, &request.to_string())
}

/// Human table of `members`.
pub fn members_table(list: &Value) -> String {
    let mut out = format!(
        "{:<16} {:<15} {:<8} {:>10}  {:<14} {}\n",
        "NAME", "ADDRESS", "STATE", "SEEN", "ID", "ENDPOINTS"
    );
    for m in list.as_array().into_iter().flatten() {
        let seen = m["last_seen_ms"]
            .as_u64()
            .map_or("never".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
        let id = m["id"].as_str().unwrap_or("");
        out += &format!(
            "{:<16} {:<15} {:<8} {:>10}  {:<14} {}\n",
            m["name"].as_str().unwrap_or("?"),
            m["address"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?"),
            seen,
            &id[..id.len().min(12)],
            m["endpoints"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default()
        );
    }
    out
}

/// Human rendering of `status`.
pub fn status_text(s: &Value) -> String {
    let mut out = String::new();
    for key in [
        "name",
        "id",
        "address",
        "network",
        "network_id",
        "cidr",
        "mtu",
        "interface",
        "listen",
        "control_listen",
        "members",
        "connected",
    ] {
        let v = &s[key];
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        out += &format!("{key:>15}: {text}\n");
    }
    out
}

/// `cladnet addr-space recommend`.
pub fn recommend(host_cidrs: Vec<Cidr>, hosts: u64, state: Option<&Path>) -> Result<Value> {
    let nets = if !host_cidrs.is_empty() {
        host_cidrs
    } else if let Some(dir) = state {
        // Every member's host networks, from the running agent.
        let list = ask(dir, json!({"cmd": "host_networks"}))?;
        serde_json::from_value(list["host_networks"].clone()).context("unreadable answer")?
    } else {
        runtime()?.block_on(scan(None, None))?.networks
    };
    let rec = addrspace::recommend(&nets, hosts)?;
    Ok(json!({"host_networks": nets, "recommendation": rec}))
}

/// `cladnet ping NODE`: echo requests over the overlay to a member, with
/// the RTT of each reply and the path the tunnel takes.
pub fn ping(dir: &Path, who: &str, count: u32) -> Result<()> {
    let members = ask(dir, json!({"cmd": "members"}))?;
    let list = members.as_array().cloned().unwrap_or_default();
    let hits: Vec<&Value> = list
        .iter()
        .filter(|m| {
            m["name"] == who
                || m["address"] == who
                || (who.len() >= 8 && m["id"].as_str().is_some_and(|id| id.starts_with(who)))
        })
        .collect();
    let target = match hits.as_slice() {
        [one] => *one,
        [] => anyhow::bail!("no member is called {who:?}: see `cladnet members`"),
        _ => anyhow::bail!("{who:?} names several members: give the node id instead"),
    };
    let name = target["name"].as_str().unwrap_or("?").to_string();
    let addr: Ipv4Addr = target["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .context("that member has no overlay address")?;
    let peers = ask(dir, json!({"cmd": "peers"}))?;
    let peer = peers
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name.as_str()).cloned());
    let route = match &peer {
        Some(p) => format!(
            "{} via {}",
            p["path"].as_str().unwrap_or("?"),
            p["endpoint"].as_str().unwrap_or("no endpoint yet")
        ),
        None => "this node itself".into(),
    };
    println!("PING {name} ({addr}) over the overlay, path: {route}");
    let rtts = runtime()?.block_on(async {
        let mut prober = crate::probe::Prober::<u32>::new()?;
        let mut rtts = Vec::new();
        for seq in 0..count {
            prober.send(seq, addr);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            let mut got = None;
            while got.is_none() {
                tokio::select! {
                    replies = prober.recv() => got = replies.into_iter().find(|r| r.key == seq).map(|r| r.rtt),
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            match got {
                Some(rtt) => {
                    println!("reply from {name} ({addr}): seq={seq} time={:.3} ms", rtt.as_secs_f64() * 1000.0);
                    rtts.push(rtt);
                    tokio::time::sleep_until(deadline).await;
                }
                None => println!("no reply from {name} ({addr}): seq={seq}"),
            }
        }
        anyhow::Ok(rtts)
    })?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let lost = count as usize - rtts.len();
    print!(
        "{count} sent, {} received, {:.0}% loss",
        rtts.len(),
        lost as f64 * 100.0 / f64::from(count.max(1))
    );
    if let (Some(min), Some(max)) = (rtts.iter().min(), rtts.iter().max()) {
        let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
        print!(
            ", rtt min/avg/max {:.3}/{:.3}/{:.3} ms",
            ms(*min),
            ms(avg),
            ms(*max)
        );
    }
    println!();
    if rtts.is_empty() {
        anyhow::bail!("{name} did not answer over the overlay");
    }
    Ok(())
}
