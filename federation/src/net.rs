//! The libp2p shell: carries the core's records and messages between
//! members over QUIC. gossipsub (one topic per network, strict validation:
//! every message is signed by its sender and checked by the core before it
//! travels further) spreads new records; request-response carries joining
//! and anti-entropy; identify tells each node how others see it.
//!
//! The shell decides nothing: it turns swarm events into [`Event`]s for the
//! agent's control loop and executes its commands. It does enforce, at the
//! gossip layer, the member list it is given ([`Shell::set_members`]):
//! gossipsub's peer scoring keeps every other peer below its graylist
//! threshold from the moment its connection is up, so no record is
//! published, forwarded or offered to it and nothing it gossips is read.
//! libp2p's types stop here: the rest of the agent sees node ids, socket
//! addresses and the opaque [`RequestId`] and [`GossipTicket`].

use crate::network::NetworkId;
use crate::protocol::{Request, Response};
use crate::record::NodeId;
use futures::StreamExt;
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::gossipsub::{
    self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId, PeerScoreParams,
    PeerScoreThresholds,
};
use libp2p::identity::{self, Keypair};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Largest gossip message (one record plus framing).
const MAX_GOSSIP: usize = 64 * 1024;
/// Largest request or response (a join answer carries the whole state).
const MAX_MESSAGE: u64 = 32 * 1024 * 1024;
/// A QUIC connection silent this long is dead (keepalives every quarter).
const QUIC_IDLE_TIMEOUT_MS: u32 = 4000;
/// How long a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections others open to us, at most: members keep about 24 each
/// (spread at random), joiners one; more is someone flooding us.
const MAX_INCOMING: u32 = 256;
/// Incoming connections still in their handshake, at most.
const MAX_PENDING_INCOMING: u32 = 64;
/// Connections with one peer, at most (two dials crossing make two).
const MAX_PER_PEER: u32 = 3;
/// How long gossip keeps a peer it turned down out of its mesh. Short:
/// a node just admitted is turned down until its record arrives, which
/// takes a fraction of a second.
const PRUNE_BACKOFF: Duration = Duration::from_secs(5);
/// Members each member forwards gossip to (gossipsub's mesh degree D).
const MESH_N: usize = 3;
/// Gossipsub application score of a member: far above any penalty.
const MEMBER_SCORE: f64 = 1000.0;
/// Gossipsub application score of anyone else: far below the graylist
/// threshold, so nothing is sent to it or read from it.
const OUTSIDER_SCORE: f64 = -1000.0;

/// Why the shell could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The identity seed was refused by libp2p.
    #[error("invalid node identity: {0}")]
    Identity(String),
    /// The swarm could not be built.
    #[error("cannot start the control plane: {0}")]
    Build(String),
    /// The listen address is unusable.
    #[error("cannot listen for the control plane on {addr}: {reason}; pick another --control-listen or stop the program that uses it")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    gossipsub: gossipsub::Behaviour,
    rr: request_response::cbor::Behaviour<Request, Response>,
    identify: identify::Behaviour,
}

/// Which request an answer or failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(OutboundRequestId);

/// A gossiped message awaiting its verdict ([`Shell::validated`]).
#[derive(Debug, Clone)]
pub struct GossipTicket {
    id: MessageId,
    source: PeerId,
}

/// Where to send the answer to a request ([`Shell::respond`]).
#[derive(Debug)]
pub struct Reply(ResponseChannel<Response>);

/// Something that happened on the control plane.
#[derive(Debug)]
pub enum Event {
    /// A gossiped record, to be checked and reported with [`Shell::validated`].
    Gossip {
        /// The node that forwarded it.
        source: NodeId,
        /// For the verdict.
        ticket: GossipTicket,
        /// The encoded record.
        data: Vec<u8>,
    },
    /// A member asks something; answer with [`Shell::respond`].
    Request {
        /// Who asks (authenticated by QUIC's TLS).
        from: NodeId,
        /// What.
        request: Request,
        /// Where the answer goes.
        reply: Reply,
    },
    /// The answer to one of our requests.
    Response {
        /// Which request.
        id: RequestId,
        /// Who answered.
        from: NodeId,
        /// The answer.
        response: Response,
    },
    /// One of our requests failed (unreachable, timeout, refused stream).
    Failed {
        /// Which request.
        id: RequestId,
        /// To whom.
        peer: NodeId,
        /// Why.
        error: String,
    },
    /// A first connection to a node is up (with the address we dialed, if
    /// we dialed).
    Connected(NodeId, Option<SocketAddr>),
    /// The last connection to a node closed.
    Disconnected(NodeId),
    /// A peer told us where it sees our control endpoint (believe it only
    /// of members).
    Observed(NodeId, SocketAddr),
    /// We listen on this endpoint.
    Listening(SocketAddr),
}

