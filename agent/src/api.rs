//! The local control socket: a root-only Unix socket on which the agent
//! answers one-line requests with JSON (`show`), and the client side used by
//! the CLI.

use crate::daemon::Interface;
use anyhow::{Context, Result};
use netstack::{Device, DropReason};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Longest request accepted.
pub const MAX_REQUEST: usize = 256;

/// The `show` document: interface, peers and counters.
pub fn status(device: &Device, iface: &Interface, now: Instant) -> Value {
    let peers: Vec<Value> = device
        .peers()
        .map(|p| {
            json!({
                "public_key": p.public_key.to_base64(),
                "endpoint": p.endpoint.map(|e| e.to_string()),
                "allowed_ips": p.allowed_ips.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                "rx_bytes": p.rx_bytes,
                "tx_bytes": p.tx_bytes,
                "handshakes": p.handshakes,
                "last_handshake_ms": p.last_handshake.map(|t| now.saturating_duration_since(t).as_millis() as u64),
                "persistent_keepalive_s": p.persistent_keepalive.map(|d| d.as_secs()),
            })
        })
        .collect();
    let c = device.counters();
    let dropped: serde_json::Map<String, Value> = DropReason::ALL
        .iter()
        .map(|r| (r.label().to_string(), json!(c.dropped(*r))))
        .collect();
    json!({
        "interface": iface.name,
        "public_key": device.public_key().to_base64(),
        "listen_port": iface.listen_port,
        "mtu": iface.mtu,
        "offload": iface.offload,
        "peers": peers,
        "counters": {
            "rx_datagrams": c.rx_datagrams,
            "tx_datagrams": c.tx_datagrams,
            "initiations_sent": c.initiations_sent,
            "cookie_replies": c.cookie_replies,
            "dropped_total": c.dropped_total(),
            "dropped": dropped,
        },
    })
}

/// Binds a root-only Unix socket at `path`, refusing to steal one that a
/// live agent serves.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another agent already serves {}: stop it or pass another socket path",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot create the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to root", path.display()))?;
    Ok(listener)
}

/// How requests on one socket are framed.
pub struct Framing {
    /// A request is complete when it ends with this.
    pub terminator: &'static str,
    /// Longest request accepted.
    pub max: usize,
    /// Answer to a request that ended (or hit `max`) before its terminator.
    pub incomplete: &'static str,
}

/// Serves requests on the socket at `path` until the future is dropped: a
/// complete request is answered by `handler` with the device locked, an
/// incomplete one is refused unprocessed, and the connection is closed.
pub async fn serve(
    path: &Path,
    device: Arc<Mutex<Device>>,
    framing: Framing,
    handler: impl Fn(&mut Device, &str) -> String + Send + Sync + 'static,
) -> Result<()> {
    let listener = bind(path)?;
    let (handler, framing) = (Arc::new(handler), Arc::new(framing));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (device, handler, framing) = (device.clone(), handler.clone(), framing.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut request = Vec::new();
            let mut reader = tokio::io::BufReader::new(read).take(framing.max as u64);
            while !request.ends_with(framing.terminator.as_bytes()) {
                match reader.read_until(b'\n', &mut request).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let reply = if request.ends_with(framing.terminator.as_bytes()) {
                let request = String::from_utf8_lossy(&request);
                let mut dev = device.lock().unwrap_or_else(|e| e.into_inner());
                handler(&mut dev, &request)
            } else {
                framing.incomplete.to_string()
            };
            let _ = write.write_all(reply.as_bytes()).await;
        });
    }
}

/// Answers one request of the cladnet control protocol.
pub fn answer(device: &Device, iface: &Interface, request: &str) -> String {
    let reply = match request.trim() {
        "show" => status(device, iface, Instant::now()),
        other => json!({"error": format!("unknown request {other:?}; known: show")}),
    };
    format!("{reply}\n")
}

/// Sends `request` to the agent at `socket` and returns its JSON answer.
pub fn request(socket: &Path, request: &str) -> Result<Value> {
    let stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "no agent answers on {} (is `cladnet agent` running, and are you root?)",
            socket.display()
        )
    })?;
    exchange(stream, request).map_err(|e| anyhow::anyhow!("the agent refused the request: {e:#}"))
}

/// Sends one request line on a connected control socket and reads the JSON
/// answer line; an answer with an `error` field becomes that error.
pub fn exchange(mut stream: std::os::unix::net::UnixStream, request: &str) -> Result<Value> {
    stream
        .write_all(format!("{request}\n").as_bytes())
        .context("cannot send the request to the agent")?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .context("the agent closed the connection")?;
    let value: Value =
        serde_json::from_str(&line).context("the agent sent an unreadable answer")?;
    if let Some(e) = value.get("error").and_then(Value::as_str) {
        anyhow::bail!("{e}");
    }
    Ok(value)
}

/// A human-readable rendering of the `show` document.
pub fn render_table(s: &Value) -> String {
    let mut out = format!(
        "interface: {}\n  public key: {}\n  listening port: {}\n  mtu: {} (offload: {})\n",
        s["interface"].as_str().unwrap_or("?"),
        s["public_key"].as_str().unwrap_or("?"),
        s["listen_port"],
        s["mtu"],
        s["offload"]
    );
    for p in s["peers"].as_array().into_iter().flatten() {
        let hs = match p["last_handshake_ms"].as_u64() {
            Some(ms) => format!("{:.1} s ago", ms as f64 / 1000.0),
            None => "never".into(),
        };
        out += &format!(
            "\npeer: {}\n  endpoint: {}\n  allowed ips: {}\n  latest handshake: {hs}\n  transfer: {} B received, {} B sent\n",
            p["public_key"].as_str().unwrap_or("?"),
            p["endpoint"].as_str().unwrap_or("(none)"),
            p["allowed_ips"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
            p["rx_bytes"],
            p["tx_bytes"],
        );
    }
    let c = &s["counters"];
    out += &format!(
        "\ncounters: {} datagrams in, {} out, {} dropped\n",
        c["rx_datagrams"], c["tx_datagrams"], c["dropped_total"]
    );
    if let Some(d) = c["dropped"].as_object() {
        for (k, v) in d.iter().filter(|(_, v)| v.as_u64().unwrap_or(0) > 0) {
            out += &format!("  dropped {k}: {v}\n");
        }
    }
    out
}
