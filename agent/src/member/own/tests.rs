use super::*;
use federation::fixture::TestNetwork;

use crate::member::tests::lab::settings;

/// An agreement between two fresh networks, offer id `n`.
fn agreement(n: u8) -> Agreement {
    use federation::agreement::{Exposure, Offer, Side};
    let side = |key: &federation::NodeKey, cidr: &str| Side {
        network: federation::NetworkId::of(&key.id()),
        authority: key.id(),
        name: "x".into(),
        cidr: cidr.parse().unwrap(),
        exposes: Exposure::All,
        lends: vec![],
    };
    let (a, b) = (
        federation::NodeKey::generate(),
        federation::NodeKey::generate(),
    );
    let offer = Offer::sign(&a, [n; 16], side(&a, "10.1.0.0/24"), 10);
    Agreement::accept(&b, offer, side(&b, "10.2.0.0/24"), 1).unwrap()
}

#[test]
fn agreements_and_endings_are_carried_once_and_bounded() {
    let net = TestNetwork::new(2);
    let mut own = Own::new(net.member(1).record, 1);
    let first = agreement(0);
    assert_eq!(own.carry(&first), Ok(true));
    assert_eq!(own.take_publication(), Some((2, true)), "urgent news");
    assert_eq!(own.carry(&first), Ok(false));
    assert_eq!(own.take_publication(), None);
    for n in 1..u8::try_from(MAX_AGREEMENTS).unwrap() {
        assert_eq!(own.carry(&agreement(n)), Ok(true));
    }
    assert!(own.carry(&agreement(200)).unwrap_err().contains("the most"));
    let key = federation::NodeKey::generate();
    let mut end = Ending {
        agreement: [0; 16],
        by: federation::NetworkId::of(&key.id()),
        ended_ms: 5,
        sig: [0; 64],
    };
    assert_eq!(own.carry_ending(end.clone()), Ok(()));
    assert_eq!(own.carry_ending(end.clone()), Ok(()));
    assert_eq!(own.record.endings.len(), 1);
    for n in 1..u8::try_from(MAX_ENDINGS).unwrap() {
        end.agreement = [n; 16];
        assert_eq!(own.carry_ending(end.clone()), Ok(()));
    }
    end.agreement = [200; 16];
    assert!(own.carry_ending(end).unwrap_err().contains("the most"));
}

#[test]
fn host_changes_are_published_once_and_urgent_when_they_move_us() {
    let net = TestNetwork::new(2);
    let mut own = Own::new(net.member(1).record, 1);
    let inv = Inventory {
        addrs: vec!["198.18.0.1".parse().unwrap()],
        networks: vec!["198.18.0.0/24".parse().unwrap()],
        mtu: Some(1500),
    };
    own.update_host(&inv, &settings(), Outside::default());
    assert_eq!(own.take_publication(), Some((2, true)));
    assert_eq!(
        own.record.control,
        vec!["198.18.0.1:51821".parse::<SocketAddr>().unwrap()]
    );
    own.update_host(&inv, &settings(), Outside::default());
    assert_eq!(own.take_publication(), None, "nothing new");
    own.set_path_mtu(Some(1400));
    assert_eq!(
        own.take_publication(),
        Some((3, false)),
        "MTU only: not urgent"
    );
}

#[test]
fn advertised_and_observed_endpoints_lead_the_control_list() {
    let net = TestNetwork::new(2);
    let mut own = Own::new(net.member(1).record, 1);
    let inv = Inventory {
        addrs: vec!["10.0.1.5".parse().unwrap()],
        networks: vec!["10.0.1.0/24".parse().unwrap()],
        mtu: Some(1500),
    };
    let mut s = settings();
    s.advertise = vec![
        "198.18.0.7".parse().unwrap(),
        crate::advertise::Advertise::Auto,
    ];
    let outside = Outside {
        reflexive: vec!["198.18.0.7:51820".parse().unwrap()],
        control: vec![
            "198.18.0.7:51821".parse().unwrap(),
            "198.18.0.9:3000".parse().unwrap(),
        ],
        auto: Some("198.18.0.8".parse().unwrap()),
    };
    own.update_host(&inv, &s, outside);
    let text = |v: &[SocketAddr]| v.iter().map(|e| e.to_string()).collect::<Vec<_>>();
    assert_eq!(
        text(&own.record.advertised),
        ["198.18.0.7:51820", "198.18.0.8:51820"]
    );
    assert_eq!(
        text(&own.record.control),
        [
            "198.18.0.7:51821",
            "198.18.0.8:51821",
            "198.18.0.9:3000",
            "10.0.1.5:51821"
        ]
    );
    assert_eq!(own.take_publication(), Some((2, true)));
}

#[test]
fn a_lost_address_is_claimed_again() {
    let net = TestNetwork::new(2);
    let (a, b) = (net.member(1), net.member(2));
    let mut ledger = net.ledger();
    // b claimed a's address earlier.
    let mut b_rec = b.record.clone();
    b_rec.address = a.record.address;
    b_rec.claimed_ms = 0;
    let bytes = b
        .key
        .sign(1, federation::member::Body::Member(b_rec).to_bytes())
        .encode();
    ledger.ingest(&bytes, 0).unwrap();
    let mut a_rec = a.record.clone();
    a_rec.claimed_ms = 5;
    ledger
        .ingest(
            &a.key
                .sign(
                    1,
                    federation::member::Body::Member(a_rec.clone()).to_bytes(),
                )
                .encode(),
            0,
        )
        .unwrap();
    let mut own = Own::new(a_rec, 1);
    assert!(own.reclaim_if_lost(&ledger, &a.key.id(), 10));
    assert_ne!(own.record.address, a.record.address);
    assert!(!own.reclaim_if_lost(&ledger, &a.key.id(), 10), "ours now");
}
