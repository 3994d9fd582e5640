use super::*;
use crate::agreement::{Ending, Exposure, Offer};
use crate::cert::{Cert, Claim};
use crate::cidr::Cidr;
use crate::member::{AuthorityRecord, MemberRecord};
use crate::record::NodeKey;
use std::net::Ipv4Addr;

/// A network for these tests: authority, name, range.
pub(crate) struct Org {
    authority: NodeKey,
    name: &'static str,
    cidr: Cidr,
}

/// A member: key and record.
pub(crate) struct Node {
    pub(crate) key: NodeKey,
    pub(crate) record: MemberRecord,
}

impl Node {
    pub(crate) fn signed(&self, version: u64) -> Vec<u8> {
        self.key
            .sign(version, Body::Member(self.record.clone()).to_bytes())
            .encode()
    }
}

impl Org {
    pub(crate) fn new(seed: u8, name: &'static str, cidr: &str) -> Org {
        Org {
            authority: NodeKey::from_seed(&[seed; 32]),
            name,
            cidr: cidr.parse().unwrap(),
        }
    }

    pub(crate) fn id(&self) -> NetworkId {
        NetworkId::of(&self.authority.id())
    }

    fn network(&self) -> Network {
        Network::of(self.authority.id())
    }

    fn side(&self, exposes: Exposure) -> Side {
        Side {
            network: self.id(),
            authority: self.authority.id(),
            name: self.name.into(),
            cidr: self.cidr,
            exposes,
            lends: vec![],
        }
    }

    pub(crate) fn authority_record(&self, name: &str) -> Vec<u8> {
        let body = Body::Authority(AuthorityRecord {
            network: self.id(),
            name: name.into(),
            cidr: self.cidr,
            block: self.cidr,
            mtu: 1420,
            revocations: vec![],
        });
        self.authority.sign(1, body.to_bytes()).encode()
    }

    /// Member `n` (address: host `n` of the range), certified with `tags`.
    pub(crate) fn node(&self, n: u8, tags: &[&str]) -> Node {
        let mut seed = [n; 32];
        seed[1] = self.authority.id().0[0];
        let key = NodeKey::from_seed(&seed);
        let base = u32::from(self.cidr.addr());
        self.certified(key, Ipv4Addr::from(base + u32::from(n)), self.id(), tags)
    }

    /// `key` certified by this authority, claiming `address` in `network`.
    fn certified(
        &self,
        key: NodeKey,
        address: Ipv4Addr,
        network: NetworkId,
        tags: &[&str],
    ) -> Node {
        let name = format!("{}-{}", self.name, key.id().short());
        let chain = vec![Cert::issue(
            &self.authority,
            Claim {
                network,
                subject: key.id(),
                wg_key: [1; 32],
                name: name.clone(),
                admit: true,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                issued_ms: 0,
                expires_ms: u64::MAX,
            },
        )];
        let record = MemberRecord {
            network,
            chain,
            address,
            ..MemberRecord::example(&name)
        };
        Node { key, record }
    }

    pub(crate) fn ledger(&self, records: &[Vec<u8>]) -> Ledger {
        let mut ledger = Ledger::new(self.network());
        ledger.ingest(&self.authority_record(self.name), 0).unwrap();
        for r in records {
            ledger.ingest(r, 0).unwrap();
        }
        ledger
    }
}

fn shared() -> Exposure {
    Exposure::Tags(vec!["shared".into()])
}

/// alpha (exposes `shared`) and beta (exposes all), agreed.
/// alpha offers its `shared` members, beta accepts exposing all.
pub(crate) fn alpha_beta() -> (Org, Org, Agreement) {
    let alpha = Org::new(1, "alpha", "10.1.0.0/24");
    let beta = Org::new(2, "beta", "10.2.0.0/24");
    let offer = Offer::sign(&alpha.authority, [7; 16], alpha.side(shared()), 1_000);
    let agreement =
        Agreement::accept(&beta.authority, offer, beta.side(Exposure::All), 10).unwrap();
    (alpha, beta, agreement)
}

