//! WireGuard-speaking tunnel daemons in a lab: cladnet itself, and the
//! reference peers wireguard-go and boringtun-cli (configured with `wg
//! setconf` over their UAPI socket, as /work/shared/peers/wg-common.sh does).
//! The text of their configuration files is made in `wg/conf.rs`.

use crate::lab::{describe_status, Lab, Node, Proc};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod conf;
pub use conf::{full_mesh, IfaceConf, PeerConf};

/// How long a daemon gets to bring its interface up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which implementation runs a tunnel end.
#[derive(Clone, Debug)]
pub enum Kind {
    /// The `cladnet` binary at this path.
    Cladnet(PathBuf),
    /// Debian's `wireguard-go` (from PATH or `$WIREGUARD_GO`).
    WireguardGo(PathBuf),
    /// `boringtun-cli` (PATH, `$BORINGTUN`, or `~/.cargo/bin`).
    Boringtun(PathBuf),
}

impl Kind {
    /// wireguard-go, if installed.
    pub fn wireguard_go() -> Option<Kind> {
        crate::find_program("wireguard-go", "WIREGUARD_GO").map(Kind::WireguardGo)
    }
    /// boringtun-cli, if installed.
    pub fn boringtun() -> Option<Kind> {
        crate::find_program("boringtun-cli", "BORINGTUN").map(Kind::Boringtun)
    }
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Cladnet(_) => "cladnet",
            Kind::WireguardGo(_) => "wireguard-go",
            Kind::Boringtun(_) => "boringtun",
        }
    }
    /// True for cladnet (has `show --json` with counters).
    pub fn is_cladnet(&self) -> bool {
        matches!(self, Kind::Cladnet(_))
    }
}

/// The implementation tests should use for "our" side: cladnet at `bin`,
/// unless `CLADNET_TESTBED_STANDIN=wireguard-go|boringtun` (development aid while the
/// agent is incomplete: runs wireguard-go instead; never set in CI).
pub fn ours(bin: &str) -> Kind {
    match std::env::var("CLADNET_TESTBED_STANDIN").ok().as_deref() {
        Some("wireguard-go") => {
            eprintln!("testbed: CLADNET_TESTBED_STANDIN=wireguard-go: NOT testing cladnet");
            Kind::wireguard_go().unwrap_or_else(|| Kind::WireguardGo("wireguard-go".into()))
        }
        Some("boringtun") => {
            eprintln!("testbed: CLADNET_TESTBED_STANDIN=boringtun: NOT testing cladnet");
            Kind::boringtun().unwrap_or_else(|| Kind::Boringtun("boringtun-cli".into()))
        }
        _ => Kind::Cladnet(PathBuf::from(bin)),
    }
}

/// A WireGuard key pair (base64).
#[derive(Clone, Debug)]
pub struct KeyPair {
    /// Private key, base64.
    pub private: String,
    /// Public key, base64.
    pub public: String,
}

