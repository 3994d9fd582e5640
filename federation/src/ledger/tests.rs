use super::*;
use crate::admission::{AdmitError, Admitter};
use crate::cert::Revocation;
use crate::member::AuthorityRecord;
use crate::protocol::JoinRequest;
use crate::record::NodeKey;
use crate::token::{secret_hash, Issued, TokenError};
use std::net::Ipv4Addr;

const NOW: u64 = 1_000_000;

struct Net {
    authority: NodeKey,
    ledger: Ledger,
}

fn net() -> Net {
    let authority = NodeKey::generate();
    let network = Network::of(authority.id());
    let mut ledger = Ledger::new(network);
    let body = Body::Authority(AuthorityRecord {
        network: network.id,
        name: "lab".into(),
        cidr: "100.64.0.0/24".parse().unwrap(),
        block: "100.64.0.0/24".parse().unwrap(),
        mtu: 1420,
        revocations: vec![],
    });
    ledger
        .ingest(&authority.sign(1, body.to_bytes()).encode(), NOW)
        .unwrap();
    Net { authority, ledger }
}

fn record(
    net: &Network,
    name: &str,
    chain: Vec<crate::cert::Cert>,
    last: u8,
    claimed_ms: u64,
) -> MemberRecord {
    MemberRecord {
        network: net.id,
        chain,
        address: Ipv4Addr::new(100, 64, 0, last),
        claimed_ms,
        ..MemberRecord::example(name)
    }
}

fn join_req(net: &Network, name: &str) -> JoinRequest {
    JoinRequest {
        network: net.id,
        invite: [1; 16],
        secret: [2; 32],
        wg_key: [3; 32],
        name: name.into(),
        address: None,
        inviter: None,
    }
}

fn invite() -> Issued {
    Issued {
        secret_hash: secret_hash(&[2; 32]),
        expires_ms: NOW + 1000,
        uses_left: 1,
        tags: vec![],
    }
}

/// Admits `key` as `name` through `admitter`; returns its chain.
fn admit(n: &Net, admitter: &Admitter, key: &NodeKey, name: &str) -> Vec<crate::cert::Cert> {
    let net = *n.ledger.network();
    admitter
        .admit(
            &n.ledger,
            &join_req(&net, name),
            key.id(),
            Some(&invite()),
            NOW,
        )
        .unwrap()
        .1
}

fn publish(
    n: &mut Net,
    key: &NodeKey,
    version: u64,
    r: MemberRecord,
) -> Result<Option<Delta>, Reject> {
    n.ledger
        .ingest(&key.sign(version, Body::Member(r).to_bytes()).encode(), NOW)
}

#[test]
fn members_join_through_members_and_outsiders_never_enter() {
    let mut n = net();
    let network = *n.ledger.network();
    let (a, b, mallory) = (
        NodeKey::generate(),
        NodeKey::generate(),
        NodeKey::generate(),
    );
    let by_authority = Admitter {
        key: &a,
        chain: &[],
        authority: Some(&n.authority),
    };
    let a_chain = admit(&n, &by_authority, &a, "a");
    publish(&mut n, &a, 1, record(&network, "a", a_chain.clone(), 1, 1)).unwrap();
    let by_a = Admitter {
        key: &a,
        chain: &a_chain,
        authority: None,
    };
    let b_chain = admit(&n, &by_a, &b, "b");
    assert_eq!(b_chain.len(), 2);
    publish(&mut n, &b, 1, record(&network, "b", b_chain.clone(), 2, 2)).unwrap();

    // A non-member signing its own record with a self-made chain.
    let fake_auth = NodeKey::generate();
    let by_fake = Admitter {
        key: &mallory,
        chain: &[],
        authority: Some(&fake_auth),
    };
    let m_chain = by_fake
        .admit(
            &Ledger::new(network),
            &join_req(&network, "m"),
            mallory.id(),
            Some(&invite()),
            NOW,
        )
        .unwrap()
        .1;
    assert_eq!(
        publish(&mut n, &mallory, 1, record(&network, "m", m_chain, 3, 3)),
        Err(Reject::Cert(crate::cert::CertError::ForeignRoot))
    );
    // Someone replaying b's chain in its own record.
    assert_eq!(
        publish(&mut n, &mallory, 1, record(&network, "b", b_chain, 3, 3)),
        Err(Reject::Cert(crate::cert::CertError::WrongSubject))
    );
    // An authority record by a non-authority.
    let fake = Body::Authority(n.ledger.authority().unwrap().clone());
    assert_eq!(
        n.ledger
            .ingest(&mallory.sign(2, fake.to_bytes()).encode(), NOW),
        Err(Reject::NotAuthority)
    );
    let names: Vec<_> = n
        .ledger
        .members(NOW)
        .iter()
        .map(|m| m.record.name.clone())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"a".to_string()) && names.contains(&"b".to_string()));
    let rejected: u64 = n.ledger.rejected().map(|(_, c)| c).sum();
    assert_eq!(rejected, 3);
}

