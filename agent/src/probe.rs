//! Overlay probes: ICMP echo requests sent through the overlay interface to
//! peers' overlay addresses, so the measured round trip is the one user
//! traffic sees (kernel → TUN → encryption → underlay → peer and back).
//! Per peer a window of the last results gives min/avg RTT and loss.

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// Results kept per peer.
const WINDOW: usize = 20;
/// A round-robin probe without an answer after this long counts as lost
/// (a peer watched closely gets a shorter time: see `daemon::paths`).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Most probes in flight (bounds the pending map).
const MAX_PENDING: usize = 1024;

/// RTT and loss over the last probes to one peer.
#[derive(Debug, Clone, Default)]
pub struct Window {
    results: VecDeque<Option<Duration>>,
}

impl Window {
    fn push(&mut self, r: Option<Duration>) {
        if self.results.len() == WINDOW {
            self.results.pop_front();
        }
        self.results.push_back(r);
    }

    /// Smallest RTT in the window.
    pub fn min(&self) -> Option<Duration> {
        self.results.iter().flatten().min().copied()
    }

    /// Mean RTT of the answered probes in the window.
    pub fn avg(&self) -> Option<Duration> {
        let answered: Vec<Duration> = self.results.iter().flatten().copied().collect();
        let n = u32::try_from(answered.len()).ok().filter(|n| *n > 0)?;
        Some(answered.iter().sum::<Duration>() / n)
    }

    /// True if the last `n` probes (at least `n` so far) were all lost.
    pub fn last_lost(&self, n: usize) -> bool {
        self.results.len() >= n && self.results.iter().rev().take(n).all(Option::is_none)
    }

    /// Lost share of the window, in thousandths (0 with no probes yet).
    pub fn loss_permille(&self) -> u16 {
        let lost = self.results.iter().filter(|r| r.is_none()).count();
        (lost * 1000).checked_div(self.results.len()).unwrap_or(0) as u16
    }
}

/// A reply that matched one of our probes.
#[derive(Debug, Clone, Copy)]
pub struct Reply<K> {
    /// Whom the probe was for.
    pub key: K,
    /// Its round trip.
    pub rtt: Duration,
}

/// An ICMP echo prober (raw socket; the agent runs as root).
pub struct Prober<K> {
    sock: AsyncFd<Socket>,
    ident: u16,
    seq: u16,
    /// Probes in flight: for whom, to where, sent when, lost after when.
    pending: BTreeMap<u16, (K, Ipv4Addr, Instant, Instant)>,
    windows: BTreeMap<K, Window>,
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl<K: Ord + Copy> Prober<K> {
    /// Opens the socket (needs CAP_NET_RAW).
    pub fn new() -> Result<Self> {
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
            .context("cannot open an ICMP socket for overlay probes (run as root)")?;
        sock.set_nonblocking(true)?;
        let mut ident = [0u8; 2];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut ident);
        Ok(Self {
            // SAFETY: the AsyncFd owns the socket, so the descriptor stays
            // open for as long as it is registered.
            sock: unsafe { AsyncFd::register(sock) }
                .map_err(|e| anyhow::anyhow!("cannot watch the ICMP socket: {e}"))?,
            ident: u16::from_be_bytes(ident),
            seq: 0,
            pending: BTreeMap::new(),
            windows: BTreeMap::new(),
        })
    }

    /// Sends one echo request to `addr` on behalf of `key`, lost if not
    /// answered `within`.
    pub fn send(&mut self, key: K, addr: Ipv4Addr, within: Duration) {
        if self.pending.len() >= MAX_PENDING {
            return;
        }
        self.seq = self.seq.wrapping_add(1);
        let mut pkt = [0u8; 16];
        pkt[0] = 8; // echo request
        pkt[4..6].copy_from_slice(&self.ident.to_be_bytes());
        pkt[6..8].copy_from_slice(&self.seq.to_be_bytes());
        pkt[8..16].copy_from_slice(b"cladnet!");
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        let to = SocketAddr::V4(SocketAddrV4::new(addr, 0));
        if self.sock.get_ref().send_to(&pkt, &to.into()).is_ok() {
            let now = Instant::now();
            self.pending
                .insert(self.seq, (key, addr, now, now + within));
        }
    }

