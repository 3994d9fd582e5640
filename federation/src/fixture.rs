//! Test fixtures shared by this crate's tests and other crates' (feature
//! `test-support`): a network with its authority, and members with valid
//! certificates and signed records.

use crate::cert::{Cert, Claim};
use crate::ledger::{Ledger, Network};
use crate::member::{AuthorityRecord, Body, MemberRecord};
use crate::record::NodeKey;
use std::net::Ipv4Addr;

/// A network for tests: its authority and its range (100.64.0.0/24
/// unless given).
pub struct TestNetwork {
    /// The authority's key.
    pub authority: NodeKey,
    /// The network.
    pub network: Network,
    /// Its overlay range.
    pub range: crate::Cidr,
}

/// A member of a [`TestNetwork`].
pub struct TestMember {
    /// Its key.
    pub key: NodeKey,
    /// Its record (address number `n` of the range).
    pub record: MemberRecord,
}

impl TestNetwork {
    /// A network whose authority key comes from `seed` (never the key of
    /// a [`TestNetwork::member`]).
    pub fn new(seed: u8) -> Self {
        let mut bytes = [0xAA; 32];
        bytes[0] = seed;
        let authority = NodeKey::from_seed(&bytes);
        Self {
            network: Network::of(authority.id()),
            authority,
            range: "100.64.0.0/24".parse().expect("a valid CIDR"),
        }
    }

    /// A network like [`TestNetwork::new`] over `range`.
    pub fn with_range(seed: u8, range: &str) -> Self {
        Self {
            range: range.parse().expect("a valid CIDR"),
            ..Self::new(seed)
        }
    }

    /// The authority's signed record (version 1).
    pub fn authority_record(&self) -> Vec<u8> {
        let range = self.range;
        let body = Body::Authority(AuthorityRecord {
            network: self.network.id,
            name: "lab".into(),
            cidr: range,
            block: range,
            mtu: 1420,
            revocations: vec![],
        });
        self.authority.sign(1, body.to_bytes()).encode()
    }

    /// A ledger holding the authority's record.
    pub fn ledger(&self) -> Ledger {
        let mut ledger = Ledger::new(self.network);
        ledger
            .ingest(&self.authority_record(), 0)
            .expect("the authority's own record");
        ledger
    }

    /// Member number `n` (the same key in every test network, address
    /// 100.64.0.`n`), certified by the authority.
    pub fn member(&self, n: u8) -> TestMember {
        let mut seed = [0x55; 32];
        seed[0] = n;
        let key = NodeKey::from_seed(&seed);
        let name = format!("m{n}");
        let chain = vec![Cert::issue(
            &self.authority,
            Claim {
                network: self.network.id,
                subject: key.id(),
                wg_key: [n; 32],
                name: name.clone(),
                admit: true,
                tags: vec![],
                issued_ms: 0,
                expires_ms: u64::MAX,
            },
        )];
        let record = MemberRecord {
            network: self.network.id,
            chain,
            address: Ipv4Addr::from(u32::from(self.range.addr()) + u32::from(n)),
            ..MemberRecord::example(&name)
        };
        TestMember { key, record }
    }
}

impl TestMember {
    /// Its record signed as `version`.
    pub fn signed(&self, version: u64) -> Vec<u8> {
        self.key
            .sign(version, Body::Member(self.record.clone()).to_bytes())
            .encode()
    }
}

/// Delivers `from`'s pending requests to `to` (which may stand for
/// whichever member of its network `from` picked: they hold the same
/// state) and the answers back, until nothing more is sent; what `to`
/// answered.
pub fn exchange(
    from: &mut crate::replica::Replica,
    from_id: crate::record::NodeId,
    to: &mut crate::replica::Replica,
    to_id: crate::record::NodeId,
) -> Vec<crate::protocol::Response> {
    use crate::replica::{Answer, Inbound, Transmit};
    let mut answers = Vec::new();
    for _ in 0..8 {
        let requests: Vec<_> = std::iter::from_fn(|| from.poll_transmit())
            .filter_map(|t| match t {
                Transmit::Request { request, .. } => Some(request),
                Transmit::Publish(_) => None,
            })
            .collect();
        if requests.is_empty() {
            break;
        }
        for request in requests {
            if let Inbound::Answer(Answer(r)) = to.handle_request(from_id, request, 0) {
                answers.push(r.clone());
                from.handle_response(to_id, r, 0);
            }
        }
    }
    answers
}