#[test]
fn admission_refuses_foreign_used_and_taken() {
    let mut n = net();
    let network = *n.ledger.network();
    let a = NodeKey::generate();
    let chain = admit(
        &n,
        &Admitter {
            key: &a,
            chain: &[],
            authority: Some(&n.authority),
        },
        &a,
        "a",
    );
    publish(&mut n, &a, 1, record(&network, "a", chain, 1, 1)).unwrap();
    let by_auth = Admitter {
        key: &a,
        chain: &[],
        authority: Some(&n.authority),
    };
    let newcomer = NodeKey::generate();
    let mut foreign = join_req(&network, "x");
    foreign.network = crate::network::NetworkId([9; 16]);
    let err = |req: &JoinRequest, issued: Option<&Issued>| {
        by_auth
            .admit(&n.ledger, req, newcomer.id(), issued, NOW)
            .unwrap_err()
    };
    assert_eq!(
        err(&foreign, Some(&invite())),
        TokenError::ForeignNetwork.into()
    );
    assert_eq!(
        err(&join_req(&network, "x"), None),
        TokenError::Unknown.into()
    );
    let used = Issued {
        uses_left: 0,
        tags: vec![],
        ..invite()
    };
    assert_eq!(
        err(&join_req(&network, "x"), Some(&used)),
        TokenError::Used.into()
    );
    assert_eq!(
        err(&join_req(&network, "a"), Some(&invite())),
        AdmitError::NameTaken("a".into())
    );
    assert_eq!(
        err(&join_req(&network, "Bad Name"), Some(&invite())),
        AdmitError::BadName
    );
}

#[test]
fn revoked_members_are_marked_and_their_updates_refused() {
    let mut n = net();
    let network = *n.ledger.network();
    let (a, b) = (NodeKey::generate(), NodeKey::generate());
    let by_auth = Admitter {
        key: &a,
        chain: &[],
        authority: Some(&n.authority),
    };
    let a_chain = admit(&n, &by_auth, &a, "a");
    let b_chain = admit(&n, &by_auth, &b, "b");
    let mut a_rec = record(&network, "a", a_chain, 1, 1);
    publish(&mut n, &a, 1, a_rec.clone()).unwrap();
    publish(&mut n, &b, 1, record(&network, "b", b_chain.clone(), 2, 2)).unwrap();
    a_rec.revocations.push(Revocation {
        node: b.id(),
        keep: vec![],
    });
    publish(&mut n, &a, 2, a_rec).unwrap();
    let status = |n: &Net, id| n.ledger.member(&id, NOW).map(|m| m.status);
    assert_eq!(status(&n, b.id()), Some(Status::Revoked));
    assert_eq!(status(&n, a.id()), Some(Status::Active));
    assert_eq!(
        publish(&mut n, &b, 2, record(&network, "b", b_chain, 2, 2)),
        Err(Reject::Revoked)
    );
    let by_auth_again = Admitter {
        key: &a,
        chain: &[],
        authority: Some(&n.authority),
    };
    assert_eq!(
        by_auth_again
            .admit(
                &n.ledger,
                &join_req(&network, "b2"),
                b.id(),
                Some(&invite()),
                NOW
            )
            .unwrap_err(),
        AdmitError::Revoked
    );
}

#[test]
fn address_conflicts_resolve_to_the_earliest_claim() {
    let mut n = net();
    let network = *n.ledger.network();
    let keys: Vec<NodeKey> = (0..3).map(|_| NodeKey::generate()).collect();
    for (i, k) in keys.iter().enumerate() {
        let by_auth = Admitter {
            key: &keys[0],
            chain: &[],
            authority: Some(&n.authority),
        };
        let chain = admit(&n, &by_auth, k, &format!("n{i}"));
        // n0 and n1 both claim .5; n1 claimed first. n2 claims an address outside the block.
        let (last, claimed) = match i {
            0 => (5, 20),
            1 => (5, 10),
            _ => (255, 5),
        };
        publish(
            &mut n,
            k,
            1,
            record(&network, &format!("n{i}"), chain, last, claimed),
        )
        .unwrap();
    }
    let owners = n.ledger.address_owners(NOW);
    assert_eq!(
        owners.get(&Ipv4Addr::new(100, 64, 0, 5)),
        Some(&keys[1].id())
    );
    assert_eq!(
        owners.len(),
        1,
        "the broadcast address is nobody's: {owners:?}"
    );
}

