use super::*;
use proptest::prelude::*;

struct Org {
    key: NodeKey,
    name: &'static str,
    cidr: &'static str,
}

impl Org {
    fn new(n: u8, name: &'static str, cidr: &'static str) -> Org {
        Org {
            key: NodeKey::from_seed(&[n; 32]),
            name,
            cidr,
        }
    }

    fn side(&self, exposes: Exposure) -> Side {
        Side {
            network: NetworkId::of(&self.key.id()),
            authority: self.key.id(),
            name: self.name.into(),
            cidr: self.cidr.parse().unwrap(),
            exposes,
            lends: vec![],
        }
    }

    fn net(&self) -> NetworkId {
        NetworkId::of(&self.key.id())
    }
}

fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

fn alpha() -> Org {
    Org::new(1, "alpha", "10.1.0.0/24")
}

fn beta() -> Org {
    Org::new(2, "beta", "10.2.0.0/24")
}

fn offer(org: &Org, exposes: Exposure) -> Offer {
    Offer::sign(&org.key, [9; 16], org.side(exposes), 1_000)
}

#[test]
fn exposure_text_is_all_or_tags() {
    assert_eq!(Exposure::parse("all"), Ok(Exposure::All));
    assert_eq!(
        Exposure::parse("shared, web"),
        Ok(Exposure::Tags(tags(&["shared", "web"])))
    );
    for bad in ["", "Shared", "a,,b", "a,a", "-x", "a b"] {
        let err = Exposure::parse(bad).unwrap_err().to_string();
        assert!(err.contains("--expose takes `all`"), "{bad}: {err}");
    }
    let nine = (0..9)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(Exposure::parse(&nine).is_err());
    assert_eq!(
        Exposure::parse("shared,web").unwrap().to_string(),
        "shared,web"
    );
    let e = Exposure::Tags(tags(&["shared"]));
    assert!(e.covers(&tags(&["x", "shared"])));
    assert!(!e.covers(&tags(&["x"])) && !e.covers(&[]));
    assert!(Exposure::All.covers(&[]));
}

#[test]
fn an_agreement_needs_both_signatures_and_says_who_is_connected() {
    let (a, b) = (alpha(), beta());
    let o = offer(&a, Exposure::Tags(tags(&["shared"])));
    let ag = Agreement::accept(&b.key, o.clone(), b.side(Exposure::All), 500).unwrap();
    assert_eq!(ag.check(), Ok(()));
    assert_eq!(ag.id(), [9; 16]);
    assert_eq!(ag.other(&a.net()).map(|s| s.name.as_str()), Some("beta"));
    assert_eq!(ag.other(&b.net()).map(|s| s.name.as_str()), Some("alpha"));

    let shared = tags(&["shared"]);
    // Tagged alpha node <-> any beta node; untagged alpha nodes: never.
    assert!(ag.connects((&a.net(), &shared), (&b.net(), &[])));
    assert!(ag.connects((&b.net(), &[]), (&a.net(), &shared)));
    assert!(!ag.connects((&a.net(), &[]), (&b.net(), &[])));
    assert!(!ag.connects((&a.net(), &shared), (&a.net(), &shared)));
    assert!(ag.exposes(&a.net(), &shared) && !ag.exposes(&a.net(), &[]));
    assert!(ag.exposes(&b.net(), &[]));

    // Not transitive: a third network is no side of it.
    let gamma = Org::new(3, "gamma", "10.3.0.0/24");
    assert!(ag.side(&gamma.net()).is_none() && ag.other(&gamma.net()).is_none());
    assert!(!ag.connects((&gamma.net(), &[]), (&b.net(), &[])));

    // Either signature altered: refused.
    let mut forged = ag.clone();
    forged.acceptor.exposes = Exposure::Tags(tags(&["x"]));
    assert_eq!(forged.check(), Err(AgreementError::BadSignature));
    let mut forged = ag.clone();
    forged.offer.offerer.exposes = Exposure::All;
    assert_eq!(forged.check(), Err(AgreementError::BadSignature));
    // Signed by a key that is not the acceptor's authority.
    assert_eq!(
        Agreement::accept(&gamma.key, o, b.side(Exposure::All), 500),
        Err(AgreementError::ForeignAuthority)
    );
}

#[test]
fn offers_are_refused_when_expired_own_overlapping_or_forged() {
    let (a, b) = (alpha(), beta());
    let o = offer(&a, Exposure::All);
    assert_eq!(
        Agreement::accept(&b.key, o.clone(), b.side(Exposure::All), 1_000),
        Err(AgreementError::Expired)
    );
    assert_eq!(
        Agreement::accept(&a.key, o.clone(), a.side(Exposure::All), 10),
        Err(AgreementError::SameNetwork)
    );
    let clash = Org::new(2, "beta", "10.1.0.128/25");
    let err = Agreement::accept(&clash.key, o.clone(), clash.side(Exposure::All), 10).unwrap_err();
    assert_eq!(
        err,
        AgreementError::Overlap {
            ours: "10.1.0.128/25".parse().unwrap(),
            theirs: "10.1.0.0/24".parse().unwrap()
        }
    );
    assert!(err.to_string().contains("10.1.0.128/25") && err.to_string().contains("10.1.0.0/24"));
    // A side naming another network's id than its authority's.
    let mut side = a.side(Exposure::All);
    side.network = b.net();
    let forged = Offer::sign(&a.key, [1; 16], side, 1_000);
    assert_eq!(forged.check(), Err(AgreementError::ForeignAuthority));
    // An offer signed by someone else than the authority it names.
    let forged = Offer::sign(&b.key, [1; 16], a.side(Exposure::All), 1_000);
    assert_eq!(forged.check(), Err(AgreementError::BadSignature));
    // An agreement stays valid after its offer's expiry.
    let ag = Agreement::accept(&b.key, o, b.side(Exposure::All), 999).unwrap();
    assert_eq!(ag.check(), Ok(()));
}

