//! WireGuard's cross-platform userspace API (the `get=1` / `set=1` text
//! protocol on `/var/run/wireguard/IFACE.sock`), so `wg show`, `wg set` and
//! `wg syncconf` work on a cladnet interface exactly as on wireguard-go.

use netstack::{Device, IpNet, PeerConfig, PrivateKey, PublicKey};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// Where `wg` looks for the socket of interface `iface`.
pub fn socket_path(iface: &str) -> std::path::PathBuf {
    std::path::PathBuf::from("/var/run/wireguard").join(format!("{iface}.sock"))
}

/// errno values the protocol reports.
const EINVAL: i32 = 22;
const EPROTO: i32 = 71;
/// Answer to a request cut off before its blank line: nothing is applied.
pub const INCOMPLETE: &str = "errno=71\n\n";
const ENOTSUP: i32 = 95;

/// Longest request accepted, in bytes (bounds memory per connection).
pub const MAX_REQUEST: usize = 1 << 20;

/// The `get=1` answer (without the final `errno=0` and blank line).
pub fn get(device: &Device, listen_port: u16, now: Instant) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "private_key={}", hex(&device.private_key().0));
    let _ = writeln!(out, "listen_port={listen_port}");
    let wall = SystemTime::now();
    for p in device.peers() {
        let _ = writeln!(out, "public_key={}", hex(&p.public_key.0));
        if let Some(c) = device.peer_config(&p.public_key) {
            let _ = writeln!(
                out,
                "preshared_key={}",
                hex(&c.preshared_key.unwrap_or_default())
            );
        }
        if let Some(e) = p.endpoint {
            let _ = writeln!(out, "endpoint={e}");
        }
        let (sec, nsec) = p
            .stats
            .last_handshake
            .and_then(|t| wall.checked_sub(now.saturating_duration_since(t)))
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()));
        let _ = writeln!(out, "last_handshake_time_sec={sec}");
        let _ = writeln!(out, "last_handshake_time_nsec={nsec}");
        let _ = writeln!(out, "tx_bytes={}", p.stats.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", p.stats.rx_bytes);
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            p.persistent_keepalive.map_or(0, |d| d.as_secs())
        );
        let _ = writeln!(out, "protocol_version=1");
        for net in &p.allowed_ips {
            let _ = writeln!(out, "allowed_ip={net}");
        }
    }
    out
}

/// One peer section of a `set=1` request.
#[derive(Debug, Default, PartialEq)]
struct PeerSet {
    key: [u8; 32],
    remove: bool,
    update_only: bool,
    psk: Option<[u8; 32]>,
    endpoint: Option<SocketAddr>,
    keepalive: Option<u16>,
    replace_allowed_ips: bool,
    allowed_ips: Vec<IpNet>,
}

/// A parsed `set=1` request.
#[derive(Debug, Default, PartialEq)]
struct SetRequest {
    private_key: Option<[u8; 32]>,
    listen_port: Option<u16>,
    replace_peers: bool,
    peers: Vec<PeerSet>,
}

fn hex(b: &[u8; 32]) -> String {
    b.iter().fold(String::with_capacity(64), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn parse_net(s: &str) -> Option<IpNet> {
    let (a, p) = s.split_once('/')?;
    IpNet::new(a.parse().ok()?, p.parse().ok()?)
}

fn flag(v: &str) -> Result<bool, i32> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(EINVAL),
    }
}

/// Parses the lines of a `set=1` request (after the `set=1` line).
fn parse_set<'a>(lines: impl Iterator<Item = &'a str>) -> Result<SetRequest, i32> {
    let mut req = SetRequest::default();
    for line in lines {
        let (k, v) = line.split_once('=').ok_or(EPROTO)?;
        let peer = req.peers.last_mut();
        match (k, peer) {
            ("private_key", _) => req.private_key = Some(unhex(v).ok_or(EINVAL)?),
            ("listen_port", _) => req.listen_port = Some(v.parse().map_err(|_| EINVAL)?),
            ("fwmark", _) => {} // no policy routing here; accepted for `wg setconf`
            ("replace_peers", _) => req.replace_peers = flag(v)?,
            ("public_key", _) => req.peers.push(PeerSet {
                key: unhex(v).ok_or(EINVAL)?,
                ..PeerSet::default()
            }),
            ("remove", Some(p)) => p.remove = flag(v)?,
            ("update_only", Some(p)) => p.update_only = flag(v)?,
            ("preshared_key", Some(p)) => p.psk = Some(unhex(v).ok_or(EINVAL)?),
            ("endpoint", Some(p)) => p.endpoint = Some(v.parse().map_err(|_| EINVAL)?),
            ("persistent_keepalive_interval", Some(p)) => {
                p.keepalive = Some(v.parse().map_err(|_| EINVAL)?)
            }
            ("replace_allowed_ips", Some(p)) => p.replace_allowed_ips = flag(v)?,
            ("allowed_ip", Some(p)) => p.allowed_ips.push(parse_net(v).ok_or(EINVAL)?.masked()),
            ("protocol_version", _) if v == "1" => {}
            _ => return Err(EINVAL),
        }
    }
    Ok(req)
}

