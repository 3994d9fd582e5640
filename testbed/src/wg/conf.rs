//! Tunnel configurations as text: wg-quick files (what `cladnet agent
//! --wg-config` reads), `wg setconf` files, and full meshes of them.

use super::KeyPair;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

/// A `[Peer]` section.
#[derive(Clone, Debug, Default)]
pub struct PeerConf {
    /// Base64 public key.
    pub public_key: String,
    /// Optional base64 preshared key.
    pub preshared_key: Option<String>,
    /// Optional endpoint.
    pub endpoint: Option<SocketAddrV4>,
    /// CIDRs.
    pub allowed_ips: Vec<String>,
    /// Seconds.
    pub persistent_keepalive: Option<u16>,
}

/// A wg-quick style interface configuration.
#[derive(Clone, Debug, Default)]
pub struct IfaceConf {
    /// Base64 private key.
    pub private_key: String,
    /// UDP port.
    pub listen_port: u16,
    /// Overlay addresses (CIDR).
    pub addresses: Vec<String>,
    /// MTU (None: implementation default, 1420 for cladnet).
    pub mtu: Option<u32>,
    /// Peers.
    pub peers: Vec<PeerConf>,
}

impl IfaceConf {
    /// wg-quick format (what `cladnet agent --wg-config` reads).
    pub fn wg_quick(&self) -> String {
        let mut s = String::from("[Interface]\n");
        let _ = writeln!(s, "PrivateKey = {}", self.private_key);
        let _ = writeln!(s, "ListenPort = {}", self.listen_port);
        if !self.addresses.is_empty() {
            let _ = writeln!(s, "Address = {}", self.addresses.join(", "));
        }
        if let Some(m) = self.mtu {
            let _ = writeln!(s, "MTU = {m}");
        }
        s.push_str(&self.peers_text());
        s
    }

    /// `wg setconf` format (no Address/MTU).
    pub fn wg_setconf(&self) -> String {
        let mut s = String::from("[Interface]\n");
        let _ = writeln!(s, "PrivateKey = {}", self.private_key);
        let _ = writeln!(s, "ListenPort = {}", self.listen_port);
        s.push_str(&self.peers_text());
        s
    }

    fn peers_text(&self) -> String {
        let mut s = String::new();
        for p in &self.peers {
            let _ = writeln!(s, "\n[Peer]\nPublicKey = {}", p.public_key);
            if let Some(k) = &p.preshared_key {
                let _ = writeln!(s, "PresharedKey = {k}");
            }
            if let Some(e) = p.endpoint {
                let _ = writeln!(s, "Endpoint = {e}");
            }
            if !p.allowed_ips.is_empty() {
                let _ = writeln!(s, "AllowedIPs = {}", p.allowed_ips.join(", "));
            }
            if let Some(k) = p.persistent_keepalive {
                let _ = writeln!(s, "PersistentKeepalive = {k}");
            }
        }
        s
    }
}

/// Builds full-mesh configurations for `n` nodes: node i gets overlay
/// `100.64.0.(i+1)/24`, port `port`, and every other node as a peer with
/// its underlay endpoint and overlay /32.
pub fn full_mesh(keys: &[KeyPair], underlay: &[Ipv4Addr], port: u16) -> Vec<IfaceConf> {
    (0..keys.len())
        .map(|i| IfaceConf {
            private_key: keys[i].private.clone(),
            listen_port: port,
            addresses: vec![format!("100.64.0.{}/24", i + 1)],
            mtu: None,
            peers: (0..keys.len())
                .filter(|j| *j != i)
                .map(|j| PeerConf {
                    public_key: keys[j].public.clone(),
                    endpoint: Some(SocketAddrV4::new(underlay[j], port)),
                    allowed_ips: vec![format!("100.64.0.{}/32", j + 1)],
                    ..PeerConf::default()
                })
                .collect(),
        })
        .collect()
}