/// `offerer` exposes its members tagged `tag` to `acceptor`, which
/// exposes all; the offer's id is `[id; 16]`.
pub(crate) fn agree(offerer: &Org, tag: &str, acceptor: &Org, id: u8) -> Agreement {
    let exposes = Exposure::Tags(vec![tag.into()]);
    let offer = Offer::sign(&offerer.authority, [id; 16], offerer.side(exposes), 1_000);
    Agreement::accept(&acceptor.authority, offer, acceptor.side(Exposure::All), 10).unwrap()
}

/// Alpha exposes `shared`; beta exposes `shared` and lends `edge`.
pub(crate) fn lending() -> (Org, Org, Agreement) {
    let alpha = Org::new(1, "alpha", "10.1.0.0/24");
    let beta = Org::new(2, "beta", "10.2.0.0/24");
    let offer = Offer::sign(&alpha.authority, [9; 16], alpha.side(shared()), 1_000);
    let mut side = beta.side(shared());
    side.lends = vec!["edge".into()];
    let agreement = Agreement::accept(&beta.authority, offer, side, 10).unwrap();
    (alpha, beta, agreement)
}

/// `network`'s partners as `us` sees them: the agreement followed, the
/// partner's authority record and `records` taken in.
pub(crate) fn partners_of(
    us: &Org,
    partner: &Org,
    agreement: &Agreement,
    records: &[&Node],
) -> Partners {
    let mut p = Partners::new(us.id());
    p.follow([agreement].into_iter());
    p.ingest(&partner.authority_record(partner.name), 0)
        .unwrap();
    for r in records {
        p.ingest(&r.signed(1), 0).unwrap();
    }
    p
}

#[test]
fn a_lent_relay_enters_the_partner_and_its_record_leaves_with_the_exposed() {
    let (alpha, beta, agreement) = lending();
    let (server, edge, other) = (
        beta.node(1, &["shared"]),
        beta.node(2, &["edge"]),
        beta.node(3, &[]),
    );
    let mut on_alpha = partners_of(&alpha, &beta, &agreement, &[&server, &edge]);
    assert_eq!(
        on_alpha.ingest(&other.signed(1), 0),
        Err(Reject::NotExposed)
    );
    let mut seen: Vec<NodeId> = on_alpha.members(0).iter().map(|p| p.member.id).collect();
    seen.sort();
    let mut want = vec![server.key.id(), edge.key.id()];
    want.sort();
    assert_eq!(seen, want);
    // On beta, the lent member's record may leave; the untagged one's not.
    let mut carrier = beta.node(4, &[]);
    carrier.record.agreements = vec![agreement.clone()];
    let ledger = beta.ledger(&[
        carrier.signed(1),
        server.signed(1),
        edge.signed(1),
        other.signed(1),
    ]);
    let writers = ledger.exposed_writers(&agreement, 0);
    assert!(writers.contains(&edge.key.id()) && writers.contains(&server.key.id()));
    assert!(!writers.contains(&other.key.id()) && !writers.contains(&carrier.key.id()));
}

fn count(p: &Partners, label: &str) -> u64 {
    p.rejected()
        .find(|(l, _)| *l == label)
        .map_or(0, |(_, n)| n)
}

