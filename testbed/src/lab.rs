//! Namespaces, veth, bridge (commands and processes in nodes: `lab/exec.rs`).

use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod exec;
pub(crate) use exec::run_with_timeout;
pub use exec::{describe_status, Proc};

/// Timeout of [`Lab::exec`] / [`Lab::run`] (every command is bounded).
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// Interface name of a node's underlay veth end, inside its namespace.
pub(crate) const UNDERLAY_IF: &str = "eth0";
const BRIDGE: &str = "br0";

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

fn base36(mut v: u64) -> String {
    const D: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(D[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Runs a command in the root namespace (only `ip netns ...`-style lab
/// management, never anything that adds addresses there); stdout on success.
pub(crate) fn host_output(args: &[&str]) -> Result<String> {
    let (prog, rest) = args.split_first().context("empty command")?;
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    let out = run_with_timeout(cmd, Duration::from_secs(30))?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn host(args: &[&str]) -> Result<()> {
    host_output(args).map(|_| ())
}

/// A node of a lab: a network namespace with `lo`, and `eth0` on the lab switch.
#[derive(Clone, Debug)]
pub struct Node {
    /// Short name given to [`Lab::add_node`].
    pub name: String,
    /// Full namespace name (`cl-<pid>-<n>-<name>`).
    pub ns: String,
}

impl Node {
    /// Runs `f` on a thread that has entered the node's network namespace (so
    /// sockets it opens live there). Bounded only by `f` itself.
    pub fn within<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        let path = format!("/run/netns/{}", self.ns);
        let file = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
        std::thread::scope(|s| {
            s.spawn(move || -> Result<R> {
                use std::os::fd::AsRawFd;
                // SAFETY: valid fd of a netns file; affects only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    bail!("setns {path}: {}", std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread in {}'s namespace panicked", self.name))?
        })
    }
}

/// What a node is, for the nodes that are not plain switch nodes (see
/// [`crate::nat`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A site's NAT router: its switch-side interface is `wan`.
    Router,
    /// A host on a site's LAN (eth0 on the site bridge, private address).
    SiteHost,
}

/// Interface name of a site router's switch-side veth end.
pub(crate) const WAN_IF: &str = "wan";

#[derive(Default)]
struct State {
    /// Namespaces created, in creation order (switch first).
    namespaces: Vec<String>,
    /// (node name, current underlay addresses)
    addrs: Vec<(String, Vec<Ipv4Addr>)>,
    next_host: u32,
    /// Roles of the nodes that are not plain switch nodes.
    roles: Vec<(String, Role)>,
    /// Files outside the temp dir to remove at the end (e.g. UAPI sockets).
    extra_files: Vec<PathBuf>,
    log_names: Vec<String>,
}

pub(crate) struct Inner {
    id: String,
    short: String,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    switch_ns: String,
    state: Mutex<State>,
    keep: std::sync::atomic::AtomicBool,
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        // Node namespaces first (their deletion removes the veth pairs and any
        // TUN device in them), the switch last.
        for ns in st.namespaces.iter().rev() {
            if let Err(e) = host(&["ip", "netns", "del", ns]) {
                eprintln!("testbed: could not delete namespace {ns}: {e:#}");
            }
        }
        for f in &st.extra_files {
            let _ = std::fs::remove_file(f);
        }
        let keep = panicking
            || self.keep.load(Ordering::SeqCst)
            || std::env::var_os("CLADNET_TESTBED_KEEP").is_some_and(|v| v == "1");
        if let Some(dir) = self.dir.take() {
            if keep {
                let p = dir.keep();
                eprintln!("testbed: lab {} files kept in {}", self.id, p.display());
            }
        }
    }
}

/// A network-namespace lab. See the crate docs for what it creates and removes.
pub struct Lab {
    inner: Arc<Inner>,
}

impl Lab {
    /// Creates an empty lab: a switch namespace with a bridge, and a temp dir.
    /// Sweeps stale namespaces of dead earlier runs first.
    pub fn new() -> Result<Lab> {
        if !crate::is_root() {
            bail!("testbed labs need root");
        }
        crate::sweep_stale();
        let pid = std::process::id();
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{pid}-{n}", crate::NS_PREFIX);
        let short = format!("c{}{}", base36(pid.into()), base36(n.into()));
        let dir = tempfile::Builder::new()
            .prefix(&format!("cladnet-lab-{pid}-{n}-"))
            .tempdir()
            .context("creating lab temp dir")?;
        let dir_path = dir.path().to_path_buf();
        let switch_ns = format!("{id}-sw");
        let lab = Lab {
            inner: Arc::new(Inner {
                id,
                short,
                dir: Some(dir),
                dir_path,
                switch_ns: switch_ns.clone(),
                state: Mutex::new(State {
                    next_host: 1,
                    ..State::default()
                }),
                keep: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        lab.add_ns(&switch_ns)?;
        lab.ip(&switch_ns, &["link", "add", BRIDGE, "type", "bridge"])?;
        lab.ip(&switch_ns, &["link", "set", BRIDGE, "up"])?;
        Ok(lab)
    }

    /// Creates namespace `ns` (registered for deletion with the lab) with `lo` up.
    pub(crate) fn add_ns(&self, ns: &str) -> Result<()> {
        host(&["ip", "netns", "add", ns])?;
        self.inner.state().namespaces.push(ns.to_string());
        host(&["ip", "-n", ns, "link", "set", "lo", "up"])
    }

    /// Runs `ip -n NS ARGS...` (the namespace must be one of the lab's).
    pub(crate) fn ip(&self, ns: &str, args: &[&str]) -> Result<()> {
        let mut v = vec!["ip", "-n", ns];
        v.extend_from_slice(args);
        host(&v)
    }

    /// Passes `r` through; on `Err`, prints the tail of every log in the lab
    /// dir and keeps the dir (so a failing test shows what the daemons said).
    pub fn check<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.inner.keep.store(true, Ordering::SeqCst);
            eprintln!("==== testbed: lab {} failed: {e:#}", self.inner.id);
            self.dump_logs(40);
        }
        r
    }

    /// Prints the last `lines` lines of every `*.log`/`*.out` file in the lab dir.
    pub fn dump_logs(&self, lines: usize) {
        let Ok(rd) = std::fs::read_dir(self.dir()) else {
            return;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log" || x == "out"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read(&f)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            eprintln!(
                "---- {} (last {lines} of {} lines) ----",
                f.display(),
                all.len()
            );
            for l in &all[all.len().saturating_sub(lines)..] {
                eprintln!("  {l}");
            }
        }
        eprintln!(
            "---- end of logs; files kept in {} ----",
            self.dir().display()
        );
    }

    /// The lab's id (`cl-<pid>-<n>`), also the prefix of its namespaces.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The lab's private temp dir (logs, configs, sockets).
    pub fn dir(&self) -> &Path {
        &self.inner.dir_path
    }

    /// Writes a file into the lab dir (mode 0600) and returns its path.
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.dir().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)
            .with_context(|| format!("write {}", p.display()))?;
        std::io::Write::write_all(&mut f, contents.as_ref())?;
        Ok(p)
    }

    /// A lab-unique interface name (≤ 15 chars) ending in `tag` (≤ 6 chars).
    /// Use it for TUN devices whose UAPI socket path is global
    /// (`/var/run/wireguard/NAME.sock`).
    pub fn ifname(&self, tag: &str) -> String {
        let mut s = format!("{}{}", self.inner.short, tag);
        s.truncate(15);
        s
    }

    /// Registers a file outside the lab dir to be removed with the lab.
    pub fn remove_on_drop(&self, p: impl Into<PathBuf>) {
        self.inner.state().extra_files.push(p.into());
    }

    /// Adds a node on the lab switch with the next free underlay address
    /// 198.18.0.N/24. `name`: 1–8 chars `[a-z0-9]`.
    pub fn add_node(&self, name: &str) -> Result<Node> {
        let addr = self.next_underlay()?;
        self.add_node_with_addr(name, addr)
    }

    /// Reserves the next underlay address 198.18.0.N (N ≤ 250) that no node
    /// of the lab currently uses.
    pub(crate) fn next_underlay(&self) -> Result<Ipv4Addr> {
        let mut st = self.inner.state();
        loop {
            let h = st.next_host;
            if h > 250 {
                bail!("lab switch is full");
            }
            st.next_host += 1;
            let a = Ipv4Addr::new(198, 18, 0, h as u8);
            if !st.addrs.iter().any(|(_, v)| v.contains(&a)) {
                return Ok(a);
            }
        }
    }

    /// Adds a node on the lab switch with the given underlay address (/24;
    /// must be in 198.18.0.0/15).
    pub fn add_node_with_addr(&self, name: &str, addr: Ipv4Addr) -> Result<Node> {
        self.check_new_node_name(name)?;
        check_underlay(addr)?;
        let ns = self.node_ns(name);
        self.add_ns(&ns)?;
        self.connect_to_switch(name, &ns, UNDERLAY_IF)?;
        let cidr = format!("{addr}/24");
        self.ip(&ns, &["addr", "add", &cidr, "dev", UNDERLAY_IF])?;
        self.register_node(name, addr, None);
        Ok(Node {
            name: name.to_string(),
            ns,
        })
    }

    /// Namespace name of node `name` (`cl-<pid>-<n>-<name>`).
    pub(crate) fn node_ns(&self, name: &str) -> String {
        format!("{}-{name}", self.inner.id)
    }

    /// Errors unless `name` is a valid node name (1–8 chars `[a-z0-9]`) not
    /// yet used in the lab.
    pub(crate) fn check_new_node_name(&self, name: &str) -> Result<()> {
        if name.is_empty()
            || name.len() > 8
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            bail!("node name {name:?}: 1-8 chars [a-z0-9]");
        }
        if self.inner.state().addrs.iter().any(|(n, _)| n == name) {
            bail!("node {name} exists");
        }
        Ok(())
    }

    /// Plugs namespace `ns` into the lab switch: a veth pair `v-<name>` (on
    /// the bridge) / `ifname` (in `ns`), both up. Both ends are created
    /// inside lab namespaces: nothing touches the root one.
    pub(crate) fn connect_to_switch(&self, name: &str, ns: &str, ifname: &str) -> Result<()> {
        let sw = self.inner.switch_ns.clone();
        let port = format!("v-{name}");
        self.ip(
            &sw,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", ns,
            ],
        )?;
        self.ip(&sw, &["link", "set", &port, "master", BRIDGE, "up"])?;
        self.ip(ns, &["link", "set", ifname, "up"])
    }

    /// Records node `name` with its primary address (what [`Lab::addr`]
    /// returns) and its role.
    pub(crate) fn register_node(&self, name: &str, addr: Ipv4Addr, role: Option<Role>) {
        let mut st = self.inner.state();
        st.addrs.push((name.to_string(), vec![addr]));
        if let Some(r) = role {
            st.roles.push((name.to_string(), r));
        }
    }

    /// True if some node of the lab currently has address `a`.
    pub(crate) fn addr_in_use(&self, a: Ipv4Addr) -> bool {
        self.inner.state().addrs.iter().any(|(_, v)| v.contains(&a))
    }

    /// The node's role, `None` for a plain switch node.
    pub(crate) fn role(&self, node: &Node) -> Option<Role> {
        self.inner
            .state()
            .roles
            .iter()
            .find(|(n, _)| *n == node.name)
            .map(|(_, r)| *r)
    }

    /// The node's interface towards its network: `wan` for a site router,
    /// `eth0` otherwise (for a site host that is its LAN link).
    fn link_if(&self, node: &Node) -> &'static str {
        match self.role(node) {
            Some(Role::Router) => WAN_IF,
            _ => UNDERLAY_IF,
        }
    }

    /// The node's current underlay addresses (first = primary). For a site
    /// router: its WAN address; for a site node: its LAN address (e.g.
    /// 192.168.2.10), see [`Lab::add_site_node`].
    pub fn addrs(&self, node: &Node) -> Vec<Ipv4Addr> {
        self.inner
            .state()
            .addrs
            .iter()
            .find(|(n, _)| *n == node.name)
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    }

    /// The node's primary underlay address (for site routers and site nodes,
    /// as in [`Lab::addrs`]).
    pub fn addr(&self, node: &Node) -> Ipv4Addr {
        self.addrs(node)
            .first()
            .copied()
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// Roaming: replaces all of the node's underlay addresses by `new` (/24).
    /// Not for site nodes (see [`Lab::add_site_node`]) nor site routers (use
    /// [`Lab::change_site_wan`], which keeps the [`crate::nat::Site`] in step).
    pub fn set_addr(&self, node: &Node, new: Ipv4Addr) -> Result<()> {
        if let Some(r) = self.role(node) {
            bail!(
                "set_addr: {} is a {}",
                node.name,
                match r {
                    Role::Router => "site router (use Lab::change_site_wan)",
                    Role::SiteHost => "site node (it has no underlay address)",
                }
            );
        }
        self.replace_addr(node, new)
    }

    /// Replaces all of the node's switch-side addresses by `new` (/24) on its
    /// switch-side interface (`wan` for a router) and records it.
    pub(crate) fn replace_addr(&self, node: &Node, new: Ipv4Addr) -> Result<()> {
        check_underlay(new)?;
        let old = self.addrs(node);
        let ifname = self.link_if(node);
        // Delete first: removing a subnet's primary address would also
        // remove a secondary one added before it.
        for a in &old {
            let c = format!("{a}/24");
            self.ip(&node.ns, &["addr", "del", &c, "dev", ifname])?;
        }
        let cidr = format!("{new}/24");
        self.ip(&node.ns, &["addr", "add", &cidr, "dev", ifname])?;
        self.record_addr(node, new);
        Ok(())
    }

    /// Records `new` as the node's only address (see [`Lab::addrs`]).
    pub(crate) fn record_addr(&self, node: &Node, new: Ipv4Addr) {
        let mut st = self.inner.state();
        if let Some((_, v)) = st.addrs.iter_mut().find(|(n, _)| *n == node.name) {
            *v = vec![new];
        }
    }

    /// Takes the node's underlay link down or up (partition / heal). For a
    /// site router that is its `wan` link (the whole site is cut off), for a
    /// site node its LAN link.
    pub fn set_link(&self, node: &Node, up: bool) -> Result<()> {
        let ifname = self.link_if(node);
        self.ip(
            &node.ns,
            &["link", "set", ifname, if up { "up" } else { "down" }],
        )
    }
}

fn check_underlay(a: Ipv4Addr) -> Result<()> {
    let o = a.octets();
    if o[0] != 198 || (o[1] & 0xfe) != 18 {
        bail!("{a} is not in the underlay range 198.18.0.0/15");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
