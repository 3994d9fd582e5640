//! How the shell's libp2p swarm is built and tuned: QUIC timeouts,
//! gossipsub's mesh and peer scoring, request-response limits, identify
//! and connection limits.

use super::{multiaddr, NetError, Shell};
use crate::network::NetworkId;
use crate::protocol::{Request, Response};
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds,
};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, StreamProtocol, SwarmBuilder};
use std::collections::HashSet;
use std::net::SocketAddr;
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

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) limits: connection_limits::Behaviour,
    pub(super) gossipsub: gossipsub::Behaviour,
    pub(super) rr: request_response::cbor::Behaviour<Request, Response>,
    pub(super) identify: identify::Behaviour,
}

impl Shell {
    pub(super) fn start(
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
}
