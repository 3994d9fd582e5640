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
//! addresses and the opaque [`RequestId`] and [`GossipTicket`]. How the
//! swarm is built and tuned is in `net/swarm.rs`.

use crate::network::NetworkId;
use crate::protocol::{Request, Response};
use crate::record::NodeId;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::identity;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, Multiaddr, PeerId, Swarm};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use swarm::{Behaviour, BehaviourEvent};

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
    /// member yet) and back off from its id for
    /// [`PRUNE_BACKOFF`](swarm::PRUNE_BACKOFF), which would slow gossip to
    /// its agent once it is one.
    pub fn client(seed: [u8; 32], network: &NetworkId) -> Result<Shell, NetError> {
        Self::start(seed, network, None, false)
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

mod swarm;

#[cfg(test)]
mod tests;