    /// Probes past their time count as lost.
    pub fn expire(&mut self, now: Instant) {
        let lost: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, (.., lost_at))| now > *lost_at)
            .map(|(s, _)| *s)
            .collect();
        for s in lost {
            if let Some((k, ..)) = self.pending.remove(&s) {
                self.windows.entry(k).or_default().push(None);
            }
        }
    }

    /// Waits for replies and returns those that matched a probe.
    pub async fn recv(&mut self) -> Vec<Reply<K>> {
        let mut packets = Vec::new();
        if let Ok(mut guard) = self.sock.readable().await {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
            while let Ok(Ok(n)) = guard.try_io(|s| s.get_ref().recv(&mut buf)) {
                // SAFETY: recv initialised the first n bytes.
                packets.push(
                    buf[..n]
                        .iter()
                        .map(|b| unsafe { b.assume_init() })
                        .collect::<Vec<u8>>(),
                );
                if packets.len() >= 64 {
                    break;
                }
            }
        }
        packets.iter().filter_map(|p| self.parse(p)).collect()
    }

    fn parse(&mut self, ip: &[u8]) -> Option<Reply<K>> {
        let ihl = usize::from(ip.first()? & 0x0f) * 4;
        let src = Ipv4Addr::new(*ip.get(12)?, *ip.get(13)?, *ip.get(14)?, *ip.get(15)?);
        let icmp = ip.get(ihl..)?;
        if icmp.len() < 8 || icmp[0] != 0 {
            return None;
        }
        if u16::from_be_bytes([icmp[4], icmp[5]]) != self.ident {
            return None;
        }
        let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
        let (key, addr, sent, _) = *self.pending.get(&seq)?;
        if addr != src {
            return None;
        }
        self.pending.remove(&seq);
        let rtt = sent.elapsed();
        self.windows.entry(key).or_default().push(Some(rtt));
        Some(Reply { key, rtt })
    }

    /// The window of `key`.
    pub fn window(&self, key: &K) -> Option<&Window> {
        self.windows.get(key)
    }

    /// Forgets the results of `key` (its path changed), and the probes in
    /// flight on the old path.
    pub fn forget(&mut self, key: &K) {
        self.windows.remove(key);
        self.pending.retain(|_, (k, ..)| k != key);
    }

    /// Forgets peers for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        self.windows.retain(|k, _| keep(k));
        self.pending.retain(|_, (k, ..)| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_statistics() {
        let mut w = Window::default();
        assert_eq!(w.loss_permille(), 0);
        assert_eq!(w.avg(), None);
        w.push(Some(Duration::from_millis(2)));
        w.push(None);
        w.push(Some(Duration::from_millis(4)));
        w.push(None);
        assert_eq!(w.min(), Some(Duration::from_millis(2)));
        assert_eq!(w.avg(), Some(Duration::from_millis(3)));
        assert_eq!(w.loss_permille(), 500);
        for _ in 0..WINDOW {
            w.push(Some(Duration::from_millis(1)));
        }
        assert_eq!(w.results.len(), WINDOW);
        assert_eq!(w.loss_permille(), 0, "old losses leave the window");
        assert!(!w.last_lost(2));
        w.push(None);
        w.push(None);
        assert!(w.last_lost(2) && !w.last_lost(3));
        assert!(!Window::default().last_lost(1), "no probes is not silence");
    }

    #[test]
    fn icmp_checksum_of_a_known_packet() {
        // Echo request id 0x1234 seq 1, no payload: checksum 0xe5ca.
        let pkt = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
        assert_eq!(checksum(&pkt), 0xe5ca);
    }
}