#[test]
fn members_carry_agreements_and_endings_in_their_records() {
    let (alpha, beta, agreement) = alpha_beta();
    let mut carrier = alpha.node(1, &[]);
    carrier.record.agreements = vec![agreement.clone()];
    let ledger = alpha.ledger(&[carrier.signed(1)]);
    assert_eq!(
        ledger.agreements().map(Agreement::id).collect::<Vec<_>>(),
        vec![[7; 16]]
    );

    // A forged agreement, or one this network is no side of: the record is refused.
    let mut forged = agreement.clone();
    forged.acceptor.exposes = shared();
    let mut bad = alpha.node(2, &[]);
    bad.record.agreements = vec![forged];
    let mut l = alpha.ledger(&[]);
    assert_eq!(l.ingest(&bad.signed(1), 0), Err(Reject::Agreement));
    let gamma = Org::new(3, "gamma", "10.3.0.0/24");
    let offer = Offer::sign(&beta.authority, [8; 16], beta.side(Exposure::All), 1_000);
    let beta_gamma =
        Agreement::accept(&gamma.authority, offer, gamma.side(Exposure::All), 10).unwrap();
    bad.record.agreements = vec![beta_gamma];
    assert_eq!(l.ingest(&bad.signed(2), 0), Err(Reject::Agreement));
    assert_eq!(l.rejected().collect::<Vec<_>>(), vec![("bad_agreement", 2)]);

    // Beta ends it; the ending reaches alpha in a member's record.
    let ending = Ending::sign(&beta.authority, &agreement, 20).unwrap();
    let mut other = alpha.node(3, &[]);
    other.record.endings = vec![ending.clone()];
    let ledger = alpha.ledger(&[carrier.signed(1), other.signed(1)]);
    assert_eq!(ledger.agreements().count(), 0);
    assert_eq!(ledger.federations()[0].ended, Some(ending));
}

#[test]
fn one_offer_accepted_twice_is_one_agreement_everywhere() {
    let (alpha, beta, first) = alpha_beta();
    let gamma = Org::new(3, "gamma", "10.3.0.0/24");
    let second = Agreement::accept(
        &gamma.authority,
        first.offer.clone(),
        gamma.side(Exposure::All),
        11,
    )
    .unwrap();
    let mut x = alpha.node(1, &[]);
    x.record.agreements = vec![second.clone()];
    let mut y = alpha.node(2, &[]);
    y.record.agreements = vec![first.clone()];
    for order in [[x.signed(1), y.signed(1)], [y.signed(1), x.signed(1)]] {
        let ledger = alpha.ledger(&order);
        let kept: Vec<_> = ledger.agreements().collect();
        assert_eq!(kept, vec![&first], "the earliest acceptance (beta's) wins");
    }
    let _ = beta;
}

#[test]
fn only_exposed_members_and_the_authority_record_leave() {
    let (alpha, _beta, agreement) = alpha_beta();
    let mut carrier = alpha.node(1, &[]);
    carrier.record.agreements = vec![agreement.clone()];
    let tagged = alpha.node(2, &["shared"]);
    let ledger = alpha.ledger(&[carrier.signed(1), tagged.signed(1)]);
    let writers = ledger.exposed_writers(&agreement, 0);
    assert_eq!(writers, vec![alpha.authority.id(), tagged.key.id()]);
    // No agreement of this network: nothing.
    let gamma = Org::new(3, "gamma", "10.3.0.0/24");
    let beta = Org::new(2, "beta", "10.2.0.0/24");
    let offer = Offer::sign(&beta.authority, [8; 16], beta.side(Exposure::All), 1_000);
    let foreign =
        Agreement::accept(&gamma.authority, offer, gamma.side(Exposure::All), 10).unwrap();
    assert!(ledger.exposed_writers(&foreign, 0).is_empty());
}