/// Applies a `set=1` request; returns the errno to report.
fn apply(device: &mut Device, listen_port: u16, req: SetRequest, now: Instant) -> i32 {
    if req.listen_port.is_some_and(|p| p != listen_port) {
        tracing::warn!("wg set listen-port: changing the port of a running agent is not supported; restart it instead");
        return ENOTSUP;
    }
    if let Some(k) = req.private_key {
        if k != device.private_key().0 {
            device.set_private_key(PrivateKey(k), now);
        }
    }
    if req.replace_peers {
        let keys: Vec<PublicKey> = device.peers().map(|p| p.public_key).collect();
        for k in keys
            .iter()
            .filter(|k| !req.peers.iter().any(|p| p.key == k.0))
        {
            device.remove_peer(k);
        }
    }
    for p in req.peers {
        let key = PublicKey(p.key);
        if p.remove {
            device.remove_peer(&key);
            continue;
        }
        let existing = device.peer_config(&key);
        if existing.is_none() && p.update_only {
            continue;
        }
        // `replace_peers` means the request describes each peer completely.
        let base = if req.replace_peers { None } else { existing };
        let mut c = base.unwrap_or(PeerConfig {
            public_key: key,
            preshared_key: None,
            endpoint: None,
            allowed_ips: Vec::new(),
            persistent_keepalive: None,
        });
        if let Some(psk) = p.psk {
            c.preshared_key = (psk != [0; 32]).then_some(psk);
        }
        c.endpoint = p.endpoint.or(c.endpoint);
        if let Some(k) = p.keepalive {
            c.persistent_keepalive = (k > 0).then(|| Duration::from_secs(u64::from(k)));
        }
        if p.replace_allowed_ips {
            c.allowed_ips.clear();
        }
        for net in p.allowed_ips {
            if !c.allowed_ips.contains(&net) {
                c.allowed_ips.push(net);
            }
        }
        device.upsert_peer(c);
    }
    0
}

/// Answers one request (the text up to its blank line).
pub fn handle(device: &mut Device, listen_port: u16, request: &str, now: Instant) -> String {
    let mut lines = request.lines().take_while(|l| !l.is_empty());
    match lines.next() {
        Some("get=1") => format!("{}errno=0\n\n", get(device, listen_port, now)),
        Some("set=1") => {
            let errno = match parse_set(lines) {
                Ok(req) => apply(device, listen_port, req, now),
                Err(e) => e,
            };
            format!("errno={errno}\n\n")
        }
        _ => format!("errno={EPROTO}\n\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstack::DeviceConfig;

    fn device() -> Device {
        let cfg = DeviceConfig {
            private_key: PrivateKey::generate(),
            mtu: 1420,
            handshake_load_limit: 100,
        };
        Device::new(cfg, Instant::now(), Duration::from_secs(1_700_000_000))
    }

    #[test]
    fn set_then_get_round_trips_peers() {
        let mut d = device();
        let now = Instant::now();
        let pk = PrivateKey::generate().public_key();
        let req = format!(
            "set=1\npublic_key={}\nendpoint=198.18.0.2:51820\npersistent_keepalive_interval=25\nallowed_ip=100.64.0.2/32\nallowed_ip=100.64.1.7/24\n\n",
            hex(&pk.0)
        );
        assert_eq!(handle(&mut d, 51820, &req, now), "errno=0\n\n");
        let got = handle(&mut d, 51820, "get=1\n\n", now);
        assert!(got.contains(&format!("public_key={}", hex(&pk.0))), "{got}");
        assert!(got.contains("endpoint=198.18.0.2:51820"));
        assert!(
            got.contains("allowed_ip=100.64.1.0/24"),
            "host bits masked: {got}"
        );
        assert!(got.contains("persistent_keepalive_interval=25"));
        assert!(got.ends_with("errno=0\n\n"));
        let rm = format!("set=1\npublic_key={}\nremove=true\n\n", hex(&pk.0));
        assert_eq!(handle(&mut d, 51820, &rm, now), "errno=0\n\n");
        assert!(!handle(&mut d, 51820, "get=1\n\n", now).contains("public_key="));
    }

    #[test]
    fn bad_requests_get_an_errno_and_change_nothing() {
        let mut d = device();
        let now = Instant::now();
        assert_eq!(
            handle(&mut d, 1, "set=1\npublic_key=zz\n\n", now),
            "errno=22\n\n"
        );
        assert_eq!(
            handle(&mut d, 1, "set=1\nallowed_ip=1.2.3.4/32\n\n", now),
            "errno=22\n\n"
        );
        assert_eq!(
            handle(&mut d, 1, "set=1\nlisten_port=2\n\n", now),
            "errno=95\n\n"
        );
        assert_eq!(handle(&mut d, 1, "hello\n\n", now), "errno=71\n\n");
        assert_eq!(d.peers().count(), 0);
    }
}
