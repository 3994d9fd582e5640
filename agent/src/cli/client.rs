//! The CLI's side of the local API: asking the agent of a state directory,
//! `ping` over the overlay, `set --advertise` and `addr-space recommend`.

use crate::api::{self, docs, Request};
use crate::inventory::scan;
use crate::statedir::socket_path;
use anyhow::{Context, Result};
use federation::{addrspace, Cidr};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// Asks the agent of state directory `dir`; `via` forwards the request to
/// that member.
pub fn ask<T: DeserializeOwned>(dir: &Path, request: Request, via: Option<&str>) -> Result<T> {
    let request = match via {
        Some(target) => Request::Via {
            target: target.to_string(),
            request: Box::new(request),
        },
        None => request,
    };
    let socket = socket_path(dir);
    let stream = std::os::unix::net::UnixStream::connect(&socket).map_err(|e| {
        let state = std::fs::metadata(dir.join(drivers::store::STATE_FILE));
        let denied = |k: std::io::ErrorKind| k == std::io::ErrorKind::PermissionDenied;
        let why = if denied(e.kind()) || state.as_ref().is_err_and(|s| denied(s.kind())) {
            format!(
                "{} is not readable by this user: {}",
                dir.display(),
                crate::process::NEEDS_ROOT
            )
        } else if state.is_ok() {
            format!(
                "the agent of {} is not running: start it with {}",
                dir.display(),
                super::setup::start_command(dir)
            )
        } else {
            format!(
                "no cladnet state in {}: run `cladnet init` or `cladnet join` first",
                dir.display()
            )
        };
        anyhow::anyhow!(why)
    })?;
    api::exchange(stream, &request)
}

/// `cladnet set`: through the running agent (which applies what it can at
/// once), or into the state directory of a stopped node — also of one
/// that stopped while we asked it (its store is free once it has).
pub fn set(dir: &Path, change: crate::change::Change) -> Result<String> {
    if let Some(a) = &change.advertise {
        super::setup::say_auto(a);
    }
    if let Ok(stream) = std::os::unix::net::UnixStream::connect(socket_path(dir)) {
        let request = Request::Set(change.clone());
        if let Some(said) = api::try_exchange::<docs::Text>(stream, &request)? {
            return Ok(said.text);
        }
    }
    let mut state = load_once_stopped(dir)?;
    let mut settings = state.settings.clone();
    let applied = change.apply(&mut settings);
    state.save_settings(settings)?;
    if let Some(labels) = change.labels {
        let (mut record, version) = state.own()?;
        record.labels = labels;
        state.save_own(&record, version.saturating_add(1))?;
    }
    Ok(crate::change::said(&applied, false))
}

/// The state directory of a node whose agent stopped or is stopping: its
/// store is locked until the agent is gone (a few seconds at most).
fn load_once_stopped(dir: &Path) -> Result<crate::statedir::StateDir> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match crate::statedir::StateDir::load(dir) {
            Err(e)
                if std::time::Instant::now() < deadline
                    && e.downcast_ref::<drivers::store::StoreError>()
                        .is_some_and(|s| {
                            matches!(s, drivers::store::StoreError::Locked { .. })
                        }) =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            r => return r,
        }
    }
}

/// What `addr-space recommend --json` prints.
#[derive(Serialize)]
pub struct Recommendation {
    /// The networks avoided.
    pub host_networks: Vec<Cidr>,
    /// The free blocks and the one recommended.
    pub recommendation: addrspace::Recommendation,
}

/// `cladnet addr-space recommend`: the given networks, or every member's
/// (from the agent of `state`), or this host's.
pub fn recommend(
    host_cidrs: Vec<Cidr>,
    hosts: u64,
    state: Option<&Path>,
) -> Result<Recommendation> {
    let nets = if !host_cidrs.is_empty() {
        host_cidrs
    } else if let Some(dir) = state {
        ask::<docs::HostNetworks>(dir, Request::HostNetworks, None)?.host_networks
    } else {
        crate::process::runtime()?
            .block_on(scan(None, None))?
            .networks
    };
    let recommendation = addrspace::recommend(&nets, hosts)?;
    Ok(Recommendation {
        host_networks: nets,
        recommendation,
    })
}

/// `cladnet ping NODE`: echo requests over the overlay to a member, with
/// the RTT of each reply and the path the tunnel takes. The echo requests
/// are this process's own, sent with [`crate::probe`] (the prober the
/// agent measures its peers with; a client of the overlay like any
/// other, it asks nothing of the agent): the one daemon-side module the
/// CLI uses.
pub fn ping(dir: &Path, who: &str, count: u32) -> Result<()> {
    let members: Vec<docs::Member> = ask(dir, Request::Members, None)?;
    let target = crate::lookup::find(
        who,
        members.iter().map(|m| {
            (
                m,
                crate::lookup::Names {
                    name: &m.name,
                    org: &m.org,
                    address: &m.address,
                    id: &m.id,
                    control: &[],
                },
            )
        }),
    )
    .map_err(anyhow::Error::msg)?;
    let name = target.name.clone();
    match target.state.as_str() {
        "left" => anyhow::bail!("{name} left the network: there is nothing to ping"),
        "revoked" => anyhow::bail!("{name} was revoked from the network: there is nothing to ping"),
        _ => {}
    }
    let addr: Ipv4Addr = target
        .address
        .parse()
        .context("that member has no overlay address")?;
    let peers: Vec<docs::Peer> = ask(dir, Request::Peers, None)?;
    let route = match peers.iter().find(|p| p.name == name) {
        Some(p) => format!(
            "{} via {}",
            p.path,
            p.endpoint.as_deref().unwrap_or("no endpoint yet")
        ),
        None => "this node itself".into(),
    };
    println!("PING {name} ({addr}) over the overlay, path: {route}");
    let rtts = crate::process::runtime()?.block_on(async {
        let mut prober = crate::probe::Prober::<u32>::new()?;
        let mut rtts = Vec::new();
        for seq in 0..count {
            prober.send(seq, addr, crate::probe::PROBE_TIMEOUT);
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
    let received = u32::try_from(rtts.len()).unwrap_or(u32::MAX);
    print!(
        "{count} sent, {received} received, {:.0}% loss",
        f64::from(count.saturating_sub(received)) * 100.0 / f64::from(count.max(1))
    );
    if let (Some(min), Some(max)) = (rtts.iter().min(), rtts.iter().max()) {
        let avg = rtts.iter().sum::<Duration>() / received.max(1);
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