impl KeyPair {
    /// Generates keys with `PROG genkey` / `PROG pubkey` (cladnet or wg).
    pub fn generate_with(prog: &Path) -> Result<KeyPair> {
        let out = crate::lab::run_with_timeout(
            {
                let mut c = Command::new(prog);
                c.arg("genkey");
                c
            },
            Duration::from_secs(10),
        )?;
        if !out.status.success() {
            bail!(
                "{} genkey: {}",
                prog.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let private = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let public = pubkey_with(prog, &private)?;
        Ok(KeyPair { private, public })
    }

    /// Keys from the implementation's own tool (`cladnet genkey` / `wg genkey`).
    pub fn generate_for(kind: &Kind) -> Result<KeyPair> {
        match kind {
            Kind::Cladnet(bin) => KeyPair::generate_with(bin),
            _ => KeyPair::generate_with(Path::new("wg")),
        }
    }
}

/// `PROG pubkey` with `private` on stdin.
pub fn pubkey_with(prog: &Path, private: &str) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new(prog)
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {} pubkey", prog.display()))?;
    if let Some(mut i) = child.stdin.take() {
        writeln!(i, "{private}")?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} pubkey timed out", prog.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} pubkey: {}",
            prog.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn parse_v4_cidr(c: &str) -> Option<(u32, u8)> {
    let (a, l) = c.split_once('/').unwrap_or((c, "32"));
    let a: Ipv4Addr = a.trim().parse().ok()?;
    let l: u8 = l.trim().parse().ok()?;
    (l <= 32).then_some((u32::from(a), l))
}

fn covers(net: (u32, u8), inner: (u32, u8)) -> bool {
    let mask = if net.1 == 0 {
        0
    } else {
        u32::MAX << (32 - net.1)
    };
    inner.1 >= net.1 && (inner.0 & mask) == (net.0 & mask)
}

/// A running tunnel end.
pub struct Tunnel {
    /// Implementation.
    pub kind: Kind,
    /// The node it runs in.
    pub node: Node,
    /// Interface name.
    pub ifname: String,
    /// Configuration it was started with.
    pub conf: IfaceConf,
    /// cladnet API socket (cladnet only).
    pub api_socket: PathBuf,
    /// The daemon process.
    pub proc: Proc,
}

/// The command line that runs a cladnet agent from a wg-quick file.
pub fn cladnet_agent_argv(bin: &Path, cfg: &Path, ifname: &str, sock: &Path) -> Vec<String> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let flags = [
        "agent",
        "--wg-config",
        &s(cfg),
        "--iface",
        ifname,
        "--api-socket",
        &s(sock),
    ]
    .map(str::to_string);
    std::iter::once(s(bin)).chain(flags).collect()
}

/// Starts `kind` in `node` with interface `ifname` (use [`Lab::ifname`]) and
/// configuration `conf`; returns once the interface is up with its address.
pub fn start(
    lab: &Lab,
    node: &Node,
    kind: &Kind,
    ifname: &str,
    conf: &IfaceConf,
) -> Result<Tunnel> {
    let label = format!("{}-{}", kind.name(), node.name);
    let api_socket = lab.dir().join(format!("{ifname}.sock"));
    let mut proc = match kind {
        Kind::Cladnet(bin) => {
            let cfg = lab.write_file(&format!("{ifname}.conf"), conf.wg_quick())?;
            let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
            let argv = cladnet_agent_argv(bin, &cfg, ifname, &api_socket);
            lab.spawn_env(node, &label, &[("RUST_LOG", &rust_log)], &argv)?
        }
        Kind::WireguardGo(bin) | Kind::Boringtun(bin) => {
            let uapi = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
            if uapi.exists() {
                bail!("{} exists already", uapi.display());
            }
            lab.remove_on_drop(&uapi);
            let bin = bin.to_string_lossy().into_owned();
            let p = if matches!(kind, Kind::WireguardGo(_)) {
                lab.spawn_env(
                    node,
                    &label,
                    &[("WG_PROCESS_FOREGROUND", "1"), ("LOG_LEVEL", "verbose")],
                    &[&bin, "-f", ifname],
                )?
            } else {
                let btlog = lab
                    .dir()
                    .join(format!("{label}.boringtun.out"))
                    .to_string_lossy()
                    .into_owned();
                lab.spawn(
                    node,
                    &label,
                    &[
                        &bin,
                        "-f",
                        "--disable-drop-privileges",
                        "-v",
                        "info",
                        "-l",
                        &btlog,
                        ifname,
                    ],
                )?
            };
            let mut p = p;
            let ok = crate::wait_until(START_TIMEOUT, || uapi.exists() || !p.is_alive());
            if !ok || !uapi.exists() {
                bail!(
                    "{label} did not create {} : {}",
                    uapi.display(),
                    p.log_tail(20)
                );
            }
            let cfg = lab.write_file(&format!("{ifname}.setconf"), conf.wg_setconf())?;
            let cfg = cfg.to_string_lossy().into_owned();
            lab.run(node, &["wg", "setconf", ifname, &cfg])?;
            for a in &conf.addresses {
                lab.run(node, &["ip", "addr", "add", a, "dev", ifname])?;
            }
            let mtu = conf.mtu.unwrap_or(1420).to_string();
            lab.run(
                node,
                &["ip", "link", "set", "dev", ifname, "mtu", &mtu, "up"],
            )?;
            let nets: Vec<_> = conf
                .addresses
                .iter()
                .filter_map(|a| parse_v4_cidr(a))
                .collect();
            for peer in &conf.peers {
                for aip in &peer.allowed_ips {
                    let Some(c) = parse_v4_cidr(aip) else {
                        continue;
                    };
                    if !nets.iter().any(|n| covers(*n, c)) {
                        lab.run(node, &["ip", "route", "add", aip, "dev", ifname])?;
                    }
                }
            }
            p
        }
    };
    // Up = link UP with all addresses present (and, for cladnet, the API socket).
    let want: Vec<String> = conf.addresses.clone();
    let mut last = String::new();
    let up = crate::wait_until(START_TIMEOUT, || {
        if !proc.is_alive() {
            return true;
        }
        let Ok(out) = lab.exec(node, &["ip", "-o", "addr", "show", "dev", ifname]) else {
            return false;
        };
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        let link = lab.exec(node, &["ip", "-o", "link", "show", "dev", ifname]);
        let is_up = link
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(",UP"))
            .unwrap_or(false);
        let sock_ok = !kind.is_cladnet() || api_socket.exists();
        is_up && sock_ok && want.iter().all(|a| last.contains(&format!("inet {a}")))
    });
    if let Some(st) = proc.try_status() {
        bail!(
            "{label} exited ({}) during start:\n{}",
            describe_status(&st),
            proc.log_tail(30)
        );
    }
    if !up {
        bail!(
            "{label}: interface {ifname} not up with {want:?} (and API socket) within {START_TIMEOUT:?}; addr: {last}\nlog:\n{}",
            proc.log_tail(30)
        );
    }
    Ok(Tunnel {
        kind: kind.clone(),
        node: node.clone(),
        ifname: ifname.to_string(),
        conf: conf.clone(),
        api_socket,
        proc,
    })
}

