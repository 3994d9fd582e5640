use super::*;
use crate::record::NodeKey;
use libp2p::identity::Keypair;

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