#[test]
fn partner_records_enter_only_as_the_agreement_allows() {
    let (alpha, beta, agreement) = alpha_beta();
    // Seen from alpha: beta exposes everything.
    let mut on_alpha = Partners::new(alpha.id());
    assert!(on_alpha.follow([&agreement].into_iter()).is_empty());
    assert_eq!(on_alpha.networks().collect::<Vec<_>>(), vec![&beta.id()]);
    assert!(on_alpha
        .ingest(&beta.authority_record("beta"), 0)
        .unwrap()
        .is_some());
    let b1 = beta.node(1, &[]);
    let (net, delta) = on_alpha.ingest(&b1.signed(1), 0).unwrap().unwrap();
    assert_eq!((net, delta.writer), (beta.id(), b1.key.id()));
    let listed = on_alpha.members(0);
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].org, listed[0].member.id), ("beta", b1.key.id()));

    // Beta's authority signs a member claiming an alpha address...
    let thief = beta.certified(
        NodeKey::from_seed(&[40; 32]),
        Ipv4Addr::new(10, 1, 0, 9),
        beta.id(),
        &[],
    );
    assert_eq!(
        on_alpha.ingest(&thief.signed(1), 0),
        Err(Reject::OutsideRange)
    );
    // ...or alpha's network: refused by alpha's partners and alpha's own ledger.
    let impostor = beta.certified(
        NodeKey::from_seed(&[41; 32]),
        Ipv4Addr::new(10, 1, 0, 10),
        alpha.id(),
        &["shared"],
    );
    assert_eq!(
        on_alpha.ingest(&impostor.signed(1), 0),
        Err(Reject::WrongNetwork)
    );
    let mut alpha_ledger = alpha.ledger(&[]);
    assert!(matches!(
        alpha_ledger.ingest(&impostor.signed(1), 0),
        Err(Reject::Cert(_))
    ));
    // ...or beta's authority record under alpha's name.
    let mut renamed = Partners::new(alpha.id());
    renamed.follow([&agreement].into_iter());
    assert_eq!(
        renamed.ingest(&beta.authority_record("alpha"), 0),
        Err(Reject::WrongName)
    );
    // A network alpha has no agreement with: nothing enters (not transitive).
    let gamma = Org::new(3, "gamma", "10.3.0.0/24");
    assert_eq!(
        on_alpha.ingest(&gamma.node(1, &[]).signed(1), 0),
        Err(Reject::NotPartner)
    );
    assert_eq!(
        on_alpha.ingest(&gamma.authority_record("gamma"), 0),
        Err(Reject::NotPartner)
    );
    for label in ["outside_range", "wrong_network", "not_partner"] {
        assert!(count(&on_alpha, label) >= 1, "{label} not counted");
    }
    assert_eq!(count(&renamed, "wrong_name"), 1);

    // Seen from beta: alpha exposes only members tagged `shared`.
    let mut on_beta = Partners::new(beta.id());
    on_beta.follow([&agreement].into_iter());
    let untagged = alpha.node(1, &[]);
    let tagged = alpha.node(2, &["shared"]);
    assert_eq!(
        on_beta.ingest(&untagged.signed(1), 0),
        Err(Reject::NotExposed)
    );
    assert!(on_beta.ingest(&tagged.signed(1), 0).unwrap().is_some());
    // A self-tagged certificate: the signature breaks.
    let mut self_tagged = alpha.node(3, &[]);
    if let Some(c) = self_tagged.record.chain.last_mut() {
        c.tags = vec!["shared".into()];
    }
    assert!(matches!(
        on_beta.ingest(&self_tagged.signed(1), 0),
        Err(Reject::Cert(_))
    ));

    // The agreement ends: beta is dropped with its records.
    assert_eq!(on_alpha.follow(std::iter::empty()), vec![beta.id()]);
    assert!(on_alpha.members(0).is_empty());
    assert_eq!(on_alpha.ingest(&b1.signed(2), 0), Err(Reject::NotPartner));
}

use crate::fixture::exchange;

