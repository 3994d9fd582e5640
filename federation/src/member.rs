//! What records say. A record's body is JSON of one of two kinds: the
//! authority's record (the network's name, overlay range and the
//! authority's revocations) and a member's own record (keys, endpoints,
//! host networks, MTU, address claim, certificate chain, revocations it
//! issued). Every list is bounded so a record stays under the body limit.

use crate::agreement::{Agreement, Ending};
use crate::cert::{Cert, Revocation, MAX_KEEP};
use crate::cidr::Cidr;
use crate::contact::MAX_CONTROL;
use crate::contact::{Contact, MAX_CONTACTS};
use crate::network::NetworkId;
use crate::record::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

/// Most data-plane endpoints a member may advertise.
pub const MAX_ENDPOINTS: usize = 16;
/// Most addresses an operator may give with `--advertise`.
pub const MAX_ADVERTISED: usize = 4;
/// Most host networks a member may advertise.
pub const MAX_HOST_NETWORKS: usize = 32;
/// Most revocations one record may carry.
pub const MAX_REVOCATIONS: usize = 64;
/// Most links one metrics summary may carry (a rotating sample of peers,
/// so a record's size does not grow with the network).
pub const MAX_LINKS: usize = 16;
/// Longest short text field in a metrics summary.
pub const MAX_LABEL: usize = 32;
/// Most self-described labels (`join --label k=v`) a member may carry.
pub const MAX_LABELS: usize = 8;
/// Most federation agreements one record may carry.
pub const MAX_AGREEMENTS: usize = 16;
/// Most endings of agreements one record may carry.
pub const MAX_ENDINGS: usize = 16;

/// True for a label a member may describe itself with: a key of 1–32
/// characters of `a-z`, `0-9`, `-`, `_` and `.`, and a value of at most 63
/// characters of those, upper case letters, `:` and `/` (provider, region,
/// zone: `provider=aws`, `zone=eu-west-1a`).
pub fn valid_label(key: &str, value: &str) -> bool {
    let key_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b);
    let value_ok = |b: u8| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b);
    (1..=32).contains(&key.len())
        && key.bytes().all(key_ok)
        && value.len() <= 63
        && value.bytes().all(value_ok)
}

/// Shortest interval between two metrics summaries of one node.
pub const METRICS_MIN_EVERY: std::time::Duration = std::time::Duration::from_secs(20);

/// Time each member adds to every member's metrics interval: a network of
/// N ≥ 10 members publishes N summaries every N × this, so each member
/// receives one summary every 2 s (~2.8 KB/s) whatever the size of the
/// network.
pub const METRICS_EVERY_PER_MEMBER: std::time::Duration = std::time::Duration::from_secs(2);

/// How often each member of a network of `members` publishes its metrics
/// summary. Every summary reaches every member, so the interval grows with
/// the network ([`METRICS_EVERY_PER_MEMBER`] per member, at least
/// [`METRICS_MIN_EVERY`]): the bytes each node receives per second are flat
/// from 10 members on instead of growing with the number of members; the
/// price is that others' view of a member's metrics is up to N × 2 s old
/// (2 min at 60 members; its own view is live).
pub fn metrics_interval(members: usize) -> std::time::Duration {
    METRICS_MIN_EVERY.max(METRICS_EVERY_PER_MEMBER * u32::try_from(members).unwrap_or(u32::MAX))
}

/// Bytes a tunnelled packet gains on the wire: IPv6 (40) + UDP (8) +
/// WireGuard data header and tag (32). IPv4 needs 20 less, which leaves
/// room for a relay envelope (12): one overlay MTU valid on both.
pub const TUNNEL_OVERHEAD: u16 = 80;
/// The overhead where some member has an IPv6 endpoint: a relayed packet
/// may then travel over IPv6 with its envelope (80 + 12).
pub const TUNNEL_OVERHEAD_IPV6: u16 = TUNNEL_OVERHEAD + 12;

/// The tunnel overhead the overlay MTU must leave room for in a network of
/// `members`.
pub fn tunnel_overhead(members: &[&MemberRecord]) -> u16 {
    let ipv6 = members
        .iter()
        .flat_map(|m| m.endpoints.iter().chain(&m.reflexive).chain(&m.advertised))
        .any(SocketAddr::is_ipv6);
    if ipv6 {
        TUNNEL_OVERHEAD_IPV6
    } else {
        TUNNEL_OVERHEAD
    }
}

