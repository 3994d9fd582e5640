//! Where members see this node's control plane (what libp2p's identify
//! reports on each connection): behind a NAT, the public address and port
//! other nodes can dial, which goes into the own record and every token.
//! Only members' reports are taken (the caller checks), one per member,
//! each for [`KEPT_FOR`].

use federation::NodeId;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A report is believed this long.
pub const KEPT_FOR: Duration = Duration::from_secs(600);
/// Most observed endpoints published.
pub const MAX_PUBLISHED: usize = 2;

/// Members' latest reports.
#[derive(Default)]
pub struct Observed {
    by: BTreeMap<NodeId, (SocketAddr, Instant)>,
}

impl Observed {
    /// Nothing reported yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Member `from` sees our control plane at `addr`; true if that is news.
    pub fn handle_report(&mut self, from: NodeId, addr: SocketAddr, now: Instant) -> bool {
        let old = self.by.insert(from, (addr, now));
        old.is_none_or(|(a, _)| a != addr)
    }

    /// Keeps the reports of members `keep` says are still members.
    pub fn retain(&mut self, keep: impl Fn(&NodeId) -> bool) {
        self.by.retain(|id, _| keep(id));
    }

    /// The endpoints reported in the last [`KEPT_FOR`] that are not on one
    /// of our own addresses (`own`), the most reported first.
    pub fn endpoints(&mut self, now: Instant, own: &[IpAddr]) -> Vec<SocketAddr> {
        self.by
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < KEPT_FOR);
        let mut count: BTreeMap<SocketAddr, usize> = BTreeMap::new();
        for (addr, _) in self.by.values() {
            if !own.contains(&addr.ip()) {
                *count.entry(*addr).or_default() += 1;
            }
        }
        let mut ranked: Vec<(usize, SocketAddr)> = count.into_iter().map(|(a, n)| (n, a)).collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked
            .into_iter()
            .take(MAX_PUBLISHED)
            .map(|(_, a)| a)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_rank_expire_and_leave_our_own_addresses_out() {
        let t0 = testbed::fake_time::origin();
        let mut o = Observed::new();
        let (public, other, own): (SocketAddr, SocketAddr, SocketAddr) = (
            "198.18.0.7:51821".parse().unwrap(),
            "198.18.0.8:40000".parse().unwrap(),
            "10.0.1.5:51821".parse().unwrap(),
        );
        assert!(o.handle_report(NodeId([1; 32]), other, t0));
        assert!(o.handle_report(NodeId([2; 32]), public, t0));
        assert!(o.handle_report(NodeId([3; 32]), public, t0));
        assert!(!o.handle_report(NodeId([3; 32]), public, t0), "not news");
        o.handle_report(NodeId([4; 32]), own, t0);
        assert_eq!(o.endpoints(t0, &[own.ip()]), vec![public, other]);
        o.retain(|id| *id != NodeId([1; 32]));
        assert_eq!(o.endpoints(t0, &[own.ip()]), vec![public]);
        assert!(o.endpoints(t0 + KEPT_FOR, &[]).is_empty());
    }
}
