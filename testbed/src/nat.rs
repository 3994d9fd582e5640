//! NAT sites: private LANs behind NAT routers, like clouds or homes.
//!
//! A site is a router namespace (`cl-<pid>-<n>-<site>`) with `wan` on the
//! lab switch (a 198.18.0.N/24 address, like [`Lab::add_node`]) and a bridge
//! `lan` holding the first host address of the site's private subnet. Site
//! nodes (`cl-<pid>-<n>-<node>`) hang off that bridge through veth pairs made
//! inside the router's and the node's namespaces. Private addresses (10/8,
//! 172.16/12, 192.168/16) therefore exist only inside the lab's namespaces,
//! and the switch side has no route to any LAN: site nodes are reachable only
//! through the NAT. Two sites may use the same subnet and the same host
//! addresses. Everything is deleted with the lab (and by the stale sweeper),
//! like any other node.
//!
//! The router's nftables table `cladnet_nat` (written to
//! `<lab dir>/site-<name>.nft`, loaded so that it replaces the previous
//! one) is, for subnet S:
//!
//! ```text
//! table ip cladnet_nat {
//!   chain internet {
//!     type filter hook prerouting priority raw; policy accept;
//!     iifname "wan" ip ttl <= 4 drop
//!   }
//!   chain prerouting {                                               # OneToOne, once its VM exists
//!     type nat hook prerouting priority dstnat; policy accept;
//!     iifname "wan" dnat to VM
//!   }
//!   set mapped { type inet_service; flags dynamic,timeout; timeout 2m; }   # FullCone,
//!   set contacted { type ipv4_addr; flags dynamic,timeout; timeout 2m; }   # AddressRestricted
//!   chain outbound {                                                 # (once the VM exists)
//!     type filter hook postrouting priority 50; policy accept;
//!     oifname "wan" ip saddr VM meta l4proto udp update @mapped { udp sport }
//!     oifname "wan" ip saddr VM update @contacted { ip daddr }
//!   }
//!   chain prerouting {
//!     type nat hook prerouting priority dstnat; policy accept;
//!     iifname "wan" udp dport @mapped dnat to VM                     # FullCone
//!     iifname "wan" ip saddr @contacted udp dport @mapped dnat to VM # AddressRestricted
//!   }
//!   chain postrouting {
//!     type nat hook postrouting priority srcnat; policy accept;
//!     oifname "wan" ip saddr S masquerade                            # all others
//!     oifname "wan" ip saddr S masquerade random,fully-random        # Symmetric
//!   }
//!   chain forward {                                                  # Firewall::Filtering only
//!     type filter hook forward priority filter; policy accept;
//!     iifname "wan" ct state established,related accept
//!     iifname "wan" ct status dnat accept
//!     iifname "wan" drop
//!   }
//!   chain input {                                                    # Firewall::Filtering only
//!     type filter hook input priority filter; policy accept;
//!     iifname "wan" ct state established,related accept
//!     iifname "wan" meta l4proto icmp accept
//!     iifname "wan" drop
//!   }
//! }
//! ```
//!
//! [`Firewall::Open`] leaves out both filter chains: a bare Linux NAT
//! instance as people run it in their own cloud accounts.
//!
//! The `input` drop matters for hole punching: an unsolicited datagram to
//! the router that reached the local stack would leave a conntrack entry
//! (peer:p → wan:q), and the router's own later outbound mapping to that
//! peer would then have to pick another port than q (the reply tuple is
//! taken), so the peer's prediction would fail. Dropped in `input`, the
//! entry is never confirmed — as on real NAT gateways, which drop silently.
//!
//! The `internet` chain stands for the routers between two sites, which the
//! lab's switch does not have: a datagram that would have run out of TTL
//! on the [`INTERNET_HOPS`] hops between two clouds is dropped on arrival,
//! before conntrack sees it. A hole punch with a short TTL therefore opens
//! its own NAT and never reaches the far one, as on the internet.
//!
//! Flushing a router's conntrack table is in `nat/conntrack.rs`.

use crate::lab::{Role, WAN_IF};
use crate::{Lab, Node};
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

/// Name of the LAN bridge inside a site's router namespace.
const LAN_BRIDGE: &str = "lan";
/// Name of the router's nftables table.
const NFT_TABLE: &str = "cladnet_nat";
/// Routers a datagram crosses between two sites (on the internet, many
/// more): one arriving with no more TTL than this would have died on the way.
pub const INTERNET_HOPS: u8 = 4;

