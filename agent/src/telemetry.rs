//! What a node measures and how it is shown: the agent's own CPU and
//! memory, the per-peer view (`peers`), the network-wide view assembled
//! from every member's published summary (`metrics`), Prometheus text and
//! a self-contained HTML page that draws the mesh.

use federation::member::Metrics;
use federation::{Ledger, NodeId, Status};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

/// CPU time and wall time at the previous sample, for CPU share.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    cpu_ticks: u64,
    at: Instant,
}

fn proc_self_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of this process in KiB.
pub fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

impl CpuSample {
    /// A sample now.
    pub fn now() -> Self {
        Self {
            cpu_ticks: proc_self_ticks().unwrap_or(0),
            at: Instant::now(),
        }
    }

    /// CPU share since `self`, in thousandths of a core; and the new sample.
    pub fn since(self) -> (u32, CpuSample) {
        let next = CpuSample::now();
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let secs = next.at.duration_since(self.at).as_secs_f64();
        let used = next.cpu_ticks.saturating_sub(self.cpu_ticks) as f64 / hz;
        let permille = if secs > 0.0 {
            used / secs * 1000.0
        } else {
            0.0
        };
        (permille as u32, next)
    }
}

/// Milliseconds of a microsecond figure, for JSON.
fn ms(us: Option<u32>) -> Value {
    us.map_or(Value::Null, |u| json!(f64::from(u) / 1000.0))
}

/// Names of members by id.
pub fn names(ledger: &Ledger, now_ms: u64) -> BTreeMap<NodeId, String> {
    ledger
        .members(now_ms)
        .iter()
        .map(|m| (m.id, m.record.name.clone()))
        .collect()
}

/// The network-wide view: every member's published summary (ours is
/// `own`, fresher than the one in the ledger).
pub fn network_view(ledger: &Ledger, me: NodeId, own: &Metrics, now_ms: u64) -> Value {
    let names = names(ledger, now_ms);
    let name = |id: &NodeId| names.get(id).cloned().unwrap_or_else(|| id.short());
    let mut nodes = Vec::new();
    let mut rtt = Vec::new();
    for m in ledger.members(now_ms) {
        if m.status != Status::Active {
            continue;
        }
        let metrics = if m.id == me {
            Some(own)
        } else {
            m.record.metrics.as_ref()
        };
        nodes.push(json!({
            "name": m.record.name,
            "id": m.id.to_hex(),
            "address": m.record.address.to_string(),
            "cpu_pct": metrics.map(|x| f64::from(x.cpu_permille) / 10.0),
            "rss_kb": metrics.map(|x| x.rss_kb),
            "uptime_s": metrics.map(|x| x.uptime_s),
            "version": metrics.map(|x| x.version.clone()),
            "sampled_ago_ms": metrics.map(|x| now_ms.saturating_sub(x.sampled_ms)),
        }));
        for l in metrics.map(|x| x.links.as_slice()).unwrap_or_default() {
            rtt.push(json!({
                "from": m.record.name,
                "to": name(&l.peer),
                "rtt_ms": ms(l.rtt_avg_us),
                "rtt_min_ms": ms(l.rtt_min_us),
                "loss": f64::from(l.loss_permille) / 1000.0,
                "path": l.path,
            }));
        }
    }
    json!({"nodes": nodes, "rtt": rtt})
}

/// `v × scale` with `decimals` digits and a unit, or `-` when absent.
fn number(v: &Value, scale: f64, decimals: usize, unit: &str) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.*}{unit}", decimals, x * scale))
}

/// Human table of `peers`.
pub fn peers_table(peers: &Value) -> String {
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
    for p in peers.as_array().into_iter().flatten() {
        let hs = p["last_handshake_ms"]
            .as_u64()
            .map_or("never".into(), |v| format!("{:.0}s ago", v as f64 / 1000.0));
        let _ = writeln!(
            out,
            "{:<16} {:<15} {:<22} {:<7} {:>9} {:>7.1}% {:>12} {:>12} {:>10}",
            p["name"].as_str().unwrap_or("?"),
            p["address"].as_str().unwrap_or("?"),
            p["endpoint"].as_str().unwrap_or("-"),
            p["path"].as_str().unwrap_or("?"),
            number(&p["rtt_ms"], 1.0, 3, ""),
            p["loss"].as_f64().unwrap_or(0.0) * 100.0,
            p["rx_bytes"],
            p["tx_bytes"],
            hs
        );
    }
    out
}

