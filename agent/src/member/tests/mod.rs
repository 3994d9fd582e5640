//! Several members in fake time, joined by an in-memory shell
//! ([`lab`]): joins passed on, `--via`, revocation, re-tags, agreements,
//! farewell and relay failover, each as a user would meet it.

pub(in crate::member) mod lab;

use super::*;
use crate::api::{self, docs, Request};
use federation::fixture::TestNetwork;
pub use lab::Memory;
use lab::{Lab, OUTSIDER};
use std::collections::BTreeMap;

#[test]
fn a_join_presented_to_another_member_is_passed_on_to_its_inviter() {
    let mut lab = Lab::new(3);
    let join = lab.join_request(0);
    lab.present(1, join.clone(), 1);
    assert!(
        matches!(lab.outside.get(&1), Some(Response::Admitted { .. })),
        "{:?}",
        lab.outside.get(&1)
    );
    // Spent once: the same invite again is refused, passed on or not.
    lab.present(2, join, 2);
    assert!(lab.refusal(2).contains("already used"));
}

#[test]
fn a_join_whose_inviter_does_not_answer_is_refused_in_time() {
    let mut lab = Lab::new(3);
    let join = lab.join_request(0);
    lab.nodes[0].silent = true;
    lab.present(1, join, 1);
    assert!(lab.outside.is_empty(), "nothing yet");
    lab.advance(via::TIMEOUT + Duration::from_secs(1));
    assert!(lab.refusal(1).contains("did not answer"));
}

#[test]
fn a_via_query_is_answered_by_the_member_named_or_times_out() {
    let mut lab = Lab::new(3);
    let via = |target: &str| Request::Via {
        target: target.into(),
        request: Box::new(Request::Status),
    };
    let id = lab.local(0, via("m2"));
    let line = lab.answer(0, id).unwrap().to_string();
    assert!(line.contains("status read by m2"), "{line}");
    lab.nodes[2].silent = true;
    let id = lab.local(0, via("m3"));
    assert_eq!(lab.answer(0, id), None, "waits");
    lab.advance(via::TIMEOUT - Duration::from_millis(10));
    assert_eq!(lab.answer(0, id), None, "still within its time");
    lab.advance(Duration::from_millis(20));
    let line = lab.answer(0, id).unwrap();
    assert!(line.contains("did not answer in time"), "{line}");
    let id = lab.local(0, via("nobody"));
    assert!(lab.answer(0, id).unwrap().contains("no member is called"));
}

#[test]
fn a_revoked_member_is_cut_off_and_stops_speaking() {
    let mut lab = Lab::new(3);
    let id = lab.local(0, Request::Revoke { node: "m2".into() });
    assert!(
        !lab.answer(0, id).unwrap().contains("error"),
        "{:?}",
        lab.answer(0, id)
    );
    for i in 0..3 {
        assert_eq!(
            lab.status(i, 1),
            Some(Status::Revoked),
            "as node {i} sees it"
        );
    }
    assert!(!lab.nodes[1].member.is_active());
    // It says nothing more about itself.
    let version = |lab: &Lab| {
        let b = lab.nodes[1].member.me();
        lab.nodes[0]
            .member
            .replica()
            .ledger()
            .member(&b, lab.now_ms)
            .map(|m| m.version)
    };
    let before = version(&lab);
    let labels = [("role".to_string(), "db".to_string())].into();
    lab.local(
        1,
        Request::Set(crate::change::Change {
            labels: Some(labels),
            ..Default::default()
        }),
    );
    lab.advance(Duration::from_secs(5));
    assert_eq!(version(&lab), before);
    // A revoked node invites nobody.
    let id = lab.local(
        1,
        Request::Invite {
            ttl_s: 60,
            uses: 1,
            tags: vec![],
        },
    );
    assert!(lab.answer(1, id).unwrap().contains("revoked"));
}