/// The overlay MTU of a network whose default is `default` and whose
/// members are `members`: the smallest host MTU or probed path MTU any
/// member reports, minus the tunnel overhead, so no tunnelled packet is
/// ever fragmented or dropped on the smallest link or path; and the
/// sentence that says why.
pub fn overlay_mtu(default: u16, members: &[&MemberRecord]) -> (u16, String) {
    let overhead = tunnel_overhead(members);
    let limits = members.iter().flat_map(|m| {
        [
            m.host_mtu.map(|v| (v, m.name.as_str(), "host MTU")),
            m.path_mtu.map(|v| (v, m.name.as_str(), "probed path MTU")),
        ]
        .into_iter()
        .flatten()
    });
    match limits.min_by_key(|(v, _, _)| *v) {
        Some((m, name, what)) if m.saturating_sub(overhead) < default => {
            let mtu = m.saturating_sub(overhead).max(576);
            (mtu, format!("the smallest {what} in the network is {m} ({name}); minus {overhead} bytes of tunnel overhead"))
        }
        _ => (default, format!("the network's default; every member's host and path MTU leaves room for it plus {overhead} bytes of tunnel overhead")),
    }
}

/// Reads QUIC endpoints written as `IP:PORT`, or as the libp2p multiaddr
/// text (`/ip4/IP/udp/PORT/quic-v1`) records and tokens of earlier versions
/// carry, so their state directories still load.
pub fn quic_endpoints<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            parse_quic_endpoint(t).ok_or_else(|| {
                serde::de::Error::custom(format!("{t:?} is not a control endpoint (IP:PORT)"))
            })
        })
        .collect()
}

fn parse_quic_endpoint(text: &str) -> Option<SocketAddr> {
    if let Ok(a) = text.parse() {
        return Some(a);
    }
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6", ip, "udp", port, "quic-v1"] => {
            Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
        }
        _ => None,
    }
}

/// The body of a signed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// One body per member is held; boxing would only add an indirection.
#[allow(clippy::large_enum_variant)]
pub enum Body {
    /// Written by the network's authority key.
    Authority(AuthorityRecord),
    /// Written by a member about itself.
    Member(MemberRecord),
}

/// The authority's record: what the network is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityRecord {
    /// The network (must match the authority's key).
    pub network: NetworkId,
    /// Human name of the network.
    pub name: String,
    /// The overlay range every member's address lies in.
    pub cidr: Cidr,
    /// The organisation's address sub-block inside `cidr`. With one
    /// organisation it is the whole range; federated organisations each get
    /// their own, and their members' addresses must lie in it.
    pub block: Cidr,
    /// Default overlay MTU.
    pub mtu: u16,
    /// Nodes the authority revoked.
    #[serde(default)]
    pub revocations: Vec<Revocation>,
}

/// A member's own record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The network.
    pub network: NetworkId,
    /// Node name (as certified).
    pub name: String,
    /// Certificates from the authority down to this node.
    pub chain: Vec<Cert>,
    /// Data-plane UDP endpoints on the host's own addresses.
    pub endpoints: Vec<SocketAddr>,
    /// Data-plane endpoints as other members see them (behind a NAT, the
    /// NAT's public address and port), learned from peers.
    #[serde(default)]
    pub reflexive: Vec<SocketAddr>,
    /// Data-plane endpoints the operator says this node is reached at from
    /// outside (`--advertise`: the public address of a cloud's 1:1 NAT).
    /// Peers prefer them to every other endpoint but a same-site one.
    #[serde(default)]
    pub advertised: Vec<SocketAddr>,
    /// Control-plane (QUIC over UDP) endpoints on the host's addresses.
    #[serde(deserialize_with = "quic_endpoints")]
    pub control: Vec<SocketAddr>,
    /// Networks the host is attached to (for overlap checks).
    pub host_networks: Vec<Cidr>,
    /// The MTU of this node's overlay interface.
    pub mtu: u16,
    /// The smallest MTU of the host links its endpoints are on.
    #[serde(default)]
    pub host_mtu: Option<u16>,
    /// The largest underlay packet some path from this node carries, when
    /// probing found one smaller than its host MTU (a narrower link on
    /// the way).
    #[serde(default)]
    pub path_mtu: Option<u16>,
    /// The overlay address this node claims.
    pub address: Ipv4Addr,
    /// When the claim was made (ms since the Unix epoch); earlier wins.
    pub claimed_ms: u64,
    /// True if the user pinned the address.
    #[serde(default)]
    pub pinned: bool,
    /// True if this node does not relay for others (`--no-relay`).
    #[serde(default)]
    pub no_relay: bool,
    /// Set when the node left the network on purpose (ms since the epoch).
    #[serde(default)]
    pub left_ms: Option<u64>,
    /// Nodes this member revoked.
    #[serde(default)]
    pub revocations: Vec<Revocation>,
    /// The node's latest measurements, published at a bounded rate.
    #[serde(default)]
    pub metrics: Option<Metrics>,
    /// What the node says about itself (provider, region, zone): shown,
    /// never used for policy (tags in certificates are).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Federation agreements of this network that this member spreads
    /// (the member that accepted one, or took it in for the offering
    /// network): each signed by both authorities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agreements: Vec<Agreement>,
    /// Endings of agreements this member spreads, each signed by one side's
    /// authority.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endings: Vec<Ending>,
    /// Members of federated networks and where to reach them (what the
    /// other network gave when the agreement was made): where an ending
    /// is delivered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partner_contacts: Vec<PartnerContacts>,
}