/// Human rendering of `metrics`.
pub fn metrics_table(m: &Value) -> String {
    let mut out = format!(
        "{:<16} {:<15} {:>6} {:>9} {:>9}  {}\n",
        "NODE", "ADDRESS", "CPU%", "RSS_MB", "UPTIME", "VERSION"
    );
    for n in m["nodes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<16} {:<15} {:>6} {:>9} {:>9}  {}",
            n["name"].as_str().unwrap_or("?"),
            n["address"].as_str().unwrap_or("?"),
            number(&n["cpu_pct"], 1.0, 1, ""),
            number(&n["rss_kb"], 1.0 / 1024.0, 1, ""),
            number(&n["uptime_s"], 1.0, 0, "s"),
            n["version"].as_str().unwrap_or("-"),
        );
    }
    out += "\nRTT (ms, average over the last probes; loss)\n";
    for r in m["rtt"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<16} -> {:<16} {:>9} {:>6.1}% {}",
            r["from"].as_str().unwrap_or("?"),
            r["to"].as_str().unwrap_or("?"),
            number(&r["rtt_ms"], 1.0, 3, ""),
            r["loss"].as_f64().unwrap_or(0.0) * 100.0,
            r["path"].as_str().unwrap_or("")
        );
    }
    out
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

/// Prometheus text exposition of this node's view.
pub fn prometheus(status: &Value, peers: &Value, members: &Value, counters: &Value) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let per_peer = |field: &str, scale: f64| -> Vec<(String, f64)> {
        peers
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let v = p[field].as_f64()?;
                Some((
                    format!("{{peer=\"{}\"}}", label(p["name"].as_str().unwrap_or("?"))),
                    v * scale,
                ))
            })
            .collect()
    };
    family(
        "cladnet_peer_rtt_seconds",
        "gauge",
        "Average overlay round-trip time to the peer over the last probes.",
        per_peer("rtt_ms", 0.001),
    );
    family(
        "cladnet_peer_loss_ratio",
        "gauge",
        "Share of the last probes to the peer that got no answer.",
        per_peer("loss", 1.0),
    );
    family(
        "cladnet_peer_rx_bytes_total",
        "counter",
        "Bytes received from the peer.",
        per_peer("rx_bytes", 1.0),
    );
    family(
        "cladnet_peer_tx_bytes_total",
        "counter",
        "Bytes sent to the peer.",
        per_peer("tx_bytes", 1.0),
    );
    family(
        "cladnet_peer_rx_packets_total",
        "counter",
        "Datagrams received from the peer.",
        per_peer("rx_packets", 1.0),
    );
    family(
        "cladnet_peer_tx_packets_total",
        "counter",
        "Datagrams sent to the peer.",
        per_peer("tx_packets", 1.0),
    );
    family(
        "cladnet_peer_handshakes_total",
        "counter",
        "Completed handshakes with the peer.",
        per_peer("handshakes", 1.0),
    );
    family(
        "cladnet_peer_last_handshake_seconds",
        "gauge",
        "Seconds since the last handshake with the peer.",
        per_peer("last_handshake_ms", 0.001),
    );
    let drops: Vec<(String, f64)> = counters["dropped"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((format!("{{reason=\"{}\"}}", label(k)), v.as_f64()?)))
        .collect();
    family(
        "cladnet_dropped_packets_total",
        "counter",
        "Datagrams and packets the data plane dropped, by reason.",
        drops,
    );
    let refused: Vec<(String, f64)> = status["rejected_records"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((format!("{{reason=\"{}\"}}", label(k)), v.as_f64()?)))
        .collect();
    family(
        "cladnet_records_rejected_total",
        "counter",
        "Records refused by the control plane, by reason.",
        refused,
    );
    let g = &status["gossip"];
    let gossip: Vec<(String, f64)> = ["in", "out"]
        .iter()
        .filter_map(|d| {
            Some((
                format!("{{direction=\"{d}\"}}"),
                g[format!("{d}_messages")].as_f64()?,
            ))
        })
        .collect();
    family(
        "cladnet_gossip_messages_total",
        "counter",
        "Control-plane messages (gossip and anti-entropy).",
        gossip,
    );
    let gossip_bytes: Vec<(String, f64)> = ["in", "out"]
        .iter()
        .filter_map(|d| {
            Some((
                format!("{{direction=\"{d}\"}}"),
                g[format!("{d}_bytes")].as_f64()?,
            ))
        })
        .collect();
    family(
        "cladnet_gossip_bytes_total",
        "counter",
        "Control-plane payload bytes (gossip and anti-entropy).",
        gossip_bytes,
    );
    let plain = |v: &Value| {
        v.as_f64()
            .map(|n| vec![(String::new(), n)])
            .unwrap_or_default()
    };
    family(
        "cladnet_relayed_bytes_total",
        "counter",
        "Bytes this node relayed between other members.",
        plain(&status["relay"]["relayed_bytes"]),
    );
    family(
        "cladnet_relay_refused_total",
        "counter",
        "Relay envelopes refused (sender or target unknown, relaying off).",
        plain(&status["relay"]["refused"]),
    );
    let echo: Vec<(String, f64)> = ["answered", "dropped"]
        .iter()
        .filter_map(|k| Some((format!("{{result=\"{k}\"}}"), status["echo"][k].as_f64()?)))
        .collect();
    family(
        "cladnet_echo_questions_total",
        "counter",
        "Endpoint-echo messages from others: questions answered, and messages dropped (unknown sender, bad MAC, queue full).",
        echo,
    );
    let mut by_state: BTreeMap<String, f64> = ["alive", "suspect", "down", "left", "revoked"]
        .iter()
        .map(|s| (s.to_string(), 0.0))
        .collect();
    for m in members.as_array().into_iter().flatten() {
        if let Some(s) = m["state"].as_str() {
            *by_state.entry(s.to_string()).or_default() += 1.0;
        }
    }
    family(
        "cladnet_members",
        "gauge",
        "Members of the network by state, as this node sees them.",
        by_state
            .into_iter()
            .map(|(s, n)| (format!("{{state=\"{s}\"}}"), n))
            .collect(),
    );
    out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Colour of a link by RTT: green under 5 ms, amber under 50 ms, red above
