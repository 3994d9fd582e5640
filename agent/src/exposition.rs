//! What the agent serves on `--metrics-listen`: Prometheus text on
//! `/metrics`, and on `/` a self-contained page that draws the mesh; and
//! the HTTP listener that serves them.

use crate::api::{docs, LocalRequest, Request};
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

/// Prometheus text exposition of this node's view.
pub fn prometheus(
    status: &docs::Status,
    peers: &[docs::Peer],
    members: &[docs::Member],
    dropped: &BTreeMap<String, u64>,
) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let per_peer = |value: &dyn Fn(&docs::Peer) -> Option<f64>| -> Vec<(String, f64)> {
        peers
            .iter()
            .filter_map(|p| Some((format!("{{peer=\"{}\"}}", label(&p.name)), value(p)?)))
            .collect()
    };
    let by = |key: &str, map: &BTreeMap<String, u64>| -> Vec<(String, f64)> {
        map.iter()
            .map(|(k, v)| (format!("{{{key}=\"{}\"}}", label(k)), *v as f64))
            .collect()
    };
    let plain = |v: u64| vec![(String::new(), v as f64)];
    type PerPeer = fn(&docs::Peer) -> Option<f64>;
    let per_peer_families: [(&str, &str, &str, PerPeer); 8] = [
        (
            "cladnet_peer_rtt_seconds",
            "gauge",
            "Average overlay round-trip time to the peer over the last probes.",
            |p| p.rtt_ms.map(|v| v / 1000.0),
        ),
        (
            "cladnet_peer_loss_ratio",
            "gauge",
            "Share of the last probes to the peer that got no answer.",
            |p| Some(p.loss),
        ),
        (
            "cladnet_peer_rx_bytes_total",
            "counter",
            "Bytes received from the peer.",
            |p| Some(p.rx_bytes as f64),
        ),
        (
            "cladnet_peer_tx_bytes_total",
            "counter",
            "Bytes sent to the peer.",
            |p| Some(p.tx_bytes as f64),
        ),
        (
            "cladnet_peer_rx_packets_total",
            "counter",
            "Datagrams received from the peer.",
            |p| Some(p.rx_packets as f64),
        ),
        (
            "cladnet_peer_tx_packets_total",
            "counter",
            "Datagrams sent to the peer.",
            |p| Some(p.tx_packets as f64),
        ),
        (
            "cladnet_peer_handshakes_total",
            "counter",
            "Completed handshakes with the peer.",
            |p| Some(p.handshakes as f64),
        ),
        (
            "cladnet_peer_last_handshake_seconds",
            "gauge",
            "Seconds since the last handshake with the peer.",
            |p| p.last_handshake_ms.map(|v| v as f64 / 1000.0),
        ),
    ];
    for (name, kind, help, value) in per_peer_families {
        family(name, kind, help, per_peer(&value));
    }
    family(
        "cladnet_dropped_packets_total",
        "counter",
        "Datagrams and packets the data plane dropped, by reason.",
        by("reason", dropped),
    );
    family(
        "cladnet_records_rejected_total",
        "counter",
        "Records refused by the control plane, by reason.",
        by("reason", &status.rejected_records),
    );
    family(
        "cladnet_outsiders_refused_total",
        "counter",
        "Messages from peers that are not members, refused or ignored, by kind.",
        by("kind", &status.refused_outsiders),
    );
    let g = &status.gossip;
    let directions = |i: u64, o: u64| {
        vec![
            ("{direction=\"in\"}".to_string(), i as f64),
            ("{direction=\"out\"}".to_string(), o as f64),
        ]
    };
    family(
        "cladnet_gossip_messages_total",
        "counter",
        "Control-plane messages (gossip, anti-entropy, queries).",
        directions(g.in_messages, g.out_messages),
    );
    family(
        "cladnet_gossip_bytes_total",
        "counter",
        "Control-plane payload bytes (gossip, anti-entropy, queries).",
        directions(g.in_bytes, g.out_bytes),
    );
    family(
        "cladnet_relayed_bytes_total",
        "counter",
        "Bytes this node relayed between other members.",
        plain(status.relay.relayed_bytes),
    );
    family(
        "cladnet_relay_refused_total",
        "counter",
        "Relay envelopes refused (sender or target not a member reached directly, relaying off).",
        plain(status.relay.refused),
    );
    family("cladnet_echo_questions_total", "counter", "Endpoint-echo messages from others: questions answered, and messages dropped (unknown sender, bad MAC, queue full).",
        vec![("{result=\"answered\"}".into(), status.echo.answered as f64), ("{result=\"dropped\"}".into(), status.echo.dropped as f64)]);
    let mut by_state: BTreeMap<String, f64> = ["alive", "suspect", "down", "left", "revoked"]
        .iter()
        .map(|s| (s.to_string(), 0.0))
        .collect();
    for m in members {
        *by_state.entry(m.state.clone()).or_default() += 1.0;
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
pub fn html_page(network: &str, metrics: &docs::Metrics) -> String {
    let nodes = &metrics.nodes;
    let n = nodes.len().max(1) as f64;
    let (cx, cy, r) = (320.0, 300.0, 220.0);
    let pos: BTreeMap<String, (f64, f64)> = nodes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
            (v.name.clone(), (cx + r * a.cos(), cy + r * a.sin()))
        })
        .collect();
    let mut svg = String::new();
    let mut rows = String::new();
    for l in &metrics.rtt {
        let (from, to) = (l.from.as_str(), l.to.as_str());
        let (rtt, loss) = (l.rtt_ms, l.loss);
        let colour = link_colour(rtt, loss);
        let rtt_text = rtt.map_or("no reply".into(), |v| format!("{v:.2} ms"));
        if let (Some(a), Some(b)) = (pos.get(from), pos.get(to)) {
            let dash = if l.path == "relay" {
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
            escape_html(from), escape_html(to), loss * 100.0, escape_html(&l.path)
        );
    }
    for v in nodes {
        let name = v.name.as_str();
        if let Some((x, y)) = pos.get(name) {
            let _ = writeln!(
                svg,
                "<g class=\"node\"><circle cx=\"{x:.0}\" cy=\"{y:.0}\" r=\"26\" fill=\"#1565c0\"/><text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" fill=\"white\" font-size=\"13\">{}</text><text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" font-size=\"11\">{}</text></g>",
                y + 4.0, escape_html(name), y + 42.0, escape_html(&v.address)
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

/// Serves Prometheus text on `/metrics` and the mesh page on `/` (plain
/// HTTP/1.0, one request per connection), answered by the control loop;
/// never returns if `addr` is None.
pub async fn serve_http(
    addr: Option<SocketAddr>,
    to_loop: mpsc::Sender<LocalRequest>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(addr) = addr else {
        return std::future::pending().await;
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot serve metrics on {addr}: {e}; pick another --metrics-listen")
    })?;
    tracing::info!("metrics on http://{addr}/metrics, mesh page on http://{addr}/");
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let to_loop = to_loop.clone();
        tokio::spawn(async move {
            let mut head = vec![0u8; 2048];
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let line = String::from_utf8_lossy(&head[..n]);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (request, kind) = match path {
                "/metrics" => (Some(Request::Prometheus), "text/plain; version=0.0.4"),
                "/" => (Some(Request::Html), "text/html; charset=utf-8"),
                _ => (None, "text/plain"),
            };
            let (status, body) = match request {
                None => (
                    "404 Not Found",
                    "not found: try /metrics or /\n".to_string(),
                ),
                Some(request) => {
                    let (reply, answer) = oneshot::channel();
                    let text = match to_loop.send(LocalRequest { request, reply }).await {
                        Ok(()) => answer
                            .await
                            .ok()
                            .and_then(|line| crate::api::read_answer::<docs::Text>(&line).ok()),
                        Err(_) => None,
                    };
                    match text {
                        Some(t) => ("200 OK", t.text),
                        None => (
                            "503 Service Unavailable",
                            "the agent is shutting down\n".to_string(),
                        ),
                    }
                }
            };
            let response = format!(
                "HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