/// Members of another network, as it gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerContacts {
    /// The other network.
    pub network: NetworkId,
    /// Some of its members and their control endpoints.
    pub members: Vec<Contact>,
}

/// A node's own measurements as published in its record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// When they were taken (ms since the Unix epoch).
    pub sampled_ms: u64,
    /// Agent uptime in seconds.
    pub uptime_s: u64,
    /// CPU use of the agent over the last interval, in thousandths of a core.
    pub cpu_permille: u32,
    /// Resident memory of the agent in KiB.
    pub rss_kb: u64,
    /// Agent version.
    pub version: String,
    /// A sample of this node's links to its peers.
    pub links: Vec<Link>,
}

/// One measured link from the publishing node to `peer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The peer.
    pub peer: NodeId,
    /// Smallest round-trip time in the window (µs); `None` if no reply.
    pub rtt_min_us: Option<u32>,
    /// Mean round-trip time in the window (µs); `None` if no reply.
    pub rtt_avg_us: Option<u32>,
    /// Lost probes in the window, in thousandths.
    pub loss_permille: u16,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
    /// Seconds since the last handshake, if any.
    pub handshake_age_s: Option<u64>,
    /// `direct` or `relay`.
    pub path: String,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON of a known kind.
    #[error("record body is not valid: {0}")]
    Malformed(String),
    /// A list is longer than its bound.
    #[error("record body exceeds a limit: {0}")]
    TooMany(&'static str),
}

impl Body {
    /// Parses and bounds-checks a body.
    pub fn parse(bytes: &[u8]) -> Result<Body, BodyError> {
        let body: Body =
            serde_json::from_slice(bytes).map_err(|e| BodyError::Malformed(e.to_string()))?;
        body.check_bounds()?;
        Ok(body)
    }

    /// The JSON bytes that get signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn check_bounds(&self) -> Result<(), BodyError> {
        let revocations = match self {
            Body::Authority(a) => &a.revocations,
            Body::Member(m) => {
                if m.endpoints.len() > MAX_ENDPOINTS || m.reflexive.len() > MAX_ENDPOINTS {
                    return Err(BodyError::TooMany("endpoints"));
                }
                if m.advertised.len() > MAX_ADVERTISED {
                    return Err(BodyError::TooMany("advertised endpoints"));
                }
                if m.control.len() > MAX_CONTROL {
                    return Err(BodyError::TooMany("control addresses"));
                }
                if m.host_networks.len() > MAX_HOST_NETWORKS {
                    return Err(BodyError::TooMany("host networks"));
                }
                if m.labels.len() > MAX_LABELS || m.labels.iter().any(|(k, v)| !valid_label(k, v)) {
                    return Err(BodyError::TooMany("labels"));
                }
                if m.agreements.len() > MAX_AGREEMENTS || m.endings.len() > MAX_ENDINGS {
                    return Err(BodyError::TooMany("federation agreements"));
                }
                if m.partner_contacts.len() > MAX_AGREEMENTS
                    || m.partner_contacts.iter().any(|p| {
                        p.members.len() > MAX_CONTACTS + 1
                            || p.members.iter().any(|c| c.addrs.len() > MAX_CONTROL)
                    })
                {
                    return Err(BodyError::TooMany("partner contacts"));
                }
                if let Some(x) = &m.metrics {
                    if x.links.len() > MAX_LINKS
                        || x.version.len() > MAX_LABEL
                        || x.links.iter().any(|l| l.path.len() > MAX_LABEL)
                    {
                        return Err(BodyError::TooMany("metrics"));
                    }
                }
                &m.revocations
            }
        };
        if revocations.len() > MAX_REVOCATIONS
            || revocations.iter().any(|r| r.keep.len() > MAX_KEEP)
        {
            return Err(BodyError::TooMany("revocations"));
        }
        Ok(())
    }
}