#[test]
fn either_side_ends_it_and_nobody_else() {
    let (a, b) = (alpha(), beta());
    let ag = Agreement::accept(&b.key, offer(&a, Exposure::All), b.side(Exposure::All), 5).unwrap();
    for org in [&a, &b] {
        let end = Ending::sign(&org.key, &ag, 7).unwrap();
        assert_eq!(end.check(&ag), Ok(()));
        assert_eq!(end.by, org.net());
    }
    let gamma = Org::new(3, "gamma", "10.3.0.0/24");
    assert!(Ending::sign(&gamma.key, &ag, 7).is_err());
    let mut forged = Ending::sign(&a.key, &ag, 7).unwrap();
    forged.by = b.net();
    assert_eq!(forged.check(&ag), Err(AgreementError::BadSignature));
    let other = Agreement::accept(
        &b.key,
        Offer::sign(&a.key, [2; 16], a.side(Exposure::All), 1_000),
        b.side(Exposure::All),
        5,
    )
    .unwrap();
    let end = Ending::sign(&a.key, &ag, 7).unwrap();
    assert_eq!(end.check(&other), Err(AgreementError::ForeignAuthority));
}

#[test]
fn offer_tokens_round_trip_and_bad_ones_say_so() {
    let a = alpha();
    let token = OfferToken {
        offer: offer(&a, Exposure::Tags(tags(&["shared"]))),
        contacts: vec![Contact {
            id: NodeKey::from_seed(&[5; 32]).id(),
            addrs: vec!["198.18.0.1:51821".parse().unwrap()],
        }],
    };
    let text = token.encode();
    assert!(text.starts_with(OFFER_PREFIX));
    assert_eq!(
        OfferToken::decode(&format!("  {text}\n")),
        Ok(token.clone())
    );
    assert_eq!(token.offer.fingerprint().len(), 19);
    for bad in [
        "",
        "cladnet1.abc",
        &text[..text.len() - 3],
        &format!("{text}x"),
        &"cladfed1.".repeat(600),
    ] {
        assert_eq!(
            OfferToken::decode(bad),
            Err(AgreementError::Malformed),
            "{bad}"
        );
    }
    // A token whose offer was re-signed by another key.
    let mut forged = token;
    forged.offer.offerer.exposes = Exposure::All;
    assert_eq!(
        OfferToken::decode(&forged.encode()),
        Err(AgreementError::BadSignature)
    );
}

proptest! {
    #[test]
    fn decoding_arbitrary_text_never_panics(text in ".{0,300}") {
        let _ = OfferToken::decode(&text);
        let _ = OfferToken::decode(&format!("{OFFER_PREFIX}{text}"));
    }

    #[test]
    fn connection_is_symmetric_and_needs_both_exposures(
        a_tags in proptest::collection::vec("[a-c]", 0..3),
        b_tags in proptest::collection::vec("[a-c]", 0..3),
        a_exp in proptest::option::of(proptest::collection::btree_set("[a-c]", 1..3)),
        b_exp in proptest::option::of(proptest::collection::btree_set("[a-c]", 1..3)),
    ) {
        let (a, b) = (alpha(), beta());
        let exp = |e: Option<std::collections::BTreeSet<String>>| match e {
            None => Exposure::All,
            Some(t) => Exposure::Tags(t.into_iter().collect()),
        };
        let (ea, eb) = (exp(a_exp), exp(b_exp));
        let ag = Agreement::accept(&b.key, offer(&a, ea.clone()), b.side(eb.clone()), 1).unwrap();
        let forward = ag.connects((&a.net(), &a_tags), (&b.net(), &b_tags));
        prop_assert_eq!(forward, ag.connects((&b.net(), &b_tags), (&a.net(), &a_tags)));
        prop_assert_eq!(forward, ea.covers(&a_tags) && eb.covers(&b_tags));
    }
}

#[test]
fn lent_relays_are_signed_and_apart_from_what_is_exposed() {
    let (a, b) = (alpha(), beta());
    let mut side = b.side(Exposure::Tags(tags(&["shared"])));
    side.lends = tags(&["edge"]);
    let ag = Agreement::accept(&b.key, offer(&a, Exposure::All), side, 10).unwrap();
    assert_eq!(ag.check(), Ok(()));
    let edge = tags(&["edge"]);
    let lends = |n: &NetworkId| ag.side(n).is_some_and(|s| s.lends_member(&edge));
    assert!(lends(&b.net()) && !ag.exposes(&b.net(), &edge));
    assert!(ag.shares(&b.net(), &edge) && !ag.shares(&b.net(), &tags(&["web"])));
    assert!(!lends(&a.net()), "alpha lends nothing");
    // Lending more than was signed breaks the acceptance's signature.
    let mut forged = ag.clone();
    forged.acceptor.lends = tags(&["edge", "web"]);
    assert_eq!(forged.check(), Err(AgreementError::BadSignature));
    // A tag that is not a tag is refused.
    let mut bad = b.side(Exposure::All);
    bad.lends = tags(&["Edge!"]);
    assert_eq!(
        Agreement::accept(&b.key, offer(&a, Exposure::All), bad, 10).map(|_| ()),
        Err(AgreementError::Malformed)
    );
}