/// A running libp2p swarm for one network.
pub struct Shell {
    swarm: Swarm<Behaviour>,
    topic: IdentTopic,
    /// Peers allowed into gossip (members of the network).
    members: HashSet<PeerId>,
}

/// The QUIC multiaddr of a UDP endpoint.
pub fn multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(match addr.ip() {
            IpAddr::V4(ip) => Protocol::Ip4(ip),
            IpAddr::V6(ip) => Protocol::Ip6(ip),
        })
        .with(Protocol::Udp(addr.port()))
        .with(Protocol::QuicV1)
}

/// The UDP endpoint of a QUIC multiaddr (`None` for anything else).
pub fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => IpAddr::V6(ip),
        _ => return None,
    };
    match parts.next()? {
        Protocol::Udp(port) => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

/// The libp2p peer id of a node.
pub fn peer_id(node: &NodeId) -> Option<PeerId> {
    let key = identity::ed25519::PublicKey::try_from_bytes(&node.0).ok()?;
    Some(identity::PublicKey::from(key).to_peer_id())
}

/// The node id behind a libp2p peer id (ed25519 peer ids inline the key).
pub fn node_id(peer: &PeerId) -> Option<NodeId> {
    let key = identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()?;
    Some(NodeId(key.try_into_ed25519().ok()?.to_bytes()))
}

impl Shell {
    /// A member's swarm: the node's ed25519 `seed`, the gossip topic of
    /// `network`, listening for QUIC on UDP endpoint `listen`.
    pub fn member(
        seed: [u8; 32],
        network: &NetworkId,
        listen: SocketAddr,
    ) -> Result<Shell, NetError> {
        Self::start(seed, network, Some(listen), true)
    }

    /// A client's swarm (a node joining): requests only, no gossip. Were
    /// it to subscribe, members would turn its gossip down (it is no
    /// member yet) and back off from its id for [`PRUNE_BACKOFF`], which
    /// would slow gossip to its agent once it is one.
    pub fn client(seed: [u8; 32], network: &NetworkId) -> Result<Shell, NetError> {
        Self::start(seed, network, None, false)
    }

    fn start(
        seed: [u8; 32],
        network: &NetworkId,
        listen: Option<SocketAddr>,
        gossip: bool,
    ) -> Result<Shell, NetError> {
        let mut seed = seed;
        let keypair = Keypair::ed25519_from_bytes(&mut seed)
            .map_err(|e| NetError::Identity(e.to_string()))?;
        let topic = IdentTopic::new(format!("cladnet/{network}/records"));
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_quic_config(|mut c| {
                // libp2p's QUIC does not migrate connections: after a NAT
                // changes its address the connection is dead. Notice it
                // within seconds so the node redials and re-learns its
                // public endpoint quickly.
                c.max_idle_timeout = QUIC_IDLE_TIMEOUT_MS;
                c.keep_alive_interval = Duration::from_millis(u64::from(QUIC_IDLE_TIMEOUT_MS) / 4);
                c
            })
            .with_behaviour(|key| {
                let config = gossipsub::ConfigBuilder::default()
                    .validation_mode(gossipsub::ValidationMode::Strict)
                    .validate_messages()
                    .max_transmit_size(MAX_GOSSIP)
                    .heartbeat_interval(Duration::from_millis(700))
                    // Every member is connected to every other: a record
                    // published to all of them (flood publish) and then
                    // forwarded along a mesh of 6-12 arrived 8-14 times at
                    // each member. A mesh of 3-6 and no flood publish
                    // still reaches everyone in ~log3(N) hops of
                    // milliseconds; anti-entropy repairs the rest.
                    .flood_publish(false)
                    .mesh_n(MESH_N)
                    .mesh_n_low(MESH_N - 1)
                    .mesh_n_high(2 * MESH_N)
                    .mesh_outbound_min(1)
                    .gossip_lazy(MESH_N)
                    .prune_backoff(PRUNE_BACKOFF)
                    .graft_flood_threshold(PRUNE_BACKOFF / 2)
                    .message_id_fn(|m| {
                        MessageId::from(crate::protocol::gossip_id(&m.data).to_vec())
                    })
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut gossipsub =
                    gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config)?;
                // Scores only separate members from the rest: no topic
                // scoring, and no penalty for sharing an address (VMs
                // behind one NAT do).
                let scores = PeerScoreParams {
                    app_specific_weight: 1.0,
                    ip_colocation_factor_weight: 0.0,
                    ..PeerScoreParams::default()
                };
                gossipsub.with_peer_score(scores, PeerScoreThresholds::default())?;
                let codec = request_response::cbor::codec::Codec::default()
                    .set_request_size_maximum(MAX_MESSAGE)
                    .set_response_size_maximum(MAX_MESSAGE);
                let rr = request_response::Behaviour::with_codec(
                    codec,
                    [(
                        StreamProtocol::new("/cladnet/sync/1"),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
                );
                let identify = identify::Behaviour::new(identify::Config::new(
                    "/cladnet/1".into(),
                    key.public(),
                ));
                let limits = connection_limits::Behaviour::new(
                    ConnectionLimits::default()
                        .with_max_established_incoming(Some(MAX_INCOMING))
                        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                        .with_max_established_per_peer(Some(MAX_PER_PEER)),
                );
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                    limits,
                    gossipsub,
                    rr,
                    identify,
                })
            })
            .map_err(|e| NetError::Build(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        if gossip {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&topic)
                .map_err(|e| NetError::Build(e.to_string()))?;
        }
        if let Some(addr) = listen {
            swarm
                .listen_on(multiaddr(addr))
                .map_err(|e| NetError::Listen {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
        }
        Ok(Shell {
            swarm,
            topic,
            members: HashSet::new(),
        })
    }

    /// Sets who may take part in gossip: these nodes, and nobody else.
    pub fn set_members(&mut self, members: impl IntoIterator<Item = NodeId>) {
        let members: HashSet<PeerId> = members.into_iter().filter_map(|m| peer_id(&m)).collect();
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            if members.contains(&peer) != self.members.contains(&peer) {
                self.score(&peer, members.contains(&peer));
            }
        }
        self.members = members;
    }

    fn score(&mut self, peer: &PeerId, member: bool) {
        let score = if member { MEMBER_SCORE } else { OUTSIDER_SCORE };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(peer, score);
    }

    /// Dials `node` at `addrs` unless already connected.
    pub fn dial(&mut self, node: &NodeId, addrs: &[SocketAddr]) {
        if let Some(peer) = peer_id(node) {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs.iter().copied().map(multiaddr).collect())
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(peer = %node.short(), "dial not started: {e}");
            }
        }
    }

    /// Dials an address whose node is not known yet; the node shows up in
    /// [`Event::Connected`] with this address.
    pub fn dial_address(&mut self, addr: SocketAddr) {
        if let Err(e) = self.swarm.dial(multiaddr(addr)) {
            tracing::debug!("dial not started: {e}");
        }
    }

    /// Closes every connection and waits (up to `within`) until the peers
    /// were told, so none of them keeps a dead connection to this node's id
    /// (a client exiting right after must not leave its id half-connected
    /// while its agent connects).
    pub async fn close(mut self, within: Duration) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
        let _ = tokio::time::timeout(within, async {
            while self.swarm.connected_peers().next().is_some() {
                self.swarm.next().await;
            }
        })
        .await;
    }

    /// Closes every connection to `node`.
    pub fn disconnect(&mut self, node: &NodeId) {
        if let Some(peer) = peer_id(node) {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// True if at least one connection to `node` is up.
    pub fn is_connected(&self, node: &NodeId) -> bool {
        peer_id(node).is_some_and(|p| self.swarm.is_connected(&p))
    }

    /// Nodes we are connected to.
    pub fn connected(&self) -> Vec<NodeId> {
        self.swarm.connected_peers().filter_map(node_id).collect()
    }

    /// Gossips an encoded record (silently dropped if nobody listens yet:
    /// anti-entropy repairs that).
    pub fn publish(&mut self, record: Vec<u8>) {
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), record)
        {
            tracing::debug!("gossip not sent: {e}");
        }
    }

    /// Reports the core's verdict on a gossiped message.
    pub fn validated(&mut self, ticket: &GossipTicket, verdict: crate::replica::Verdict) {
        use crate::replica::Verdict;
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Reject => MessageAcceptance::Reject,
            Verdict::Ignore => MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&ticket.id, &ticket.source, acceptance);
    }

    /// Sends `request` to `node`, dialing `addrs` if needed.
    pub fn request(
        &mut self,
        node: &NodeId,
        addrs: &[SocketAddr],
        request: Request,
    ) -> Option<RequestId> {
        let peer = peer_id(node)?;
        let addrs = addrs.iter().copied().map(multiaddr).collect();
        Some(RequestId(
            self.swarm
                .behaviour_mut()
                .rr
                .send_request_with_addresses(&peer, request, addrs),
        ))
    }

    /// Answers a request with an answer the replica counted.
    pub fn respond(&mut self, reply: Reply, answer: crate::replica::Answer) {
        let crate::replica::Answer(response) = answer;
        if self
            .swarm
            .behaviour_mut()
            .rr
            .send_response(reply.0, response)
            .is_err()
        {
            tracing::debug!("response not sent: the asker went away");
        }
    }

    /// Waits for the next event worth the control loop's attention.
    pub async fn next(&mut self) -> Event {
        loop {
            let Some(event) = self.swarm.next().await else {
                continue;
            };
            if let Some(e) = self.translate(event) {
                return e;
            }
        }
    }

    fn translate(&mut self, event: SwarmEvent<BehaviourEvent>) -> Option<Event> {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                socket_addr(&address).map(Event::Listening)
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                // Before any message of this connection is read: a peer
                // that is not a member gets no gossip and is not heard.
                let member = self.members.contains(&peer_id);
                self.score(&peer_id, member);
                if num_established.get() != 1 {
                    return None;
                }
                let dialed = match endpoint {
                    libp2p::core::ConnectedPoint::Dialer { address, .. } => socket_addr(&address),
                    libp2p::core::ConnectedPoint::Listener { .. } => None,
                };
                node_id(&peer_id).map(|id| Event::Connected(id, dialed))
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => node_id(&peer_id).map(Event::Disconnected),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => Some(Event::Gossip {
                source: node_id(&propagation_source)?,
                ticket: GossipTicket {
                    id: message_id,
                    source: propagation_source,
                },
                data: message.data,
            }),
            SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message {
                peer,
                message,
                ..
            })) => {
                let from = node_id(&peer)?;
                Some(match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => Event::Request {
                        from,
                        request,
                        reply: Reply(channel),
                    },
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => Event::Response {
                        id: RequestId(request_id),
                        from,
                        response,
                    },
                })
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rr(
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                },
            )) => Some(Event::Failed {
                id: RequestId(request_id),
                peer: node_id(&peer)?,
                error: error.to_string(),
            }),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => Some(Event::Observed(
                node_id(&peer_id)?,
                socket_addr(&info.observed_addr)?,
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NodeKey;

    #[test]
    fn endpoints_and_quic_multiaddrs_map_both_ways() {
        for text in ["198.18.0.1:51821", "[2001:db8::1]:4433"] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(socket_addr(&multiaddr(addr)), Some(addr));
        }
        assert_eq!(
            multiaddr("198.18.0.1:51821".parse().unwrap()).to_string(),
            "/ip4/198.18.0.1/udp/51821/quic-v1"
        );
        assert_eq!(socket_addr(&"/dns4/example/tcp/1".parse().unwrap()), None);
    }

    #[test]
    fn node_and_peer_ids_map_both_ways() {
        let k = NodeKey::generate();
        let peer = peer_id(&k.id()).unwrap();
        assert_eq!(node_id(&peer), Some(k.id()));
        let mut seed = k.seed();
        let kp = Keypair::ed25519_from_bytes(&mut seed).unwrap();
        assert_eq!(
            kp.public().to_peer_id(),
            peer,
            "the swarm's identity is the node key"
        );
    }
}