#[test]
fn a_retag_travels_with_the_record_and_a_self_retag_sends_nothing() {
    let mut lab = Lab::new(2);
    let id = lab.local(
        0,
        Request::Tag {
            node: "m2".into(),
            tags: vec!["db".into()],
        },
    );
    let tagged: docs::Tagged = api::read_answer(lab.answer(0, id).unwrap()).unwrap();
    assert_eq!(tagged.tags, vec!["db".to_string()]);
    let b = lab.nodes[1].member.me();
    let seen = lab.nodes[0]
        .member
        .replica()
        .ledger()
        .member(&b, lab.now_ms)
        .map(|m| federation::ledger::leaf_tags(m.record).to_vec());
    assert_eq!(
        seen,
        Some(vec!["db".to_string()]),
        "m1 holds m2's new record"
    );
    // Re-tagging itself: adopted at once, and no message counted that
    // was never sent (it once counted one).
    let id = lab.local(
        0,
        Request::Tag {
            node: "m1".into(),
            tags: vec!["edge".into()],
        },
    );
    let tagged: docs::Tagged = api::read_answer(lab.answer(0, id).unwrap()).unwrap();
    assert_eq!(tagged.tags, vec!["edge".to_string()]);
    lab.assert_counted();
}

#[test]
fn a_member_that_leaves_says_farewell_and_stops() {
    let mut lab = Lab::new(3);
    let id = lab.local(2, Request::Leave);
    let left: docs::Left = api::read_answer(lab.answer(2, id).unwrap()).unwrap();
    assert!(left.left);
    assert!(lab.nodes[2].up, "keeps serving while its farewell spreads");
    for i in 0..2 {
        assert_eq!(lab.status(i, 2), Some(Status::Left), "as node {i} sees it");
    }
    lab.advance(FAREWELL + Duration::from_millis(10));
    assert!(!lab.nodes[2].up, "stopped after its farewell");
    lab.assert_counted();
}

/// What node `i` lists of its agreements: (network id, state).
fn agreements(lab: &mut Lab, i: usize) -> Vec<(String, String)> {
    let id = lab.local(i, Request::FederateList);
    let list: Vec<docs::Federation> = api::read_answer(lab.answer(i, id).unwrap()).unwrap();
    list.into_iter().map(|f| (f.network_id, f.state)).collect()
}

#[test]
fn an_agreement_is_adopted_by_both_networks_and_ended() {
    let mut alpha = Lab::of(TestNetwork::with_range(7, "100.64.0.0/24"), 2);
    let mut beta = Lab::of(TestNetwork::with_range(8, "100.65.0.0/24"), 2);
    let offer = alpha.local(
        0,
        Request::FederateOffer {
            expose: "all".into(),
            relays: None,
            ttl_s: 600,
            authority: None,
        },
    );
    let offer: docs::Offer = api::read_answer(alpha.answer(0, offer).unwrap()).unwrap();
    // Only the authority's node may offer.
    let refused = alpha.local(
        1,
        Request::FederateOffer {
            expose: "all".into(),
            relays: None,
            ttl_s: 600,
            authority: None,
        },
    );
    assert!(alpha.answer(1, refused).unwrap().contains("authority key"));
    let signed = beta.local(
        0,
        Request::FederateSign {
            offer: offer.token.clone(),
            expose: "all".into(),
            relays: None,
            authority: None,
        },
    );
    let signed: docs::Signed = api::read_answer(beta.answer(0, signed).unwrap()).unwrap();
    // beta's node delivers the agreement to a member of alpha (the CLI's
    // conversation does it): alpha carries it, then beta does.
    let (now, now_ms) = (alpha.now, alpha.now_ms);
    let beta_id = beta.nodes[0].member.me();
    alpha.nodes[1].member.handle_request(
        beta_id,
        Ask::Federate {
            agreement: Box::new(signed.agreement.clone()),
            contacts: signed.ours.clone(),
        },
        (OUTSIDER, 1),
        now,
        now_ms,
        &mut alpha.rng,
    );
    alpha.pump();
    assert_eq!(alpha.outside.get(&1), Some(&Response::Ack));
    let adopted = beta.local(
        1,
        Request::FederateAdopt {
            agreement: Box::new(signed.agreement.clone()),
            contacts: signed.contacts.clone(),
        },
    );
    assert!(!beta.answer(1, adopted).unwrap().contains("error"));
    let (a, b) = (
        alpha.net.network.id.to_string(),
        beta.net.network.id.to_string(),
    );
    for i in 0..2 {
        assert_eq!(
            agreements(&mut alpha, i),
            vec![(b.clone(), "active".into())],
            "alpha {i}"
        );
        assert_eq!(
            agreements(&mut beta, i),
            vec![(a.clone(), "active".into())],
            "beta {i}"
        );
    }
    // The same offer is not accepted twice.
    let again = beta.local(
        0,
        Request::FederateSign {
            offer: offer.token,
            expose: "all".into(),
            relays: None,
            authority: None,
        },
    );
    assert!(beta.answer(0, again).unwrap().contains("error"));
    // alpha ends it and tells beta's members.
    let ended = alpha.local(
        0,
        Request::FederateEnd {
            org: b.clone(),
            authority: None,
        },
    );
    let ended: docs::Ended = api::read_answer(alpha.answer(0, ended).unwrap()).unwrap();
    let alpha_id = alpha.nodes[0].member.me();
    let (now, now_ms) = (beta.now, beta.now_ms);
    beta.nodes[1].member.handle_request(
        alpha_id,
        Ask::EndFederation(Box::new(ended.ending)),
        (OUTSIDER, 2),
        now,
        now_ms,
        &mut beta.rng,
    );
    beta.pump();
    assert_eq!(beta.outside.get(&2), Some(&Response::Ack));
    for i in 0..2 {
        assert_eq!(
            agreements(&mut alpha, i),
            vec![(b.clone(), "ended".into())],
            "alpha {i}"
        );
        assert_eq!(
            agreements(&mut beta, i),
            vec![(a.clone(), "ended".into())],
            "beta {i}"
        );
    }
}