/// or when lossy, grey when unmeasured.
fn link_colour(rtt_ms: Option<f64>, loss: f64) -> &'static str {
    match rtt_ms {
        None => "#9e9e9e",
        Some(_) if loss > 0.2 => "#d32f2f",
        Some(r) if r < 5.0 => "#2e7d32",
        Some(r) if r < 50.0 => "#f9a825",
        Some(_) => "#d32f2f",
    }
}

/// A self-contained HTML page that draws the mesh from the `metrics` view:
/// members on a circle, one line per measured pair coloured by RTT
/// (dashed for relayed paths), with a table underneath.
pub fn html_page(network: &str, metrics: &Value) -> String {
    let nodes: Vec<&Value> = metrics["nodes"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let n = nodes.len().max(1) as f64;
    let (cx, cy, r) = (320.0, 300.0, 220.0);
    let pos: BTreeMap<String, (f64, f64)> = nodes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
            (
                v["name"].as_str().unwrap_or("?").to_string(),
                (cx + r * a.cos(), cy + r * a.sin()),
            )
        })
        .collect();
    let mut svg = String::new();
    let mut rows = String::new();
    for l in metrics["rtt"].as_array().into_iter().flatten() {
        let (from, to) = (
            l["from"].as_str().unwrap_or(""),
            l["to"].as_str().unwrap_or(""),
        );
        let rtt = l["rtt_ms"].as_f64();
        let loss = l["loss"].as_f64().unwrap_or(0.0);
        let colour = link_colour(rtt, loss);
        let rtt_text = rtt.map_or("no reply".into(), |v| format!("{v:.2} ms"));
        if let (Some(a), Some(b)) = (pos.get(from), pos.get(to)) {
            let dash = if l["path"] == "relay" {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                "<line class=\"link\" x1=\"{:.0}\" y1=\"{:.0}\" x2=\"{:.0}\" y2=\"{:.0}\" stroke=\"{colour}\" stroke-width=\"3\"{dash}><title>{} → {}: {rtt_text}, loss {:.0}%</title></line>",
                a.0, a.1, b.0, b.1, escape_html(from), escape_html(to), loss * 100.0
            );
        }
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td style=\"color:{colour}\">{rtt_text}</td><td>{:.0}%</td><td>{}</td></tr>",
            escape_html(from), escape_html(to), loss * 100.0, escape_html(l["path"].as_str().unwrap_or(""))
        );
    }
    for v in &nodes {
        let name = v["name"].as_str().unwrap_or("?");
        if let Some((x, y)) = pos.get(name) {
            let _ = writeln!(
                svg,
                "<g class=\"node\"><circle cx=\"{x:.0}\" cy=\"{y:.0}\" r=\"26\" fill=\"#1565c0\"/><text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" fill=\"white\" font-size=\"13\">{}</text><text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" font-size=\"11\">{}</text></g>",
                y + 4.0, escape_html(name), y + 42.0, escape_html(v["address"].as_str().unwrap_or(""))
            );
        }
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\"><title>cladnet: {net}</title>\
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{padding:2px 10px;border-bottom:1px solid #ddd}}</style></head>\
<body><h1>cladnet network {net}</h1><p>{count} members. Lines: measured overlay RTT — green &lt; 5 ms, amber &lt; 50 ms, red slower or lossy, grey unanswered; dashed = relayed. Refreshes every 10 s.</p>\
<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"600\" viewBox=\"0 0 640 600\">\n{svg}</svg>\
<h2>Links</h2><table><tr><th>from</th><th>to</th><th>RTT</th><th>loss</th><th>path</th></tr>\n{rows}</table></body></html>\n",
        net = escape_html(network),
        count = nodes.len(),
    )
}