/// How a site's router translates (see the module docs for the rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// nftables `masquerade`: source ports are kept when free, so a LAN
    /// socket gets the same public `wan:port` whatever the destination
    /// (endpoint-independent mapping); inbound datagrams pass only when they
    /// match a flow the LAN side started (conntrack matches the full 5-tuple,
    /// i.e. address-and-port-dependent filtering). Simultaneous sends to the
    /// predicted `wan:port` open the way: UDP hole punching works.
    Cone,
    /// `masquerade random,fully-random`: every new flow (each destination)
    /// gets a random public port, so the port a peer sees cannot be
    /// predicted by a third party: hole punching fails, relays are needed.
    Symmetric,
    /// A cloud's 1:1 NAT in front of one VM (the site's only node): all
    /// that arrives on `wan` is forwarded to the VM (DNAT), what the VM
    /// sends leaves from the router's WAN address with its ports kept. The
    /// VM's interface holds only its private address.
    OneToOne,
    /// A full-cone NAT in front of one VM: `masquerade` (ports kept), and
    /// once the VM has sent from a port, whatever arrives at that public
    /// port from anyone is forwarded to it (endpoint-independent mapping
    /// and filtering; the `mapped` set below).
    FullCone,
    /// An address-restricted cone NAT in front of one VM: like
    /// [`NatKind::FullCone`], but only from addresses the VM has sent to
    /// (from any of their ports: the `contacted` set below).
    AddressRestricted,
}

impl NatKind {
    /// Whether a site of this kind holds exactly one VM (its rules name it).
    fn one_vm(self) -> bool {
        matches!(
            self,
            NatKind::OneToOne | NatKind::FullCone | NatKind::AddressRestricted
        )
    }
}

/// What a site's router does with unsolicited datagrams from the WAN side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firewall {
    /// Dropped, in `forward` and `input` (a cloud NAT gateway, a home
    /// router): only replies to LAN flows come in (and, for
    /// [`NatKind::OneToOne`], what is forwarded to the VM).
    Filtering,
    /// Nothing dropped: a bare Linux NAT instance (masquerade, no filter).
    /// Unsolicited datagrams reach the router's own stack and leave
    /// conntrack entries that may take a port the LAN's flows would use.
    Open,
}

/// A NAT site made by [`Lab::add_site`]: a router and its private LAN.
/// Clones share the current WAN address (updated by [`Lab::change_site_wan`]).
#[derive(Clone, Debug)]
pub struct Site {
    router: Node,
    subnet: String,
    network: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    kind: NatKind,
    firewall: Firewall,
    lan_mtu: u16,
    wan: Arc<Mutex<Ipv4Addr>>,
    hosts: Arc<Mutex<Vec<Ipv4Addr>>>,
}

impl Site {
    /// The router node (usable with every [`Lab`] method; its switch-side
    /// interface is `wan`, its LAN bridge `lan`).
    pub fn router(&self) -> &Node {
        &self.router
    }

    /// The site's name (also the router node's name).
    pub fn name(&self) -> &str {
        &self.router.name
    }

