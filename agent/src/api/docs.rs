//! The documents the agent answers with (what `--json` prints). Field
//! names are the stable JSON schema README documents.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Milliseconds of `d` (saturating), as documents give durations.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `status`: this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// One sentence: healthy, or what is wrong and what to do.
    pub verdict: String,
    /// False when a human is needed (`status --check` exits 1).
    pub healthy: bool,
    /// Node name.
    pub name: String,
    /// Node id (hex).
    pub id: String,
    /// Overlay address.
    pub address: String,
    /// `member`, or `revoked`, `expired` or `left`: then this node admits,
    /// invites and routes for nobody.
    pub standing: String,
    /// Network name.
    pub network: Option<String>,
    /// Network id.
    pub network_id: String,
    /// Overlay range.
    pub cidr: Option<String>,
    /// Overlay MTU.
    pub mtu: u16,
    /// Why that MTU.
    pub mtu_reason: String,
    /// Smallest MTU of this host's links.
    pub host_mtu: Option<u16>,
    /// Narrowest path probing found.
    pub path_mtu: Option<u16>,
    /// What the data plane pads to and sizes its buffers for.
    pub data_plane_mtu: usize,
    /// TUN interface.
    pub interface: String,
    /// WireGuard UDP address.
    pub listen: String,
    /// Control-plane UDP address.
    pub control_listen: String,
    /// Data-plane endpoints on the host's addresses.
    pub endpoints: Vec<String>,
    /// Where members see this node.
    pub reflexive: Vec<String>,
    /// What `--advertise` says (`IP`, `IP:PORT`, `auto`).
    pub advertise: Vec<String>,
    /// The data-plane endpoints advertised (what `advertise` stands for).
    pub advertised: Vec<String>,
    /// Control-plane endpoints, in the order tokens and peers try them.
    pub control: Vec<String>,
    /// This node's record version.
    pub version: u64,
    /// Active members.
    pub members: usize,
    /// Control-plane connections.
    pub connected: usize,
    /// Holds the network's authority key.
    pub authority: bool,
    /// Records refused, by reason.
    pub rejected_records: BTreeMap<String, u64>,
    /// What non-members sent that was refused, by kind.
    pub refused_outsiders: BTreeMap<String, u64>,
    /// Relaying for others.
    pub relay: Relay,
    /// Endpoint echo answered and dropped.
    pub echo: Echo,
    /// Control-plane traffic.
    pub gossip: Gossip,
}

/// `status.relay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    /// Whether this node relays for others.
    pub serves: bool,
    /// Bytes relayed for others.
    pub relayed_bytes: u64,
    /// Of those, bytes relayed under each federation agreement (by the
    /// partner network's name).
    #[serde(default)]
    pub by_partner: BTreeMap<String, u64>,
    /// Envelopes refused.
    pub refused: u64,
    /// Of those, for pairs nothing connects (no agreement in force, a lent
    /// relay as an end), and past the relay's bounds (pairs, bytes per
    /// second).
    #[serde(default)]
    pub refused_unconnected: u64,
    /// Refused past the bounds.
    #[serde(default)]
    pub refused_over_bounds: u64,
}

/// `status.echo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// Questions answered.
    pub answered: u64,
    /// Messages dropped.
    pub dropped: u64,
}

/// `status.gossip`: control-plane messages and payload bytes each way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip {
    /// Messages received.
    pub in_messages: u64,
    /// Bytes received.
    pub in_bytes: u64,
    /// Messages sent.
    pub out_messages: u64,
    /// Bytes sent.
    pub out_bytes: u64,
}

/// One item of `members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Name.
    pub name: String,
    /// Id (hex).
    pub id: String,
    /// Overlay address.
    pub address: String,
    /// Its data-plane endpoints on its host's own addresses.
    pub endpoints: Vec<String>,
    /// Where the other members see its data plane (behind a NAT, the
    /// NAT's address and port).
    #[serde(default)]
    pub seen_at: Vec<String>,
    /// Where its operator says it is reached from outside (`--advertise`).
    #[serde(default)]
    pub advertised: Vec<String>,
    /// alive, suspect, down, left or revoked.
    pub state: String,
    /// When this node last heard from it.
    pub last_seen_ms: Option<u64>,
    /// Its record's version.
    pub version: u64,
    /// True for this node.
    #[serde(rename = "self")]
    pub me: bool,
    /// The name of the member's network (its organisation).
    pub org: String,
    /// Tags its admitter wrote into its certificate.
    pub tags: Vec<String>,
    /// What it says about itself (`join --label`).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One item of `peers`: this node's tunnel to a member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    /// Name.
    pub name: String,
    /// Id (hex).
    pub id: String,
    /// Overlay address.
    pub address: String,
    /// Where its datagrams go (a virtual endpoint when relayed).
    pub endpoint: Option<String>,
    /// `direct` or `relay`.
    pub path: String,
    /// The relaying member's name.
    pub relay: Option<String>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Datagrams received.
    pub rx_packets: u64,
    /// Datagrams sent.
    pub tx_packets: u64,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Since the last handshake.
    pub last_handshake_ms: Option<u64>,
    /// Average RTT of the last probes.
    pub rtt_ms: Option<f64>,
    /// Smallest RTT of the last probes.
    pub rtt_min_ms: Option<f64>,
    /// Share of the last probes lost.
    pub loss: f64,
}

