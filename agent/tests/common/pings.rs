//! Ping streams over the overlay, as an operator watches a network: a
//! timestamped stream between two members and when it healed after a
//! change, and the sustained check every NAT lab ends with (every ordered
//! pair at 2 Hz for a minute: at most 5 % lost, no gap over 3 s).

use super::net::Net;
use anyhow::{bail, Context, Result};
use std::time::Duration;

/// Interval of the sustained check's pings.
const SUSTAINED_INTERVAL: f64 = 0.5;
/// Most loss a pair may show in the sustained check.
pub const MAX_LOSS: f64 = 0.05;
/// Longest run without a reply a pair may show in the sustained check.
pub const MAX_GAP: Duration = Duration::from_secs(3);

/// A `ping -D` stream (timestamped replies, one every `interval` s) from
/// member `from` to `to`, logged under `label`.
pub fn ping_stream(
    net: &Net,
    from: usize,
    label: &str,
    to: &str,
    interval: &str,
) -> Result<testbed::Proc> {
    net.lab.spawn(
        &net.members[from].node,
        label,
        &["ping", "-n", "-D", "-i", interval, "-W", "1", to],
    )
}

/// Seconds from `changed_at` (Unix time) to the first reply `ping -D`
/// logged after it.
pub fn healed_after(ping_log: &str, changed_at: f64) -> Result<f64> {
    ping_log
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse::<f64>().ok())
        .find(|t| *t > changed_at + 0.05)
        .map(|t| t - changed_at)
        .context("no reply after the address change")
}

/// Now, in seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What one pair's pings showed.
#[derive(Debug, Clone, PartialEq)]
pub struct PairReport {
    /// Pings sent.
    pub sent: u32,
    /// Replies received.
    pub received: u32,
    /// The longest run without a reply, in seconds.
    pub gap_s: f64,
}

impl PairReport {
    /// Lost share.
    pub fn loss(&self) -> f64 {
        1.0 - f64::from(self.received) / f64::from(self.sent.max(1))
    }
}

/// Reads `ping -n -c COUNT -i INTERVAL` output: replies by sequence number.
pub fn read_pings(log: &str, count: u32, interval: f64) -> PairReport {
    let mut seqs: Vec<u32> = log
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.split("icmp_seq=").nth(1)?.split(' ').next()?.parse().ok())
        .filter(|s| (1..=count).contains(s))
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    // Gaps between consecutive replies, and before the first / after the
    // last one (the stream's own ends count as replies).
    let mut prev = 0;
    let mut longest = 0;
    for s in seqs.iter().copied().chain(std::iter::once(count + 1)) {
        longest = longest.max(s - prev - 1);
        prev = s;
    }
    PairReport {
        sent: count,
        received: u32::try_from(seqs.len()).unwrap_or(u32::MAX),
        gap_s: f64::from(longest) * interval,
    }
}

/// The sustained check a NAT lab ends with: every ordered pair of
/// `members` for 60 s; says the worst figures (for `lab`, behind routers
/// of `firewall`'s kind).
pub fn sustained_check(
    net: &Net,
    members: &[usize],
    lab: &str,
    firewall: testbed::Firewall,
) -> Result<()> {
    let (loss, gap) = sustained_all_pairs(net, members, 60)?;
    eprintln!(
        "FIGURE {lab} ({firewall:?} routers): every ordered pair at 2 Hz for 60 s, worst loss {:.1} %, longest gap {gap:.1} s",
        loss * 100.0
    );
    Ok(())
}

/// Pings every ordered pair of `members` at 2 Hz for `secs` seconds, all
/// at once; fails unless each loses at most [`MAX_LOSS`] with no gap over
/// [`MAX_GAP`]. Returns the worst loss and gap, for the figures.
pub fn sustained_all_pairs(net: &Net, members: &[usize], secs: u32) -> Result<(f64, f64)> {
    let count = (f64::from(secs) / SUSTAINED_INTERVAL) as u32;
    let addrs: Vec<String> = members
        .iter()
        .map(|&i| net.address(i))
        .collect::<Result<_>>()?;
    let mut streams = Vec::new();
    for (a, &i) in members.iter().enumerate() {
        for (b, &j) in members.iter().enumerate().filter(|(b, _)| *b != a) {
            let label = format!(
                "sustained-{}-{}",
                net.members[i].node.name, net.members[j].node.name
            );
            let p = net.lab.spawn(
                &net.members[i].node,
                &label,
                &[
                    "ping",
                    "-n",
                    "-i",
                    &SUSTAINED_INTERVAL.to_string(),
                    "-W",
                    "1",
                    "-c",
                    &count.to_string(),
                    &addrs[b],
                ],
            )?;
            streams.push((i, j, p));
        }
    }
    let mut bad = Vec::new();
    let (mut worst_loss, mut worst_gap) = (0.0f64, 0.0f64);
    for (i, j, mut p) in streams {
        p.wait_timeout(Duration::from_secs(u64::from(secs) + 15))
            .with_context(|| format!("ping {i} -> {j} did not end"))?;
        let r = read_pings(&p.log(), count, SUSTAINED_INTERVAL);
        worst_loss = worst_loss.max(r.loss());
        worst_gap = worst_gap.max(r.gap_s);
        if r.loss() > MAX_LOSS || r.gap_s > MAX_GAP.as_secs_f64() {
            bad.push(format!(
                "{} -> {}: {}/{} replies, longest gap {:.1} s",
                net.members[i].node.name, net.members[j].node.name, r.received, r.sent, r.gap_s
            ));
        }
    }
    if !bad.is_empty() {
        bail!("sustained check failed: {}", bad.join("; "));
    }
    Ok((worst_loss, worst_gap))
}

#[cfg(test)]
mod tests {
    #[test]
    fn gaps_and_losses_are_read_from_sequence_numbers() {
        use super::read_pings;
        let line = |s: u32| format!("64 bytes from 100.64.0.2: icmp_seq={s} ttl=64 time=0.3 ms\n");
        let log: String = [1, 2, 3, 9, 10].iter().map(|s| line(*s)).collect();
        let r = read_pings(&log, 10, 0.5);
        assert_eq!((r.sent, r.received), (10, 5));
        assert!((r.gap_s - 2.5).abs() < 1e-9, "seq 4-8 missing: {r:?}");
        assert!((r.loss() - 0.5).abs() < 1e-9);
        let r = read_pings(&line(10), 10, 0.5);
        assert!((r.gap_s - 4.5).abs() < 1e-9, "nothing before seq 10: {r:?}");
        assert_eq!(read_pings("", 4, 0.5).gap_s, 2.0);
    }
}