impl Tunnel {
    /// Stops the daemon (SIGTERM, grace, SIGKILL).
    pub fn stop(mut self) -> Result<std::process::ExitStatus> {
        self.proc.stop()
    }

    /// State as `cladnet show --json` prints it. For wireguard-go/boringtun
    /// the same shape is derived from `wg show IFACE dump` (no "counters").
    pub fn show(&self, lab: &Lab) -> Result<Value> {
        match &self.kind {
            Kind::Cladnet(bin) => {
                let bin = bin.to_string_lossy().into_owned();
                let sock = self.api_socket.to_string_lossy().into_owned();
                let out = lab.run(&self.node, &[&bin, "show", "--api-socket", &sock, "--json"])?;
                serde_json::from_str(&out)
                    .with_context(|| format!("cladnet show --json printed non-JSON: {out}"))
            }
            _ => {
                let out = lab.run(&self.node, &["wg", "show", &self.ifname, "dump"])?;
                wg_dump_to_json(&self.ifname, &out)
            }
        }
    }

    /// The peer entry with public key `pk` in a `show` value.
    pub fn peer<'a>(show: &'a Value, pk: &str) -> Option<&'a Value> {
        show.get("peers")?
            .as_array()?
            .iter()
            .find(|p| p.get("public_key").and_then(Value::as_str) == Some(pk))
    }

    /// Overlay IPv4 address (first of `conf.addresses`, without prefix).
    pub fn overlay(&self) -> Ipv4Addr {
        self.conf
            .addresses
            .first()
            .and_then(|a| parse_v4_cidr(a))
            .map(|(a, _)| Ipv4Addr::from(a))
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
}