    /// The router's current public (WAN) address on the lab switch.
    pub fn wan_addr(&self) -> Ipv4Addr {
        *self.wan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The LAN subnet, e.g. `"192.168.2.0/24"`.
    pub fn subnet(&self) -> &str {
        &self.subnet
    }

    /// The router's LAN address (first host of the subnet, e.g.
    /// 192.168.2.1): the site nodes' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The NAT behaviour of the router.
    pub fn kind(&self) -> NatKind {
        self.kind
    }

    /// What the router does with unsolicited datagrams.
    pub fn firewall(&self) -> Firewall {
        self.firewall
    }

    /// MTU of the LAN side links (bridge, router ports, nodes' eth0).
    pub fn lan_mtu(&self) -> u16 {
        self.lan_mtu
    }

    fn mask(&self) -> u32 {
        prefix_mask(self.prefix)
    }
}

fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// The private range (base, prefix length) holding `a`: 10/8, 172.16/12 or
/// 192.168/16.
fn private_range(a: Ipv4Addr) -> Option<(u32, u8)> {
    let o = a.octets();
    if o[0] == 10 {
        Some((0x0a00_0000, 8))
    } else if o[0] == 172 && (o[1] & 0xf0) == 16 {
        Some((0xac10_0000, 12))
    } else if o[0] == 192 && o[1] == 168 {
        Some((0xc0a8_0000, 16))
    } else {
        None
    }
}

/// Parses `"a.b.c.d/len"`: a network address (host bits zero), 8 ≤ len ≤ 30,
/// entirely inside one of the private ranges.
fn parse_subnet(s: &str) -> Result<(Ipv4Addr, u8)> {
    let (a, l) = s
        .split_once('/')
        .with_context(|| format!("subnet {s:?}: expected a.b.c.d/len"))?;
    let addr: Ipv4Addr = a
        .parse()
        .with_context(|| format!("subnet {s:?}: bad address"))?;
    let prefix: u8 = l
        .parse()
        .with_context(|| format!("subnet {s:?}: bad prefix length"))?;
    if !(8..=30).contains(&prefix) {
        bail!("subnet {s:?}: prefix length must be 8..=30");
    }
    let mask = prefix_mask(prefix);
    if u32::from(addr) & !mask != 0 {
        bail!("subnet {s:?}: host bits set (network address expected)");
    }
    let last = Ipv4Addr::from(u32::from(addr) | !mask);
    match (private_range(addr), private_range(last)) {
        (Some(r1), Some(r2)) if r1 == r2 => Ok((addr, prefix)),
        _ => bail!("subnet {s:?}: must lie inside 10/8, 172.16/12 or 192.168/16"),
    }
}

/// A full or address-restricted cone in front of `vm`: the public ports it
/// sent from (and the addresses it sent to) are remembered; what arrives at
/// such a port (from `only_from`, when given) goes to it.
fn cone_rules(vm: Ipv4Addr, only_from: &str) -> String {
    format!(
        "  set mapped {{
    type inet_service; flags dynamic,timeout; timeout 2m;
  }}
  set contacted {{
    type ipv4_addr; flags dynamic,timeout; timeout 2m;
  }}
  chain outbound {{
    type filter hook postrouting priority 50; policy accept;
    oifname \"{WAN_IF}\" ip saddr {vm} meta l4proto udp update @mapped {{ udp sport }}
    oifname \"{WAN_IF}\" ip saddr {vm} update @contacted {{ ip daddr }}
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"{WAN_IF}\" {only_from}udp dport @mapped dnat to {vm}
  }}
"
    )
}

/// The router's nftables ruleset (see the module docs); `vm` is the 1:1
/// NAT's VM once it exists. Loading it replaces the previous one.
fn ruleset(kind: NatKind, firewall: Firewall, subnet: &str, vm: Option<Ipv4Addr>) -> String {
    let masq = match kind {
        NatKind::Symmetric => "masquerade random,fully-random",
        _ => "masquerade",
    };
    let dnat = match (kind, vm) {
        (NatKind::OneToOne, Some(vm)) => format!(
            "  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"{WAN_IF}\" dnat to {vm}
  }}
"
        ),
        (NatKind::FullCone, Some(vm)) => cone_rules(vm, ""),
        (NatKind::AddressRestricted, Some(vm)) => cone_rules(vm, "ip saddr @contacted "),
        _ => String::new(),
    };
    let filter = match firewall {
        Firewall::Open => String::new(),
        Firewall::Filtering => format!(
            "  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname \"{WAN_IF}\" ct state established,related accept
    iifname \"{WAN_IF}\" ct status dnat accept
    iifname \"{WAN_IF}\" drop
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname \"{WAN_IF}\" ct state established,related accept
    iifname \"{WAN_IF}\" meta l4proto icmp accept
    iifname \"{WAN_IF}\" drop
  }}
"
        ),
    };
    format!(
        "table ip {NFT_TABLE}
delete table ip {NFT_TABLE}
table ip {NFT_TABLE} {{
  chain internet {{
    type filter hook prerouting priority raw; policy accept;
    iifname \"{WAN_IF}\" ip ttl <= {INTERNET_HOPS} drop
  }}
{dnat}  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"{WAN_IF}\" ip saddr {subnet} {masq}
  }}
{filter}}}
"
    )
}

impl Lab {
    /// Adds a NAT site: a router namespace (node `name`, 1–8 chars
    /// `[a-z0-9]`) with `wan` on the lab switch (next free 198.18.0.N/24
    /// address) and a LAN bridge `lan` holding the first host address of
    /// `subnet` (e.g. 192.168.2.1/24 for `"192.168.2.0/24"`; the subnet must
    /// lie in 10/8, 172.16/12 or 192.168/16). IP forwarding is on; nftables
    /// masquerades the subnet out of `wan` as `kind` says, forwards LAN →
    /// WAN, and lets only established/related traffic in from `wan` (plus
    /// ICMP to the router itself, so switch nodes can ping its WAN address).
    /// `lan_mtu` is the MTU of the LAN side links. No route to the LAN
    /// exists on the switch side.
    pub fn add_site(&self, name: &str, subnet: &str, kind: NatKind, lan_mtu: u16) -> Result<Site> {
        self.add_site_with(name, subnet, kind, Firewall::Filtering, lan_mtu)
    }

