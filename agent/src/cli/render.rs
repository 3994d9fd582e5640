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

/// A column's alignment.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A table whose columns are as wide as their widest cell (names of any
/// length stay aligned); the last column is not padded.
struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, Align)]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| visible_len(c))
                .chain(std::iter::once(self.columns[i].0.len()))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.columns.len()).map(width).collect();
        let line = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            let mut out = String::new();
            for (i, cell) in cells.into_iter().enumerate() {
                let pad = " ".repeat(widths[i].saturating_sub(visible_len(cell)));
                match (self.columns[i].1, i == last) {
                    (Align::Left, true) => out += cell,
                    (Align::Left, false) => out += &format!("{cell}{pad}  "),
                    (Align::Right, _) => out += &format!("{pad}{cell}  "),
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(self.columns.iter().map(|c| c.0).collect());
        for r in &self.rows {
            out += &line(r.iter().map(String::as_str).collect());
        }
        out
    }
}

/// Length on screen (colour codes take no room).
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match c {
            '\u{1b}' => in_escape = true,
            'm' if in_escape => in_escape = false,
            _ if in_escape => {}
            _ => n += 1,
        }
    }
    n
}

/// True when stdout is a terminal and NO_COLOR is not set.
fn colour() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("NO_COLOR").is_none()
            && std::io::IsTerminal::is_terminal(&std::io::stdout())
    })
}

/// A member's state with a mark (● reached, ◐ silent a while, ○ gone),
/// coloured on a terminal only.
fn state_mark(state: &str) -> String {
    let (mark, code) = match state {
        "alive" => ("●", "32"),
        "suspect" | "unreached" => ("◐", "33"),
        "down" => ("○", "31"),
        _ => ("○", "90"),
    };
    if colour() {
        format!("\u{1b}[{code}m{mark} {state}\u{1b}[0m")
    } else {
        format!("{mark} {state}")
    }
}

/// `members` as a table.
pub fn members(list: &[docs::Member]) -> String {
    use Align::{Left, Right};
    let mut t = Table::new(&[
        ("NAME", Left),
        ("ORG", Left),
        ("ADDRESS", Left),
        ("STATE", Left),
        ("SEEN", Right),
        ("ID", Left),
        ("TAGS", Left),
        ("LABELS", Left),
        ("ENDPOINTS", Left),
    ]);
    for m in list {
        let seen = m
            .last_seen_ms
            .map_or("never".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
        let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        // Where others reach it first: what its operator advertises, where
        // members see it, then its host's own addresses.
        let endpoints: Vec<String> = (m.advertised.iter().map(|e| format!("{e} (advertised)")))
            .chain(m.seen_at.iter().map(|e| format!("{e} (seen)")))
            .chain(m.endpoints.iter().cloned())
            .collect();
        let name = if m.me {
            format!("{} (this node)", m.name)
        } else {
            m.name.clone()
        };
        t.row(vec![
            name,
            m.org.clone(),
            m.address.clone(),
            state_mark(&m.state),
            seen,
            m.id.get(..12).unwrap_or(&m.id).to_string(),
            or_dash(&m.tags.join(",")).to_string(),
            or_dash(&labels.join(",")).to_string(),
            or_dash(&endpoints.join(" ")).to_string(),
        ]);
    }
    t.render()
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
    use Align::{Left, Right};
    let mut t = Table::new(&[
        ("ORG", Left),
        ("CIDR", Left),
        ("STATE", Left),
        ("WE EXPOSE", Left),
        ("THEY EXPOSE", Left),
        ("WE LEND", Left),
        ("THEY LEND", Left),
        ("MEMBERS", Right),
        ("FINGERPRINT", Left),
        ("NETWORK ID", Left),
    ]);
    for f in list {
        t.row(vec![
            f.org.clone(),
            f.cidr.clone(),
            f.state.clone(),
            f.exposes.clone(),
            f.exposed_to_us.clone(),
            or_dash(&f.lends).to_string(),
            or_dash(&f.lent_to_us).to_string(),
            f.members.to_string(),
            f.fingerprint.clone(),
            f.network_id.clone(),
        ]);
    }
    t.render()
}

/// `peers` as a table.
pub fn peers(list: &[docs::Peer]) -> String {
    use Align::{Left, Right};
    let mut t = Table::new(&[
        ("NAME", Left),
        ("ADDRESS", Left),
        ("ENDPOINT", Left),
        ("PATH", Left),
        ("RTT_MS", Right),
        ("LOSS", Right),
        ("RX_BYTES", Right),
        ("TX_BYTES", Right),
        ("HANDSHAKE", Right),
    ]);
    for p in list {
        let hs = p
            .last_handshake_ms
            .map_or("never".into(), |v| format!("{:.0}s ago", v as f64 / 1000.0));
        t.row(vec![
            p.name.clone(),
            p.address.clone(),
            p.endpoint.clone().unwrap_or_else(|| "-".into()),
            p.path.clone(),
            number(p.rtt_ms, 1.0, 3, ""),
            format!("{:.1}%", p.loss * 100.0),
            p.rx_bytes.to_string(),
            p.tx_bytes.to_string(),
            hs,
        ]);
    }
    t.render()
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

/// `show` (of a `--wg-config` agent) as `wg show` lays it out.
pub fn show(s: &docs::Show) -> String {
    let mut out = format!(
        "interface: {}\n  public key: {}\n  listening port: {}\n  mtu: {} (offload: {})\n",
        s.interface, s.public_key, s.listen_port, s.mtu, s.offload
    );
    for p in &s.peers {
        let hs = match p.last_handshake_ms {
            Some(ms) => format!("{:.1} s ago", ms as f64 / 1000.0),
            None => "never".into(),
        };
        out += &format!(
            "\npeer: {}\n  endpoint: {}\n  allowed ips: {}\n  latest handshake: {hs}\n  transfer: {} B received, {} B sent\n",
            p.public_key,
            p.endpoint.as_deref().unwrap_or("(none)"),
            p.allowed_ips.join(", "),
            p.rx_bytes,
            p.tx_bytes,
        );
    }
    let c = &s.counters;
    out += &format!(
        "\ncounters: {} datagrams in, {} out, {} dropped\n",
        c.rx_datagrams, c.tx_datagrams, c.dropped_total
    );
    for (k, v) in c.dropped.iter().filter(|(_, v)| **v > 0) {
        out += &format!("  dropped {k}: {v}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("RTT", Align::Right),
            ("PATH", Align::Left),
        ]);
        t.row(vec![
            "a-very-long-node-name-in-eu-west-1".into(),
            "1.2".into(),
            "direct".into(),
        ]);
        t.row(vec!["b".into(), "10.25".into(), "relay".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        // Every column starts at the same place on every line.
        let at = |l: &str, word: &str| l.find(word).unwrap_or(usize::MAX);
        assert_eq!(at(lines[1], "direct"), at(lines[2], "relay"), "{text}");
        assert_eq!(at(lines[0], "PATH"), at(lines[2], "relay"), "{text}");
        // Right-aligned numbers end together.
        assert_eq!(at(lines[1], "1.2") + 3, at(lines[2], "10.25") + 5, "{text}");
        assert_eq!(visible_len("\u{1b}[32m● alive\u{1b}[0m"), 7);
    }
}