/// `metrics`: the whole network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Every member's published summary.
    pub nodes: Vec<NodeMetrics>,
    /// Every measured link.
    pub rtt: Vec<LinkMetrics>,
}

/// One member in `metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMetrics {
    /// Name.
    pub name: String,
    /// Id (hex).
    pub id: String,
    /// Overlay address.
    pub address: String,
    /// CPU share of its agent.
    pub cpu_pct: Option<f64>,
    /// Resident memory of its agent.
    pub rss_kb: Option<u64>,
    /// Its agent's uptime.
    pub uptime_s: Option<u64>,
    /// Its agent's version.
    pub version: Option<String>,
    /// Age of the summary.
    pub sampled_ago_ms: Option<u64>,
}

/// One measured link in `metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkMetrics {
    /// Measuring member.
    pub from: String,
    /// Measured member.
    pub to: String,
    /// Average RTT.
    pub rtt_ms: Option<f64>,
    /// Smallest RTT.
    pub rtt_min_ms: Option<f64>,
    /// Share lost.
    pub loss: f64,
    /// `direct` or `relay`.
    pub path: String,
}

/// `invite`: a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The token text.
    pub token: String,
    /// Its expiry (ms since the epoch).
    pub expires_ms: u64,
    /// How many joins it allows.
    pub uses: u32,
}

/// `federate offer`: the offer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The token text (one line).
    pub token: String,
    /// This network's authority fingerprint, for the other side to check
    /// out of band.
    pub fingerprint: String,
    /// Its expiry (ms since the epoch).
    pub expires_ms: u64,
}

/// `federate accept`, first step: the agreement signed by this network's
/// authority, for the CLI to hand to a member of the offering network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// The agreement.
    pub agreement: federation::agreement::Agreement,
    /// Members of the offering network and their control endpoints.
    pub contacts: Vec<federation::contact::Contact>,
    /// Members of this network, for the offering network to reach it.
    pub ours: Vec<federation::contact::Contact>,
}

/// `federate end`: the ending, signed and carried here, for the CLI to
/// hand to the other network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// The agreement as it stands now.
    pub federation: Federation,
    /// The ending.
    pub ending: federation::agreement::Ending,
    /// Members of the other network, where it was given to reach them.
    pub contacts: Vec<federation::contact::Contact>,
}

/// One item of `federate list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Federation {
    /// The other network's name.
    pub org: String,
    /// The other network's id (hex).
    pub network_id: String,
    /// The other network's range.
    pub cidr: String,
    /// What this network exposes to it (`all` or tags).
    pub exposes: String,
    /// What it exposes to this network.
    pub exposed_to_us: String,
    /// The tags of the members this network lends it as relays (empty:
    /// none).
    #[serde(default)]
    pub lends: String,
    /// The tags of the members it lends this network as relays.
    #[serde(default)]
    pub lent_to_us: String,
    /// `active` or `ended`.
    pub state: String,
    /// The other authority's fingerprint.
    pub fingerprint: String,
    /// The agreement's id (hex).
    pub id: String,
    /// When it was accepted (ms since the epoch).
    pub accepted_ms: u64,
    /// When it was ended, if it was.
    pub ended_ms: Option<u64>,
    /// Its active hosts this node holds (those exposed to this network,
    /// not its lent relays; 0 on a node this network does not expose to
    /// it).
    #[serde(default)]
    pub members: usize,
}

/// `tag`: the member and the tags its certificate now carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tagged {
    /// The member's name.
    pub name: String,
    /// Its tags.
    pub tags: Vec<String>,
}

/// `revoke`: who was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// The node id (hex).
    pub revoked: String,
}

/// `leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// Always true.
    pub left: bool,
}

/// `host_networks`: every member's host networks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostNetworks {
    /// The networks, sorted.
    pub host_networks: Vec<federation::Cidr>,
}

/// A text body (Prometheus exposition, the mesh page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    /// The text.
    pub text: String,
}

/// `show` in WireGuard-file mode: the interface, its peers and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Show {
    /// Interface name.
    pub interface: String,
    /// Our public key (base64).
    pub public_key: String,
    /// Bound UDP port.
    pub listen_port: u16,
    /// Overlay MTU.
    pub mtu: u16,
    /// TSO/GRO offloads on.
    pub offload: bool,
    /// The peers.
    pub peers: Vec<ShowPeer>,
    /// Traffic and drop counters.
    pub counters: ShowCounters,
}

/// A peer in [`Show`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowPeer {
    /// Its public key (base64).
    pub public_key: String,
    /// Its endpoint.
    pub endpoint: Option<String>,
    /// Its allowed IPs.
    pub allowed_ips: Vec<String>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Since the last handshake.
    pub last_handshake_ms: Option<u64>,
    /// Persistent keepalive.
    pub persistent_keepalive_s: Option<u64>,
}

/// Counters in [`Show`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowCounters {
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
    /// Initiations sent.
    pub initiations_sent: u64,
    /// Cookie replies sent.
    pub cookie_replies: u64,
    /// Drops in all.
    pub dropped_total: u64,
    /// Drops by reason.
    pub dropped: BTreeMap<String, u64>,
}
