//! What the CLI prints without `--json`: the agent's documents as text
//! and tables.

use crate::api::docs;
use std::fmt::Write as _;

/// `v × scale` with `decimals` digits and a unit, or `-` when absent.
fn number(v: Option<f64>, scale: f64, decimals: usize, unit: &str) -> String {
    v.map_or("-".into(), |x| format!("{:.*}{unit}", decimals, x * scale))
}

/// `status` as aligned lines.
pub fn status(s: &docs::Status) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".into()
        } else {
            v.join(" ")
        }
    };
    let rows: [(&str, String); 15] = [
        ("name", s.name.clone()),
        ("standing", s.standing.clone()),
        ("id", s.id.clone()),
        ("address", s.address.clone()),
        ("network", opt(&s.network)),
        ("network_id", s.network_id.clone()),
        ("cidr", opt(&s.cidr)),
        ("mtu", format!("{} ({})", s.mtu, s.mtu_reason)),
        ("interface", s.interface.clone()),
        ("listen", s.listen.clone()),
        ("control_listen", s.control_listen.clone()),
        ("advertised", list(&s.advertised)),
        ("seen_at", list(&s.reflexive)),
        ("members", s.members.to_string()),
        ("connected", s.connected.to_string()),
    ];
    let mut out = format!("{}\n", s.verdict);
    for (k, v) in &rows {
        let _ = writeln!(out, "{k:>15}: {v}");
    }
    out
}

/// `members` as a table.
pub fn members(list: &[docs::Member]) -> String {
    let mut out = format!(
        "{:<16} {:<12} {:<15} {:<8} {:>10}  {:<14} {:<16} {:<24} {}\n",
        "NAME", "ORG", "ADDRESS", "STATE", "SEEN", "ID", "TAGS", "LABELS", "ENDPOINTS"
    );
    for m in list {
        let seen = m
            .last_seen_ms
            .map_or("never".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
        let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:<15} {:<8} {:>10}  {:<14} {:<16} {:<24} {}",
            m.name,
            m.org,
            m.address,
            m.state,
            seen,
            m.id.get(..12).unwrap_or(&m.id),
            or_dash(&m.tags.join(",")),
            or_dash(&labels.join(",")),
            m.endpoints.join(" ")
        );
    }
    out
}

/// `text`, or `-` when it is empty (keeps table columns aligned).
fn or_dash(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

/// `federate list` as a table.
pub fn federations(list: &[docs::Federation]) -> String {
    let mut out = format!(
        "{:<16} {:<18} {:<8} {:<16} {:<16} {:>7} {:<19} {}\n",
        "ORG", "CIDR", "STATE", "WE EXPOSE", "THEY EXPOSE", "MEMBERS", "FINGERPRINT", "NETWORK ID"
    );
    for f in list {
        let _ = writeln!(
            out,
            "{:<16} {:<18} {:<8} {:<16} {:<16} {:>7} {:<19} {}",
            f.org,
            f.cidr,
            f.state,
            f.exposes,
            f.exposed_to_us,
            f.members,
            f.fingerprint,
            f.network_id
        );
    }
    out
}

/// `peers` as a table.
pub fn peers(list: &[docs::Peer]) -> String {
    let mut out = format!(
        "{:<16} {:<15} {:<22} {:<7} {:>9} {:>8} {:>12} {:>12} {:>10}\n",
        "NAME",
        "ADDRESS",
        "ENDPOINT",
        "PATH",
        "RTT_MS",
        "LOSS",
        "RX_BYTES",
        "TX_BYTES",
        "HANDSHAKE"
    );
    for p in list {
        let hs = p
            .last_handshake_ms
            .map_or("never".into(), |v| format!("{:.0}s ago", v as f64 / 1000.0));
        let _ = writeln!(
            out,
            "{:<16} {:<15} {:<22} {:<7} {:>9} {:>7.1}% {:>12} {:>12} {:>10}",
            p.name,
            p.address,
            p.endpoint.as_deref().unwrap_or("-"),
            p.path,
            number(p.rtt_ms, 1.0, 3, ""),
            p.loss * 100.0,
            p.rx_bytes,
            p.tx_bytes,
            hs
        );
    }
    out
}

/// `metrics` as two tables: the nodes, and the RTT matrix.
pub fn metrics(m: &docs::Metrics) -> String {
    let mut out = format!(
        "{:<16} {:<15} {:>6} {:>9} {:>9}  {}\n",
        "NODE", "ADDRESS", "CPU%", "RSS_MB", "UPTIME", "VERSION"
    );
    for n in &m.nodes {
        let _ = writeln!(
            out,
            "{:<16} {:<15} {:>6} {:>9} {:>9}  {}",
            n.name,
            n.address,
            number(n.cpu_pct, 1.0, 1, ""),
            number(n.rss_kb.map(|k| k as f64), 1.0 / 1024.0, 1, ""),
            number(n.uptime_s.map(|s| s as f64), 1.0, 0, "s"),
            n.version.as_deref().unwrap_or("-"),
        );
    }
    out += "\nRTT (ms, average over the last probes; loss)\n";
    for r in &m.rtt {
        let _ = writeln!(
            out,
            "  {:<16} -> {:<16} {:>9} {:>6.1}% {}",
            r.from,
            r.to,
            number(r.rtt_ms, 1.0, 3, ""),
            r.loss * 100.0,
            r.path
        );
    }
    out
}