/// Converts `wg show IF dump` to the `cladnet show --json` shape.
pub fn wg_dump_to_json(ifname: &str, dump: &str) -> Result<Value> {
    let mut lines = dump.lines();
    let first: Vec<&str> = lines.next().context("empty wg dump")?.split('\t').collect();
    if first.len() < 3 {
        bail!("bad wg dump header: {first:?}");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut peers = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() < 8 {
            continue;
        }
        let hs: u64 = f[4].parse().unwrap_or(0);
        // wg(8) prints an epoch time; boringtun's UAPI reports seconds elapsed.
        let ago_s = if hs == 0 {
            None
        } else if hs < 1_000_000_000 {
            Some(hs)
        } else {
            Some(now.saturating_sub(hs))
        };
        peers.push(json!({
            "public_key": f[0],
            "endpoint": if f[2] == "(none)" { Value::Null } else { json!(f[2]) },
            "allowed_ips": f[3].split(',').filter(|s| *s != "(none)").collect::<Vec<_>>(),
            "last_handshake_ms": ago_s.map_or(Value::Null, |s| json!(s * 1000)),
            "rx_bytes": f[5].parse::<u64>().unwrap_or(0),
            "tx_bytes": f[6].parse::<u64>().unwrap_or(0),
        }));
    }
    Ok(json!({
        "interface": ifname,
        "public_key": first[1],
        "listen_port": first[2].parse::<u64>().unwrap_or(0),
        "peers": peers,
    }))
}

/// Runs an iperf3 client in `client` against `server_ip` (a server must be
/// listening there on port 5201) for `secs`; `reverse` = server sends.
/// Returns the receiver-side bits per second.
pub fn iperf3(
    lab: &Lab,
    client: &Node,
    server_ip: Ipv4Addr,
    secs: u32,
    reverse: bool,
) -> Result<f64> {
    iperf3_with(lab, client, server_ip, secs, reverse, None)
}

/// [`iperf3`] with the sender paced at `mbit` Mbit/s (`iperf3 -b`): the
/// rate a stream gets when the machine has room to spare for it.
pub fn iperf3_paced(
    lab: &Lab,
    client: &Node,
    server_ip: Ipv4Addr,
    secs: u32,
    mbit: u32,
) -> Result<f64> {
    iperf3_with(lab, client, server_ip, secs, false, Some(mbit))
}

fn iperf3_with(
    lab: &Lab,
    client: &Node,
    server_ip: Ipv4Addr,
    secs: u32,
    reverse: bool,
    mbit: Option<u32>,
) -> Result<f64> {
    let s = server_ip.to_string();
    let t = secs.to_string();
    let rate = mbit.map(|m| format!("{m}M"));
    let mut args = vec![
        "iperf3",
        "-c",
        &s,
        "-t",
        &t,
        "-J",
        "--connect-timeout",
        "5000",
    ];
    if reverse {
        args.push("-R");
    }
    if let Some(r) = &rate {
        args.extend(["-b", r.as_str()]);
    }
    let out = lab.exec_timeout(client, &args, Duration::from_secs(u64::from(secs) + 30))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).with_context(|| format!("iperf3 output: {text}"))?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3 -c {s}{}: {e}", if reverse { " -R" } else { "" });
    }
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(Value::as_f64)
        .context("iperf3 JSON without end.sum_received.bits_per_second")
}

/// Starts `iperf3 -s` in `node` bound to `bind` and waits until it listens.
pub fn iperf3_server(lab: &Lab, node: &Node, bind: Ipv4Addr) -> Result<Proc> {
    let b = bind.to_string();
    let mut p = lab.spawn(
        node,
        &format!("iperf3-s-{}", node.name),
        &["iperf3", "-s", "-B", &b],
    )?;
    let ok = crate::wait_until(Duration::from_secs(10), || {
        lab.exec(node, &["ss", "-Hltn", "sport = :5201"])
            .map(|o| !String::from_utf8_lossy(&o.stdout).trim().is_empty())
            .unwrap_or(false)
            || !p.is_alive()
    });
    if !ok || !p.is_alive() {
        bail!("iperf3 server did not start: {}", p.log_tail(10));
    }
    Ok(p)
}

#[cfg(test)]
mod tests;
