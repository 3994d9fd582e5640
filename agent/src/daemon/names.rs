//! The DNS listener on this node's overlay address, port 53: a task that
//! answers from the latest zone the control loop hands it ([`crate::dns`]
//! holds the rules). Where systemd-resolved runs, the interface is
//! registered with it for `~cladnet`, so `ping b.acme.cladnet` works
//! without touching `/etc/resolv.conf`.

use crate::dns::{self, Zone};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The DNS port.
const PORT: u16 = 53;

/// Queries answered and dropped (not a DNS query), for `status`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Answers sent.
    pub answered: AtomicU64,
    /// Datagrams that were no well-formed query.
    pub dropped: AtomicU64,
}

/// The listener and the zone it answers from.
pub struct Names {
    zone: watch::Sender<Arc<Zone>>,
    bound: Option<(Ipv4Addr, JoinHandle<()>)>,
    /// The address it could not listen on (said once; tried again when
    /// the address changes).
    failed: Option<Ipv4Addr>,
    iface: String,
    /// What it answered.
    pub counters: Arc<Counters>,
}

impl Names {
    /// No listener yet; `iface` is the overlay interface.
    pub fn new(iface: &str) -> Self {
        Self {
            zone: watch::Sender::new(Arc::new(Zone::default())),
            bound: None,
            failed: None,
            iface: iface.into(),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Answers from `zone` from now on.
    pub fn set_zone(&self, zone: Zone) {
        self.zone.send_if_modified(|z| {
            let changed = **z != zone;
            if changed {
                *z = Arc::new(zone);
            }
            changed
        });
    }

    /// Listens on `address` (port 53), moving from the old address if it
    /// changed. A failure is said once and leaves names unanswered.
    pub fn listen(&mut self, address: Ipv4Addr) {
        if self.bound.as_ref().is_some_and(|(a, _)| *a == address) || self.failed == Some(address) {
            return;
        }
        if let Some((_, task)) = self.bound.take() {
            task.abort();
        }
        let at = SocketAddr::from((address, PORT));
        let socket = match std::net::UdpSocket::bind(at)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(tokio::net::UdpSocket::from_std)
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("names are not answered: cannot listen on {at}: {e}");
                self.failed = Some(address);
                return;
            }
        };
        self.failed = None;
        tracing::info!(%at, "answering NAME.NETWORK.{} for members", dns::SUFFIX);
        let task = tokio::spawn(serve(socket, self.zone.subscribe(), self.counters.clone()));
        self.bound = Some((address, task));
        register_with_resolved(&self.iface, address);
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        if let Some((_, task)) = self.bound.take() {
            task.abort();
        }
    }
}

async fn serve(
    socket: tokio::net::UdpSocket,
    zone: watch::Receiver<Arc<Zone>>,
    counters: Arc<Counters>,
) {
    // 1232 bytes: the DNS flag day's safe UDP payload.
    let mut buf = [0u8; 1232];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("DNS receive failed: {e}");
                continue;
            }
        };
        let current = zone.borrow().clone();
        match buf.get(..n).and_then(|q| dns::answer(q, &current)) {
            Some(answer) => {
                counters.answered.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = socket.send_to(&answer, from).await {
                    tracing::debug!("cannot answer {from}: {e}");
                }
            }
            None => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Tells systemd-resolved (when it runs) to ask this node for `~cladnet`
/// on the overlay interface; in the background, and only said if it fails.
fn register_with_resolved(iface: &str, address: Ipv4Addr) {
    if !Path::new("/run/systemd/resolve/io.systemd.Resolve").exists() {
        return;
    }
    let iface = iface.to_string();
    std::thread::spawn(move || {
        let run = |args: &[&str]| {
            std::process::Command::new("resolvectl")
                .args(args)
                .status()
                .map_err(|e| e.to_string())
                .and_then(|s| s.success().then_some(()).ok_or_else(|| s.to_string()))
        };
        let domain = format!("~{}", dns::SUFFIX);
        let r = run(&["dns", &iface, &address.to_string()])
            .and_then(|()| run(&["domain", &iface, &domain]));
        match r {
            Ok(()) => tracing::info!("systemd-resolved asks this node for *.{}", dns::SUFFIX),
            Err(e) => tracing::warn!("cannot register with systemd-resolved ({e}): point the host's resolver at {address} for {}", dns::SUFFIX),
        }
    });
}

/// The zone of what `replica` holds: the owner of every address, own
/// members under this network's name, connected partners' under theirs.
pub fn zone_of(replica: &federation::replica::Replica, now_ms: u64) -> Zone {
    let ledger = replica.ledger();
    let roster = replica.roster(now_ms);
    let own = ledger
        .authority()
        .map(|a| a.name.clone())
        .unwrap_or_default();
    let entries: Vec<(String, String, Ipv4Addr)> = roster
        .address_owners(now_ms)
        .into_iter()
        .filter_map(|(address, id)| {
            let m = roster.member(&id, now_ms)?;
            let network = m.record.network;
            let org = if network == ledger.network().id {
                own.clone()
            } else {
                replica
                    .partners()
                    .agreement(&network)?
                    .side(&network)?
                    .name
                    .clone()
            };
            Some((m.record.name.clone(), org, address))
        })
        .collect();
    Zone::new(entries.iter().map(|(n, o, a)| (n.as_str(), o.as_str(), *a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Log lines written while `f` runs.
    fn logged(f: impl FnOnce()) -> String {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Capture(writer.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_port_that_cannot_be_bound_is_said_once_not_at_every_apply() {
        // Taken here (as root), or refused to a user who is not.
        let _taken = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, PORT));
        let mut names = Names::new("cl-test0");
        let said = logged(|| {
            for _ in 0..5 {
                names.listen(Ipv4Addr::LOCALHOST);
            }
        });
        assert_eq!(said.matches("names are not answered").count(), 1, "{said}");
        assert!(names.bound.is_none());
    }
}
