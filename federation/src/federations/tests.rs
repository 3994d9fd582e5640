use super::*;
use crate::agreement::{Exposure, Side};
use crate::record::NodeKey;

/// A network by its authority's seed.
fn org(n: u8, name: &str, cidr: &str) -> (NodeKey, Side) {
    let key = NodeKey::from_seed(&[n; 32]);
    let side = Side {
        network: NetworkId::of(&key.id()),
        authority: key.id(),
        name: name.into(),
        cidr: cidr.parse().unwrap(),
        exposes: Exposure::All,
        lends: vec![],
    };
    (key, side)
}

/// alpha offers (offer `id`), beta accepts.
fn agreement(id: u8) -> (Agreement, NodeKey, NodeKey) {
    let (ak, a) = org(1, "alpha", "10.1.0.0/24");
    let (bk, b) = org(2, "beta", "10.2.0.0/24");
    let offer = Offer::sign(&ak, [id; 16], a, 1_000);
    (Agreement::accept(&bk, offer, b, 10).unwrap(), ak, bk)
}

fn held(agreement: &Agreement, ended: Option<Ending>) -> Federation {
    Federation {
        agreement: agreement.clone(),
        ended,
    }
}

#[test]
fn an_offer_is_accepted_once_and_not_while_an_agreement_with_its_network_is_in_force() {
    let (ag, ak, bk) = agreement(1);
    let beta = ag.acceptor.network;
    assert_eq!(may_accept(&[], &beta, &ag.offer), Ok(()));
    let known = [held(&ag, None)];
    assert_eq!(
        may_accept(&known, &beta, &ag.offer),
        Err(FederationError::AlreadyAccepted)
    );
    let again = Offer::sign(&ak, [2; 16], ag.offer.offerer.clone(), 1_000);
    let err = may_accept(&known, &beta, &again).unwrap_err();
    assert_eq!(err, FederationError::AlreadyFederated("alpha".into()));
    assert!(
        err.to_string().contains("already federated with alpha"),
        "{err}"
    );
    // Once ended, a new offer of the same network may be accepted.
    let ended = [held(&ag, Some(Ending::sign(&bk, &ag, 20).unwrap()))];
    assert_eq!(may_accept(&ended, &beta, &again), Ok(()));
}

#[test]
fn only_a_valid_agreement_of_this_network_and_the_first_of_its_offer_is_carried() {
    let (ag, _, bk) = agreement(1);
    let (alpha, beta) = (ag.offer.offerer.network, ag.acceptor.network);
    assert_eq!(may_carry(&[], &alpha, &ag), Ok(beta));
    assert_eq!(may_carry(&[held(&ag, None)], &beta, &ag), Ok(alpha));
    let (_, gamma) = org(3, "gamma", "10.3.0.0/24");
    assert_eq!(
        may_carry(&[], &gamma.network, &ag),
        Err(FederationError::NotOurs)
    );
    let mut forged = ag.clone();
    forged.acceptor.exposes = Exposure::Tags(vec!["x".into()]);
    assert!(matches!(
        may_carry(&[], &alpha, &forged),
        Err(FederationError::Invalid(AgreementError::BadSignature))
    ));
    // A second agreement made of the same offer (beta signed it twice).
    let mut side = ag.acceptor.clone();
    side.exposes = Exposure::Tags(vec!["web".into()]);
    let rival = Agreement::accept(&bk, ag.offer.clone(), side, 11).unwrap();
    assert_eq!(
        may_carry(&[held(&ag, None)], &alpha, &rival),
        Err(FederationError::AlreadyAccepted)
    );
}

#[test]
fn an_ending_is_carried_only_for_a_known_agreement_and_from_its_sides() {
    let (ag, ak, _) = agreement(1);
    let end = Ending::sign(&ak, &ag, 30).unwrap();
    assert_eq!(may_carry_ending(&[], &end), Err(FederationError::Unknown));
    assert_eq!(may_carry_ending(&[held(&ag, None)], &end), Ok(()));
    let mut forged = end.clone();
    forged.ended_ms = 31;
    assert!(matches!(
        may_carry_ending(&[held(&ag, None)], &forged),
        Err(FederationError::Invalid(_))
    ));
}

#[test]
fn the_agreement_in_force_is_found_by_the_other_networks_name_or_id() {
    let (ag, ak, _) = agreement(1);
    let (alpha, beta) = (ag.offer.offerer.network, ag.acceptor.network);
    let known = [held(&ag, None)];
    assert!(in_force_with(&known, &alpha, "beta").is_ok());
    assert!(in_force_with(&known, &alpha, &beta.to_string()).is_ok());
    assert!(in_force_with(&known, &beta, "alpha").is_ok());
    let err = in_force_with(&known, &alpha, "alpha").unwrap_err();
    assert!(
        err.to_string()
            .contains("no agreement in force with \"alpha\""),
        "{err}"
    );
    let ended = [held(&ag, Some(Ending::sign(&ak, &ag, 30).unwrap()))];
    assert!(in_force_with(&ended, &alpha, "beta").is_err());
}