    /// [`Lab::add_site`] with the router's [`Firewall`] given.
    pub fn add_site_with(
        &self,
        name: &str,
        subnet: &str,
        kind: NatKind,
        firewall: Firewall,
        lan_mtu: u16,
    ) -> Result<Site> {
        self.check_new_node_name(name)?;
        let (network, prefix) = parse_subnet(subnet)?;
        if lan_mtu < 576 {
            bail!("lan_mtu {lan_mtu}: must be at least 576");
        }
        let subnet = format!("{network}/{prefix}");
        let gateway = Ipv4Addr::from(u32::from(network) + 1);
        let wan = self.next_underlay()?;
        let ns = self.node_ns(name);
        self.add_ns(&ns)?;
        let router = Node {
            name: name.to_string(),
            ns: ns.clone(),
        };
        self.connect_to_switch(name, &ns, WAN_IF)?;
        let wan_cidr = format!("{wan}/24");
        self.ip(&ns, &["addr", "add", &wan_cidr, "dev", WAN_IF])?;
        self.register_node(name, wan, Some(Role::Router));

        let mtu = lan_mtu.to_string();
        self.ip(
            &ns,
            &["link", "add", LAN_BRIDGE, "mtu", &mtu, "type", "bridge"],
        )?;
        let gw_cidr = format!("{gateway}/{prefix}");
        self.ip(&ns, &["addr", "add", &gw_cidr, "dev", LAN_BRIDGE])?;
        self.ip(&ns, &["link", "set", LAN_BRIDGE, "up"])?;
        self.run(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let site = Site {
            router,
            subnet,
            network,
            prefix,
            gateway,
            kind,
            firewall,
            lan_mtu,
            wan: Arc::new(Mutex::new(wan)),
            hosts: Arc::new(Mutex::new(Vec::new())),
        };
        self.load_rules(&site, None)?;
        Ok(site)
    }

    /// (Re)loads the router's nftables rules.
    fn load_rules(&self, site: &Site, vm: Option<Ipv4Addr>) -> Result<()> {
        let name = site.name();
        let rules = ruleset(site.kind, site.firewall, &site.subnet, vm);
        let rules = self.write_file(&format!("site-{name}.nft"), rules)?;
        let rules = rules.to_str().context("lab dir path is not UTF-8")?;
        self.run(&site.router, &["nft", "-f", rules])
            .with_context(|| format!("loading nftables rules of site {name}"))?;
        Ok(())
    }

    /// Adds a node inside `site`: a namespace (`name`, 1–8 chars `[a-z0-9]`,
    /// unique in the lab) with `eth0` on the site's LAN bridge, address
    /// `host` (with the subnet's prefix, e.g. 192.168.2.10/24; a host
    /// address of the subnet other than the router's), MTU `lan_mtu`, and a
    /// default route via the router. Works with every [`Lab`] method;
    /// [`Lab::addr`] returns its LAN address (`host`), [`Lab::set_link`]
    /// toggles its LAN link, [`Lab::set_addr`] refuses it.
    pub fn add_site_node(&self, site: &Site, name: &str, host: Ipv4Addr) -> Result<Node> {
        self.check_new_node_name(name)?;
        let mask = site.mask();
        let h = u32::from(host);
        if h & mask != u32::from(site.network) {
            bail!(
                "{host} is not in site {}'s subnet {}",
                site.name(),
                site.subnet
            );
        }
        if h & !mask == 0 || h & !mask == !mask {
            bail!(
                "{host} is the network or broadcast address of {}",
                site.subnet
            );
        }
        if host == site.gateway {
            bail!("{host} is site {}'s router address", site.name());
        }
        {
            let mut hosts = site.hosts.lock().unwrap_or_else(|e| e.into_inner());
            if hosts.contains(&host) {
                bail!("{host} is already used in site {}", site.name());
            }
            if site.kind.one_vm() && !hosts.is_empty() {
                bail!(
                    "site {} is a {:?} NAT: it holds one VM",
                    site.name(),
                    site.kind
                );
            }
            hosts.push(host);
        }
        let r = self.add_site_node_inner(site, name, host).and_then(|node| {
            if site.kind.one_vm() {
                self.load_rules(site, Some(host))?;
            }
            Ok(node)
        });
        if r.is_err() {
            site.hosts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|a| *a != host);
        }
        r
    }