#[test]
fn exposed_members_mirror_each_others_networks_and_revocations_follow() {
    use crate::contact::Contact;
    use crate::member::PartnerContacts;
    use crate::protocol::Response;
    use crate::replica::Replica;
    use std::time::Instant;
    let (alpha, beta, agreement) = alpha_beta();
    let contact = |id: NodeId| Contact {
        id,
        addrs: vec!["198.18.0.9:51821".parse().unwrap()],
    };
    let mut b1 = beta.node(1, &[]);
    let b2 = beta.node(2, &[]);
    b1.record.agreements = vec![agreement.clone()];
    let mut a1 = alpha.node(1, &[]);
    let a2 = alpha.node(2, &["shared"]);
    a1.record.agreements = vec![agreement.clone()];
    a1.record.partner_contacts = vec![PartnerContacts {
        network: beta.id(),
        members: vec![contact(b1.key.id())],
    }];
    let alpha_records = [a1.signed(1), a2.signed(1)];
    let mut on_a2 = Replica::new(alpha.ledger(&alpha_records), a2.key.id());
    let mut on_a1 = Replica::new(alpha.ledger(&alpha_records), a1.key.id());
    let mut on_b1 = Replica::new(beta.ledger(&[b1.signed(1), b2.signed(1)]), b1.key.id());
    let (now, mut rng) = (Instant::now(), rand_core::OsRng);

    // a2 (exposed) asks b1, the contact alpha's records name, and gets
    // beta's exposed records (all of them); b1 learns a2 from its summary.
    on_a2.handle_timeout(now, 0, &mut rng);
    let answers = exchange(&mut on_a2, a2.key.id(), &mut on_b1, b1.key.id());
    assert!(
        matches!(answers[0], Response::PartnerVersions { .. }),
        "{answers:?}"
    );
    let ids = |r: &Replica| -> Vec<NodeId> {
        r.roster(0)
            .members(0)
            .iter()
            .filter(|m| m.status == crate::ledger::Status::Active)
            .map(|m| m.id)
            .collect()
    };
    let on_a2_ids = ids(&on_a2);
    assert!(
        on_a2_ids.contains(&b1.key.id()) && on_a2_ids.contains(&b2.key.id()),
        "{on_a2_ids:?}"
    );
    assert!(ids(&on_b1).contains(&a2.key.id()));
    assert!(!ids(&on_b1).contains(&a1.key.id()), "a1 is not exposed");

    // a1 (not exposed) does not sync at all; a summary it sends anyway is
    // refused and its record stays out.
    on_a1.handle_timeout(now, 0, &mut rng);
    assert!(
        std::iter::from_fn(|| on_a1.poll_transmit()).all(|t| !matches!(
            t,
            crate::replica::Transmit::Request {
                request: crate::protocol::Request::PartnerSummary { .. },
                ..
            }
        ))
    );
    let sneak = crate::protocol::Request::PartnerSummary {
        agreement: agreement.id(),
        own: Some(a1.signed(1)),
        summary: sync::summary(&crate::state::State::new()),
    };
    assert!(matches!(
        on_b1.handle_request(a1.key.id(), sneak, 0),
        crate::replica::Inbound::Answer(crate::replica::Answer(Response::NotMember))
    ));
    assert!(on_b1
        .partners()
        .rejected()
        .any(|(l, n)| l == "not_exposed" && n == 1));
    assert!(!ids(&on_b1).contains(&a1.key.id()));

    // beta's authority revokes b2: a2's next sync drops it.
    let revoking = Body::Authority(AuthorityRecord {
        network: beta.id(),
        name: "beta".into(),
        cidr: beta.cidr,
        block: beta.cidr,
        mtu: 1420,
        revocations: vec![crate::cert::Revocation {
            node: b2.key.id(),
            keep: vec![],
        }],
    });
    on_b1
        .publish(
            beta.authority.sign(2, revoking.to_bytes()).encode(),
            false,
            0,
        )
        .unwrap();
    on_a2.handle_timeout(now + crate::replica::PARTNER_SYNC_EVERY, 0, &mut rng);
    exchange(&mut on_a2, a2.key.id(), &mut on_b1, b1.key.id());
    let on_a2_ids = ids(&on_a2);
    assert!(on_a2_ids.contains(&b1.key.id()), "{on_a2_ids:?}");
    assert!(
        !on_a2_ids.contains(&b2.key.id()),
        "revoked b2 still active on a2"
    );
}