#[test]
fn a_withdrawn_revocation_no_longer_blocks_in_either_order() {
    let n = net();
    let network = *n.ledger.network();
    let x = NodeKey::generate();
    let chain = admit(
        &n,
        &Admitter {
            key: &x,
            chain: &[],
            authority: Some(&n.authority),
        },
        &x,
        "x",
    );
    let x_rec = |v: u64| {
        x.sign(
            v,
            Body::Member(record(&network, "x", chain.clone(), 9, 1)).to_bytes(),
        )
        .encode()
    };
    let auth = n.ledger.authority().unwrap().clone();
    let revoking = AuthorityRecord {
        revocations: vec![Revocation {
            node: x.id(),
            keep: vec![],
        }],
        ..auth.clone()
    };
    let v2 = n
        .authority
        .sign(2, Body::Authority(revoking).to_bytes())
        .encode();
    let v3 = n
        .authority
        .sign(3, Body::Authority(auth).to_bytes())
        .encode();
    let mut first = n.ledger.clone();
    first.ingest(&v2, NOW).unwrap();
    first.ingest(&v3, NOW).unwrap();
    let mut second = n.ledger.clone();
    second.ingest(&v3, NOW).unwrap();
    assert_eq!(first.ingest(&x_rec(1), NOW), second.ingest(&x_rec(1), NOW));
}

/// A first member `a`, admitted by the authority (its record not yet in).
fn first_member(n: &Net) -> (NodeKey, Vec<crate::cert::Cert>) {
    let a = NodeKey::generate();
    let by_authority = Admitter {
        key: &a,
        chain: &[],
        authority: Some(&n.authority),
    };
    let chain = admit(n, &by_authority, &a, "a");
    (a, chain)
}

#[test]
fn ingest_says_what_changed_and_one_rank_rule_decides() {
    let mut n = net();
    let network = *n.ledger.network();
    let (a, chain) = first_member(&n);
    let first = record(&network, "a", chain, 1, 1);
    let delta = publish(&mut n, &a, 1, first.clone()).unwrap();
    assert_eq!(
        delta,
        Some(Delta {
            writer: a.id(),
            changes: Changes::ALL
        })
    );
    // Metrics only: nothing for the peer table to do.
    let measured = MemberRecord {
        metrics: Some(crate::member::Metrics::default()),
        ..first.clone()
    };
    let delta = publish(&mut n, &a, 2, measured.clone()).unwrap().unwrap();
    assert!(delta.changes.metrics && !delta.changes.peers(), "{delta:?}");
    // A new endpoint is a path change, not a membership change.
    let moved = MemberRecord {
        endpoints: vec!["198.18.0.9:51820".parse().unwrap()],
        ..measured.clone()
    };
    let delta = publish(&mut n, &a, 3, moved.clone()).unwrap().unwrap();
    assert!(delta.changes.endpoints && !delta.changes.membership && delta.changes.peers());
    // Stale versions and the same record again change nothing.
    assert_eq!(publish(&mut n, &a, 2, measured).unwrap(), None);
    assert_eq!(publish(&mut n, &a, 3, moved.clone()).unwrap(), None);
    // Two bodies under one version: the higher body hash wins, in either
    // order, as in the state and in anti-entropy.
    let other = MemberRecord {
        claimed_ms: 99,
        ..moved.clone()
    };
    let held = n.ledger.state().rank(&a.id()).unwrap();
    let other_rank = a
        .sign(3, Body::Member(other.clone()).to_bytes())
        .verify()
        .unwrap()
        .rank();
    let outcome = publish(&mut n, &a, 3, other).unwrap();
    assert_eq!(outcome.is_some(), other_rank > held);
    assert_eq!(n.ledger.state().rank(&a.id()), Some(held.max(other_rank)));
}

#[test]
fn a_join_that_would_fail_spends_nothing_and_a_revoked_member_admits_nobody() {
    let mut n = net();
    let network = *n.ledger.network();
    let (a, a_chain) = first_member(&n);
    publish(&mut n, &a, 1, record(&network, "a", a_chain.clone(), 1, 1)).unwrap();
    let by_a = Admitter {
        key: &a,
        chain: &a_chain,
        authority: None,
    };
    let newcomer = NodeKey::generate();
    let try_address = |address: &str| {
        let mut req = join_req(&network, "x");
        req.address = Some(address.parse().unwrap());
        by_a.admit(&n.ledger, &req, newcomer.id(), Some(&invite()), NOW)
    };
    assert!(matches!(
        try_address("10.1.2.3"),
        Err(AdmitError::AddressOutside { .. })
    ));
    assert_eq!(
        try_address("100.64.0.1"),
        Err(AdmitError::AddressTaken("100.64.0.1".parse().unwrap())),
        "a's address"
    );
    assert!(try_address("100.64.0.9").is_ok());
    // The authority revokes a: a admits nobody any more.
    let mut auth = n.ledger.authority().unwrap().clone();
    auth.revocations.push(Revocation {
        node: a.id(),
        keep: vec![],
    });
    n.ledger
        .ingest(
            &n.authority
                .sign(2, Body::Authority(auth).to_bytes())
                .encode(),
            NOW,
        )
        .unwrap();
    assert_eq!(
        by_a.admit(
            &n.ledger,
            &join_req(&network, "y"),
            newcomer.id(),
            Some(&invite()),
            NOW
        ),
        Err(AdmitError::AdmitterRevoked)
    );
}