#[cfg(any(test, feature = "test-support"))]
impl MemberRecord {
    /// A member record with nothing but `name` set, for tests to fill in
    /// (feature `test-support` makes it available to other crates' tests).
    pub fn example(name: &str) -> Self {
        MemberRecord {
            network: NetworkId([0; 16]),
            name: name.into(),
            chain: vec![],
            endpoints: vec![],
            reflexive: vec![],
            advertised: vec![],
            control: vec![],
            host_networks: vec![],
            mtu: 1420,
            host_mtu: None,
            path_mtu: None,
            address: Ipv4Addr::new(100, 64, 0, 1),
            claimed_ms: 0,
            pinned: false,
            no_relay: false,
            left_ms: None,
            revocations: vec![],
            metrics: None,
            labels: BTreeMap::new(),
            agreements: vec![],
            endings: vec![],
            partner_contacts: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_mtu_fits_the_narrowest_host_or_path_and_ipv6_relays() {
        let mut a = record();
        let mut b = record();
        b.name = "b".into();
        let (mtu, why) = overlay_mtu(1420, &[&a, &b]);
        assert_eq!(mtu, 1420, "{why}");
        a.host_mtu = Some(1460);
        b.host_mtu = Some(9001);
        let (mtu, why) = overlay_mtu(1420, &[&a, &b]);
        assert_eq!(mtu, 1380);
        assert!(why.contains("host MTU") && why.contains("(a)"), "{why}");
        b.path_mtu = Some(1400);
        let (mtu, why) = overlay_mtu(1420, &[&a, &b]);
        assert_eq!(mtu, 1320);
        assert!(
            why.contains("probed path MTU in the network is 1400 (b)"),
            "{why}"
        );
        // An IPv6 endpoint anywhere: room for a relay envelope over IPv6.
        b.reflexive = vec!["[2001:db8::2]:51820".parse().unwrap()];
        assert_eq!(overlay_mtu(1420, &[&a, &b]).0, 1308);
    }

    fn record() -> MemberRecord {
        MemberRecord {
            network: NetworkId([1; 16]),
            endpoints: vec!["198.18.0.1:51820".parse().unwrap()],
            control: vec!["198.18.0.1:51821".parse().unwrap()],
            host_networks: vec!["198.18.0.0/24".parse().unwrap()],
            claimed_ms: 5,
            ..MemberRecord::example("a")
        }
    }

    #[test]
    fn control_endpoints_of_earlier_versions_still_read() {
        let mut v = serde_json::to_value(record()).unwrap();
        v["control"] =
            serde_json::json!(["/ip4/198.18.0.1/udp/51821/quic-v1", "[2001:db8::1]:51821"]);
        let m: MemberRecord = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            m.control,
            vec![
                "198.18.0.1:51821".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:51821".parse().unwrap()
            ]
        );
        v["control"] = serde_json::json!(["/dns4/example/tcp/1"]);
        assert!(serde_json::from_value::<MemberRecord>(v).is_err());
    }

    #[test]
    fn bodies_roundtrip_and_bounds_hold() {
        let m = record();
        let b = Body::Member(m.clone());
        assert_eq!(Body::parse(&b.to_bytes()), Ok(b));
        let mut many = m;
        many.endpoints = vec!["198.18.0.1:1".parse().unwrap(); MAX_ENDPOINTS + 1];
        assert_eq!(
            Body::parse(&Body::Member(many).to_bytes()),
            Err(BodyError::TooMany("endpoints"))
        );
        assert!(matches!(Body::parse(b"{}"), Err(BodyError::Malformed(_))));
        assert!(matches!(Body::parse(b"\xff"), Err(BodyError::Malformed(_))));
    }
}