    fn add_site_node_inner(&self, site: &Site, name: &str, host: Ipv4Addr) -> Result<Node> {
        let ns = self.node_ns(name);
        self.add_ns(&ns)?;
        let rns = &site.router.ns;
        let port = format!("l-{name}");
        let mtu = site.lan_mtu.to_string();
        // Both ends are created inside lab namespaces (router, node).
        self.ip(
            rns,
            &[
                "link", "add", &port, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "mtu",
                &mtu, "netns", &ns,
            ],
        )?;
        self.ip(rns, &["link", "set", &port, "master", LAN_BRIDGE, "up"])?;
        self.ip(&ns, &["link", "set", "eth0", "up"])?;
        let cidr = format!("{host}/{}", site.prefix);
        self.ip(&ns, &["addr", "add", &cidr, "dev", "eth0"])?;
        let gw = site.gateway.to_string();
        self.ip(&ns, &["route", "add", "default", "via", &gw, "dev", "eth0"])?;
        self.register_node(name, host, Some(Role::SiteHost));
        Ok(Node {
            name: name.to_string(),
            ns,
        })
    }

    /// Narrows the link between `site` and the switch to `mtu` (a VPN or
    /// PPPoE uplink, say): bigger packets are dropped on it both ways, and
    /// the site's hosts do not know, as their own links stay wider.
    pub fn set_site_wan_mtu(&self, site: &Site, mtu: u16) -> Result<()> {
        let mtu = mtu.to_string();
        self.ip(
            &site.router.ns,
            &["link", "set", "dev", WAN_IF, "mtu", &mtu],
        )
    }

    /// Gives a node of `site` a new LAN address, like a DHCP lease that
    /// changed: the old address goes, `new` (a free host address of the
    /// subnet) comes, and the default route via the router is put back.
    pub fn change_site_node_addr(&self, site: &Site, node: &Node, new: Ipv4Addr) -> Result<()> {
        let old = self.addr(node);
        {
            let mut hosts = site.hosts.lock().unwrap_or_else(|e| e.into_inner());
            if !hosts.contains(&old) {
                bail!("{} is not a node of site {}", node.name, site.name());
            }
            let h = u32::from(new);
            if h & site.mask() != u32::from(site.network)
                || new == site.gateway
                || hosts.contains(&new)
            {
                bail!(
                    "{new} is not a free host address of site {}'s subnet {}",
                    site.name(),
                    site.subnet
                );
            }
            hosts.retain(|a| *a != old);
            hosts.push(new);
        }
        self.ip(&node.ns, &["addr", "flush", "dev", "eth0"])?;
        let cidr = format!("{new}/{}", site.prefix);
        self.ip(&node.ns, &["addr", "add", &cidr, "dev", "eth0"])?;
        let gw = site.gateway.to_string();
        self.ip(
            &node.ns,
            &["route", "replace", "default", "via", &gw, "dev", "eth0"],
        )?;
        self.record_addr(node, new);
        Ok(())
    }

    /// Moves the site's router to the next free 198.18.0.N address (the old
    /// one is removed) and flushes its conntrack table (all NAT bindings),
    /// like a cloud NAT gateway failing over: LAN flows continue from the
    /// new address with fresh mappings. Returns the new address.
    pub fn change_site_wan(&self, site: &Site) -> Result<Ipv4Addr> {
        let new = self.next_underlay()?;
        self.change_site_wan_to(site, new)?;
        Ok(new)
    }

    /// [`Lab::change_site_wan`] to a given address (in 198.18.0.0/24, not
    /// used by another node).
    pub fn change_site_wan_to(&self, site: &Site, new: Ipv4Addr) -> Result<()> {
        let o = new.octets();
        if o[0] != 198 || o[1] != 18 || o[2] != 0 {
            bail!("{new}: a site's WAN address must be in 198.18.0.0/24 (the switch subnet)");
        }
        if self.addr_in_use(new) && self.addr(&site.router) != new {
            bail!("{new} is already used in the lab");
        }
        self.replace_addr(&site.router, new)?;
        *site.wan.lock().unwrap_or_else(|e| e.into_inner()) = new;
        self.flush_site_conntrack(site)
    }
}

mod conntrack;

#[cfg(test)]
mod tests;
