//! What the agent serves on `--metrics-listen`: Prometheus text on
//! `/metrics`, and on `/` a self-contained page that draws the mesh; and
//! the HTTP listener that serves them.

use crate::api::{docs, LocalRequest, Request};
use anyhow::Result;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Label pairs of one sample.
type Labels = Vec<(String, String)>;

fn labels(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

/// The families of one scrape, built from a snapshot of this node's view
/// (counters take the snapshot's totals).
struct Exposition(Registry);

impl Exposition {
    fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        let family = Family::<Labels, Counter>::default();
        for (l, v) in samples {
            family.get_or_create(&l).inc_by(v);
        }
        self.0.register(name, help, family);
    }

    fn gauge(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels, f64)>) {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (l, v) in samples {
            family.get_or_create(&l).set(v);
        }
        self.0.register(name, help, family);
    }

    /// A gauge of whole numbers (counts, Unix times): no ".0".
    fn count(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels, i64)>) {
        let family = Family::<Labels, Gauge>::default();
        for (l, v) in samples {
            family.get_or_create(&l).set(v);
        }
        self.0.register(name, help, family);
    }
}

/// Prometheus (OpenMetrics) text of this node's view, encoded by
/// prometheus-client.
pub fn prometheus(
    status: &docs::Status,
    peers: &[docs::Peer],
    members: &[docs::Member],
    dropped: &BTreeMap<String, u64>,
) -> String {
    let mut x = Exposition(Registry::default());
    x.0.register(
        "cladnet_build",
        "The running cladnet's version",
        Info::new(vec![(
            "version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )]),
    );
    let peer = |p: &docs::Peer| labels("peer", &p.name);
    x.gauge(
        "cladnet_peer_rtt_seconds",
        "Average overlay round-trip time to the peer over the last probes",
        peers
            .iter()
            .filter_map(|p| Some((peer(p), p.rtt_ms? / 1000.0))),
    );
    x.gauge(
        "cladnet_peer_loss_ratio",
        "Share of the last probes to the peer that got no answer",
        peers.iter().map(|p| (peer(p), p.loss)),
    );
    type PerPeer = fn(&docs::Peer) -> u64;
    let counters: [(&str, &str, PerPeer); 5] = [
        (
            "cladnet_peer_rx_bytes",
            "Bytes received from the peer",
            |p| p.rx_bytes,
        ),
        ("cladnet_peer_tx_bytes", "Bytes sent to the peer", |p| {
            p.tx_bytes
        }),
        (
            "cladnet_peer_rx_packets",
            "Datagrams received from the peer",
            |p| p.rx_packets,
        ),
        (
            "cladnet_peer_tx_packets",
            "Datagrams sent to the peer",
            |p| p.tx_packets,
        ),
        (
            "cladnet_peer_handshakes",
            "Completed handshakes with the peer",
            |p| p.handshakes,
        ),
    ];
    for (name, help, value) in counters {
        x.counter(name, help, peers.iter().map(|p| (peer(p), value(p))));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    x.count(
        "cladnet_peer_last_handshake_timestamp_seconds",
        "When the last handshake with the peer completed (Unix time)",
        peers.iter().filter_map(|p| {
            let at = now.saturating_sub(p.last_handshake_ms? / 1000);
            Some((peer(p), i64::try_from(at).unwrap_or(i64::MAX)))
        }),
    );
    let by = |key: &str, map: &BTreeMap<String, u64>| -> Vec<(Labels, u64)> {
        map.iter().map(|(k, v)| (labels(key, k), *v)).collect()
    };
    x.counter(
        "cladnet_dropped_packets",
        "Datagrams and packets the data plane dropped, by reason",
        by("reason", dropped),
    );
    x.counter(
        "cladnet_records_rejected",
        "Records refused by the control plane, by reason",
        by("reason", &status.rejected_records),
    );
    x.counter(
        "cladnet_outsiders_refused",
        "Messages from peers that are not members, refused or ignored, by kind",
        by("kind", &status.refused_outsiders),
    );
    let g = &status.gossip;
    let directions = |i: u64, o: u64| {
        [
            (labels("direction", "in"), i),
            (labels("direction", "out"), o),
        ]
    };
    x.counter(
        "cladnet_gossip_messages",
        "Control-plane messages (gossip, anti-entropy, queries)",
        directions(g.in_messages, g.out_messages),
    );
    x.counter(
        "cladnet_gossip_bytes",
        "Control-plane payload bytes (gossip, anti-entropy, queries)",
        directions(g.in_bytes, g.out_bytes),
    );
    x.counter(
        "cladnet_relayed_bytes",
        "Bytes this node relayed between other members",
        [(vec![], status.relay.relayed_bytes)],
    );
    x.counter(
        "cladnet_relay_refused",
        "Relay envelopes refused (sender or target not a member reached directly, relaying off)",
        [(vec![], status.relay.refused)],
    );
    x.counter(
        "cladnet_echo_questions",
        "Endpoint-echo messages from others: questions answered, and messages dropped (unknown sender, bad MAC, queue full)",
        [
            (labels("result", "answered"), status.echo.answered),
            (labels("result", "dropped"), status.echo.dropped),
        ],
    );
    let mut by_state: BTreeMap<String, i64> = ["alive", "suspect", "down", "left", "revoked"]
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    for m in members {
        *by_state.entry(m.state.clone()).or_default() += 1;
    }
    x.count(
        "cladnet_members",
        "Members of the network by state, as this node sees them",
        by_state.into_iter().map(|(s, n)| (labels("state", &s), n)),
    );
    x.count(
        "cladnet_healthy",
        "1 when `status --check` would pass, 0 when a human is needed",
        [(vec![], i64::from(status.healthy))],
    );
    let whole = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    x.count(
        "process_resident_memory_bytes",
        "Resident memory of the agent",
        [(vec![], whole(crate::telemetry::rss_kb() * 1024))],
    );
    x.gauge(
        "process_cpu_seconds",
        "CPU time the agent used (user and system)",
        [(vec![], crate::telemetry::cpu_seconds())],
    );
    x.count(
        "process_open_fds",
        "File descriptors the agent holds open",
        [(vec![], whole(crate::telemetry::open_fds()))],
    );
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &x.0) {
        tracing::error!("cannot encode the metrics: {e}");
    }
    out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How a link looks: its class (for the page's legend and tests) and
/// colour. Green only when fast *and* loss-free (loss over 1 % is at best
/// amber), red when slow, losing over 20 % or not answering at all, grey
/// when not measured yet, light grey when the report is older than twice
/// its publication interval.
fn link_look(rtt_ms: Option<f64>, loss: f64, stale: bool) -> (&'static str, &'static str) {
    match rtt_ms {
        _ if stale => ("stale", "#bdbdbd"),
        None if loss > 0.0 => ("red", "#d32f2f"),
        None => ("grey", "#9e9e9e"),
        Some(_) if loss > 0.2 => ("red", "#d32f2f"),
        Some(r) if r < 5.0 && loss <= 0.01 => ("green", "#2e7d32"),
        Some(r) if r < 50.0 => ("amber", "#f9a825"),
        Some(_) => ("red", "#d32f2f"),
    }
}

/// Colour of a member by its state.
fn node_colour(state: &str) -> &'static str {
    match state {
        "alive" => "#1565c0",
        "suspect" => "#f9a825",
        "down" => "#d32f2f",
        _ => "#757575",
    }
}

/// What the mesh page draws.
pub struct Page<'a> {
    /// The network's name.
    pub network: &'a str,
    /// Every member's published summary and link reports.
    pub metrics: &'a docs::Metrics,
    /// Every member with its state, as this node sees it.
    pub members: &'a [docs::Member],
    /// Reports older than this are stale (the publication interval).
    pub interval: Duration,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
}

/// A self-contained HTML page that draws the mesh: members on a circle,
/// coloured by state, this node marked "you are here"; each direction of a
/// link drawn apart (a→b on one side, b→a on the other) with its RTT,
/// coloured by RTT and loss, greyed when the report is stale, dashed when
/// relayed; the links table beside the drawing (visible at 1280×800).
pub fn html_page(p: &Page) -> String {
    let nodes = &p.metrics.nodes;
    let n = nodes.len().max(1) as f64;
    let (cx, cy, r) = (260.0, 250.0, 180.0);
    let pos: BTreeMap<String, (f64, f64)> = nodes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
            (v.name.clone(), (cx + r * a.cos(), cy + r * a.sin()))
        })
        .collect();
    let age: BTreeMap<&str, Option<u64>> = nodes
        .iter()
        .map(|v| (v.name.as_str(), v.sampled_ago_ms))
        .collect();
    let limit = u64::try_from(p.interval.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(2);
    let state: BTreeMap<&str, (&str, bool)> = p
        .members
        .iter()
        .map(|m| (m.name.as_str(), (m.state.as_str(), m.me)))
        .collect();
    let mut svg = String::new();
    let mut rows = String::new();
    for l in &p.metrics.rtt {
        let (from, to) = (l.from.as_str(), l.to.as_str());
        let stale = age.get(from).copied().flatten().is_none_or(|a| a > limit);
        let (class, colour) = link_look(l.rtt_ms, l.loss, stale);
        let rtt_text = l.rtt_ms.map_or("no reply".into(), |v| format!("{v:.2} ms"));
        if let (Some(a), Some(b)) = (pos.get(from), pos.get(to)) {
            // This direction drawn 4 px to its right (the other one is
            // then on the other side).
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let len = (dx * dx + dy * dy).sqrt().max(1.0);
            let (ox, oy) = (-dy / len * 4.0, dx / len * 4.0);
            let (x1, y1, x2, y2) = (a.0 + ox, a.1 + oy, b.0 + ox, b.1 + oy);
            let dash = if l.path == "relay" {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                "<line class=\"link {class}\" data-from=\"{f}\" data-to=\"{t}\" data-look=\"{class}\" x1=\"{x1:.0}\" y1=\"{y1:.0}\" x2=\"{x2:.0}\" y2=\"{y2:.0}\" stroke=\"{colour}\" stroke-width=\"3\"{dash}><title>{f} → {t}: {rtt_text}, loss {:.0}%{}</title></line>\
<text class=\"rtt\" x=\"{:.0}\" y=\"{:.0}\" font-size=\"10\" fill=\"{colour}\">{rtt_text}</text>",
                l.loss * 100.0,
                if stale { " (stale report)" } else { "" },
                x1 + (x2 - x1) * 0.3 + ox * 2.0,
                y1 + (y2 - y1) * 0.3 + oy * 2.0,
                f = escape_html(from),
                t = escape_html(to),
            );
        }
        let _ = writeln!(
            rows,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td style=\"color:{colour}\">{rtt_text}</td><td>{:.0}%</td><td>{}</td><td>{}</td></tr>",
            escape_html(from),
            escape_html(to),
            l.loss * 100.0,
            escape_html(&l.path),
            if stale { "stale" } else { "fresh" }
        );
    }
    for v in nodes {
        let name = v.name.as_str();
        let (st, me) = state.get(name).copied().unwrap_or(("unknown", false));
        if let Some((x, y)) = pos.get(name) {
            let here = if me {
                format!("<text class=\"here\" x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" font-size=\"11\" font-weight=\"bold\">you are here</text>", y - 34.0)
            } else {
                String::new()
            };
            let _ = writeln!(
                svg,
                "<g class=\"node {st}\" data-name=\"{nm}\" data-state=\"{st}\"><circle cx=\"{x:.0}\" cy=\"{y:.0}\" r=\"24\" fill=\"{fill}\" stroke=\"{ring}\" stroke-width=\"3\"/><text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" fill=\"white\" font-size=\"13\">{nm}</text><text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" font-size=\"11\">{} ({st})</text>{here}</g>",
                y + 4.0,
                y + 40.0,
                escape_html(&v.address),
                nm = escape_html(name),
                fill = node_colour(st),
                ring = if me { "#000" } else { "none" },
            );
        }
    }
    let updated = p.now_ms / 1000;
    let (h, m, sec) = ((updated / 3600) % 24, (updated / 60) % 60, updated % 60);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\"><title>cladnet: {net}</title>\
<style>body{{font-family:sans-serif;margin:1em}}main{{display:flex;gap:1.5em;align-items:flex-start}}table{{border-collapse:collapse;font-size:13px}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}tr.stale{{color:#9e9e9e}}</style></head>\
<body><h1>cladnet network {net}</h1><p>{count} members; updated <span id=\"updated\">{h:02}:{m:02}:{sec:02} UTC</span>. Members: blue alive, amber suspect, red down, grey gone. Links, one line per direction (a→b drawn to the right of a): green &lt; 5 ms without loss, amber &lt; 50 ms or losing over 1 %, red slower, losing over 20 % or not answering, grey not measured yet, light grey a report older than {stale_s} s; dashed = relayed. Refreshes every 10 s.</p>\
<main><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"520\" height=\"520\" viewBox=\"0 0 520 520\">\n{svg}</svg>\
<section><h2>Links</h2><table id=\"links\"><tr><th>from</th><th>to</th><th>RTT</th><th>loss</th><th>path</th><th>report</th></tr>\n{rows}</table></section></main></body></html>\n",
        net = escape_html(p.network),
        count = nodes.len(),
        stale_s = limit / 1000,
    )
}

/// Connections served at once, at most (a scraper and a few browsers).
const MAX_HTTP_CONNECTIONS: usize = 32;

/// Serves Prometheus text on `/metrics` and the mesh page on `/` (HTTP/1.1
/// with hyper), answered by the control loop; never returns if `addr` is
/// None.
pub async fn serve_http(
    addr: Option<SocketAddr>,
    to_loop: mpsc::Sender<LocalRequest>,
) -> Result<()> {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    let Some(addr) = addr else {
        return std::future::pending().await;
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot serve metrics on {addr}: {e}; pick another --metrics-listen")
    })?;
    tracing::info!("metrics on http://{addr}/metrics, mesh page on http://{addr}/");
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
    let mut backoff = crate::accept::Backoff::new("metrics listener");
    loop {
        let Some((stream, _)) = backoff.accept(listener.accept()).await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // too many at once: this one is closed
        };
        let to_loop = to_loop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let to_loop = to_loop.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(respond(req.uri().path(), &to_loop).await)
                }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(30), served).await;
            drop(slot);
        });
    }
}

/// The answer to a GET of `path`.
async fn respond(
    path: &str,
    to_loop: &mpsc::Sender<LocalRequest>,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    let (request, kind) = match path {
        "/metrics" => (
            Some(Request::Prometheus),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/" => (Some(Request::Html), "text/html; charset=utf-8"),
        _ => (None, "text/plain; charset=utf-8"),
    };
    let (status, body) = match request {
        None => (404, "not found: try /metrics or /\n".to_string()),
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
                Some(t) => (200, t.text),
                None => (503, "the agent is shutting down\n".to_string()),
            }
        }
    };
    let mut response =
        hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from(body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::link_look;

    #[test]
    fn a_lossy_or_stale_link_is_never_green() {
        assert_eq!(link_look(Some(1.0), 0.0, false).0, "green");
        assert_eq!(link_look(Some(1.0), 0.02, false).0, "amber", "2 % loss");
        assert_eq!(link_look(Some(1.0), 0.5, false).0, "red");
        assert_eq!(link_look(None, 1.0, false).0, "red", "no reply at all");
        assert_eq!(link_look(None, 0.0, false).0, "grey", "not measured yet");
        assert_eq!(link_look(Some(1.0), 0.0, true).0, "stale");
    }
}