#[test]
fn a_silent_direct_path_fails_over_to_a_relay_and_comes_back_once_checked() {
    use federation::routes::{Command as Route, Facts};
    let mut lab = Lab::new(3);
    let ids: Vec<NodeId> = lab.nodes.iter().map(|n| n.member.me()).collect();
    let (b, c) = (ids[1], ids[2]);
    let mut node = netstack::Node::new(
        netstack::DeviceConfig {
            private_key: netstack::PrivateKey::generate(),
            mtu: 1420,
            handshake_load_limit: 64,
        },
        false,
        lab.now,
        Duration::ZERO,
    );
    let (now, now_ms) = (lab.now, lab.now_ms);
    let peers = lab.nodes[0].member.sync_peers(&mut node, now, now_ms);
    let (mut peers, mut want) = (peers, vec![b, c]);
    peers.sort();
    want.sort();
    assert_eq!(peers, want);
    assert_eq!(
        node.device().peers().count(),
        2,
        "a peer for each other member"
    );
    let endpoint_b = SocketAddr::from(([198, 18, 0, 2], 51820));
    let fine = Facts {
        direct: true,
        answered: true,
        rtt: Some(Duration::from_millis(5)),
        ..Facts::default()
    };
    // b's direct path goes silent while c answers: b through c.
    let facts = BTreeMap::from([
        (
            b,
            Facts {
                direct: true,
                silent: true,
                ..Facts::default()
            },
        ),
        (c, fine),
    ]);
    lab.nodes[0].member.handle_facts(&facts, now, now_ms);
    lab.pump();
    assert_eq!(
        lab.nodes[0].routes,
        vec![Route::Relay {
            peer: b,
            relay: c,
            replacing: None
        }]
    );
    // Relayed, the direct candidate is checked; only its answer moves b
    // back.
    let relayed = BTreeMap::from([
        (
            b,
            Facts {
                relay: Some(c),
                answered: true,
                ..Facts::default()
            },
        ),
        (c, fine),
    ]);
    lab.advance(Duration::from_secs(1));
    let (now, now_ms) = (lab.now, lab.now_ms);
    lab.nodes[0].member.handle_facts(&relayed, now, now_ms);
    lab.pump();
    assert_eq!(
        lab.nodes[0].routes.last(),
        Some(&Route::Verify {
            peer: b,
            endpoint: endpoint_b
        })
    );
    lab.nodes[0].member.handle_verified(b, endpoint_b, now);
    lab.pump();
    assert_eq!(
        lab.nodes[0].routes.last(),
        Some(&Route::Direct {
            peer: b,
            endpoint: endpoint_b
        })
    );
}
