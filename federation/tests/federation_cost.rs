//! What a federation costs the control plane, simulated at 2 × 1,000
//! members with the real code: two networks of 1,000 members each, both
//! exposing everything (the dearest case), one member of each running its
//! real [`Replica`] over a full ledger of its own network. Their partner
//! anti-entropy (summary → versions → pull) is run by hand, round by round,
//! and measured with the replica's own traffic counters (the ones
//! `status` reports):
//!
//! - cold start: rounds and bytes until one member mirrors the other
//!   network's 1,001 exposed records;
//! - quiet: the bytes of one round when nothing changed;
//! - one change and a 1 % wave (10 records) on the other side.
//!
//! Per node and second in steady state, each exposed member starts one
//! round every `PARTNER_SYNC_EVERY` and answers one on average (the other
//! side's members pick among 1,000 targets), so its partner bytes per
//! second are one round's bytes per `PARTNER_SYNC_EVERY` × 2 / 2; the
//! other network's record changes (metrics summaries every
//! `metrics_interval(1000)` per member) are pulled once by each exposed
//! member, which adds (1,000 / interval) × record size.
//!
//! It also checks that an ending reaches the other network through this
//! partner anti-entropy alone, when the `federate end` delivery missed it,
//! and that a partner member that cannot be reached is passed over at once.

use federation::agreement::{Agreement, Ending, Exposure, Offer, Side};
use federation::cert::{Cert, Claim};
use federation::contact::Contact;
use federation::member::{metrics_interval, AuthorityRecord, Body, MemberRecord, PartnerContacts};
use federation::protocol::Request;
use federation::replica::{Event, Replica, Transmit, PARTNER_SYNC_EVERY};
use federation::{Cidr, Ledger, Network, NetworkId, NodeId, NodeKey};
use std::net::Ipv4Addr;
use std::time::Instant;

const MEMBERS: u32 = 1000;

struct Org {
    authority: NodeKey,
    name: &'static str,
    cidr: Cidr,
    keys: Vec<NodeKey>,
}

impl Org {
    fn new(seed: u8, name: &'static str, cidr: &str, members: u32) -> Org {
        let keys = (0..members)
            .map(|i| {
                let mut s = [seed; 32];
                s[1..5].copy_from_slice(&i.to_le_bytes());
                NodeKey::from_seed(&s)
            })
            .collect();
        Org {
            authority: NodeKey::from_seed(&[seed; 32]),
            name,
            cidr: cidr.parse().expect("a valid range"),
            keys,
        }
    }

    fn id(&self) -> NetworkId {
        NetworkId::of(&self.authority.id())
    }

    fn side(&self) -> Side {
        Side {
            network: self.id(),
            authority: self.authority.id(),
            name: self.name.into(),
            cidr: self.cidr,
            exposes: Exposure::All,
            lends: vec![],
        }
    }

    /// Member `i`'s record, version `v`.
    fn record(&self, i: usize, v: u64, extra: impl FnOnce(&mut MemberRecord)) -> Vec<u8> {
        let key = &self.keys[i];
        let name = format!("{}-{i}", self.name);
        let mut record = MemberRecord {
            network: self.id(),
            chain: vec![Cert::issue(
                &self.authority,
                Claim {
                    network: self.id(),
                    subject: key.id(),
                    wg_key: [1; 32],
                    name: name.clone(),
                    admit: false,
                    tags: vec![],
                    issued_ms: 0,
                    expires_ms: u64::MAX,
                },
            )],
            address: Ipv4Addr::from(u32::from(self.cidr.addr()) + 1 + i as u32),
            ..MemberRecord::example(&name)
        };
        extra(&mut record);
        key.sign(v, Body::Member(record).to_bytes()).encode()
    }

    /// Member 0 carries the agreement and the other side's `contact`.
    fn carry(&self, r: &mut MemberRecord, agreement: &Agreement, contact: NodeId) {
        r.agreements = vec![agreement.clone()];
        r.partner_contacts = vec![PartnerContacts {
            network: agreement.other(&self.id()).expect("a side").network,
            members: vec![Contact {
                id: contact,
                addrs: vec!["198.18.0.9:51821".parse().expect("valid by construction")],
            }],
        }];
    }

    fn ledger(&self, agreement: &Agreement, contact: NodeId) -> Ledger {
        let mut ledger = Ledger::new(Network::of(self.authority.id()));
        let authority = Body::Authority(AuthorityRecord {
            network: self.id(),
            name: self.name.into(),
            cidr: self.cidr,
            block: self.cidr,
            mtu: 1420,
            revocations: vec![],
        });
        ledger
            .ingest(&self.authority.sign(1, authority.to_bytes()).encode(), 0)
            .expect("valid by construction");
        for i in 0..self.keys.len() {
            let r = self.record(i, 1, |r| {
                if i == 0 {
                    self.carry(r, agreement, contact);
                }
            });
            ledger.ingest(&r, 0).expect("valid by construction");
        }
        ledger
    }
}

/// One round: `x`'s timer fires, its requests go to `y` (which stands for
/// whichever member of its network `x` picked), the answers come back;
/// bytes `x` sent and received in it.
fn round(x: &mut Replica, x_id: NodeId, y: &mut Replica, y_id: NodeId, now: Instant) -> u64 {
    let before = x.traffic();
    x.handle_timeout(now, 0, &mut rand_core::OsRng);
    federation::fixture::exchange(x, x_id, y, y_id);
    let after = x.traffic();
    (after.out_bytes - before.out_bytes) + (after.in_bytes - before.in_bytes)
}

fn mirrored(x: &Replica, of: &NetworkId) -> usize {
    x.partners().ledger(of).map_or(0, |l| l.state().len())
}

/// Two networks of three members each, federated, exposing everything;
/// member 0 of each with its replica.
struct Small {
    alpha: Org,
    beta: Org,
    agreement: Agreement,
    x: (Replica, NodeId),
    y: (Replica, NodeId),
}

fn small() -> Small {
    let alpha = Org::new(1, "alpha", "10.1.0.0/16", 3);
    let beta = Org::new(2, "beta", "10.2.0.0/16", 3);
    let offer = Offer::sign(&alpha.authority, [7; 16], alpha.side(), u64::MAX);
    let agreement =
        Agreement::accept(&beta.authority, offer, beta.side(), 10).expect("valid by construction");
    let (a0, b0) = (alpha.keys[0].id(), beta.keys[0].id());
    Small {
        x: (Replica::new(alpha.ledger(&agreement, b0), a0), a0),
        y: (Replica::new(beta.ledger(&agreement, a0), b0), b0),
        alpha,
        beta,
        agreement,
    }
}

#[test]
fn a_federation_costs_each_exposed_member_a_constant_few_hundred_bytes_per_second() {
    let alpha = Org::new(1, "alpha", "10.1.0.0/16", MEMBERS);
    let beta = Org::new(2, "beta", "10.2.0.0/16", MEMBERS);
    let offer = Offer::sign(&alpha.authority, [7; 16], alpha.side(), u64::MAX);
    let agreement =
        Agreement::accept(&beta.authority, offer, beta.side(), 10).expect("valid by construction");
    let (a0, b0) = (alpha.keys[0].id(), beta.keys[0].id());
    let beta_ledger = beta.ledger(&agreement, a0);
    let mut x = Replica::new(alpha.ledger(&agreement, b0), a0);
    let mut y = Replica::new(beta_ledger, b0);
    let mut now = Instant::now();

    // Cold start: x mirrors beta.
    let (mut rounds, mut cold) = (0, 0);
    while mirrored(&x, &beta.id()) < MEMBERS as usize + 1 && rounds < 20 {
        cold += round(&mut x, a0, &mut y, b0, now);
        now += PARTNER_SYNC_EVERY;
        rounds += 1;
    }
    assert_eq!(
        mirrored(&x, &beta.id()),
        MEMBERS as usize + 1,
        "not mirrored in {rounds} rounds"
    );
    let record = beta.record(5, 2, |_| {}).len() as u64;
    eprintln!("FIGURE federation cold start at 2x{MEMBERS}: {rounds} rounds, {cold} bytes ({:.0} per mirrored record of {record} bytes)", cold as f64 / f64::from(MEMBERS + 1));

    // Quiet: one round with nothing new.
    let quiet = round(&mut x, a0, &mut y, b0, now);
    now += PARTNER_SYNC_EVERY;
    assert!(quiet < 2_000, "a quiet round costs {quiet} bytes");

    // One change, then a 1 % wave, on beta's side.
    // (y takes them as gossip would bring them.)
    let update = |y: &mut Replica, ids: std::ops::Range<usize>, v: u64| {
        for i in ids {
            let r = beta.record(i, v, |r| {
                r.labels.insert("zone".into(), format!("z{v}"));
            });
            assert!(y
                .publish(r, false, 0)
                .expect("valid by construction")
                .is_some());
        }
        std::iter::from_fn(|| y.poll_transmit()).count();
    };
    update(&mut y, 1..2, 2);
    let one = round(&mut x, a0, &mut y, b0, now);
    now += PARTNER_SYNC_EVERY;
    update(&mut y, 1..11, 3);
    let wave = round(&mut x, a0, &mut y, b0, now);
    assert!(
        one > record && one < 2 * record + 1_000,
        "one change costs {one} bytes"
    );
    assert!(
        wave > 10 * record && wave < 20 * record + 4_000,
        "a 1 % wave costs {wave} bytes"
    );
    assert_eq!(
        x.partners()
            .ledger(&beta.id())
            .and_then(|l| l.state().rank(&beta.keys[10].id()))
            .map(|r| r.version),
        Some(3),
        "the wave was not mirrored"
    );
    let churn =
        f64::from(MEMBERS) / metrics_interval(MEMBERS as usize).as_secs_f64() * record as f64;
    let per_second = quiet as f64 * 2.0 / PARTNER_SYNC_EVERY.as_secs_f64();
    eprintln!(
        "FIGURE federation at 2x{MEMBERS}, per exposed member: quiet round {quiet} bytes, one change {one} bytes, 1 % wave {wave} bytes; steady state {per_second:.0} B/s of partner anti-entropy + {churn:.0} B/s of the other side's record changes (metrics every {} s)",
        metrics_interval(MEMBERS as usize).as_secs()
    );
}

/// alpha ends the agreement and nobody tells beta: beta's member learns
/// the ending from alpha's answer to its next partner round (before, alpha
/// answered "not a member" and beta kept the agreement for ever).
#[test]
fn an_ending_reaches_the_other_network_through_partner_sync() {
    let Small {
        alpha,
        beta,
        agreement,
        x: (mut x, a0),
        y: (mut y, b0),
    } = small();
    let mut now = Instant::now();
    for _ in 0..3 {
        round(&mut y, b0, &mut x, a0, now);
        now += PARTNER_SYNC_EVERY;
    }
    assert_eq!(mirrored(&y, &alpha.id()), 4, "beta did not mirror alpha");

    // alpha's authority ends it; alpha's member 0 carries the ending.
    let ending = Ending::sign(&alpha.authority, &agreement, 20).expect("alpha's side");
    let ended = alpha.record(0, 2, |r| {
        alpha.carry(r, &agreement, b0);
        r.endings = vec![ending.clone()];
    });
    x.publish(ended, true, 0).expect("valid by construction");
    assert!(
        x.ledger().agreements().next().is_none(),
        "alpha still holds it"
    );
    std::iter::from_fn(|| x.poll_event()).count();

    // beta's next round brings the ending back, checked.
    round(&mut y, b0, &mut x, a0, now);
    let learned: Vec<Event> = std::iter::from_fn(|| y.poll_event()).collect();
    assert!(
        learned.contains(&Event::PartnerEnded(Box::new(ending.clone()))),
        "beta did not learn the ending: {learned:?}"
    );

    // Carried in beta's own record (what the agent does), beta forgets
    // alpha's records and stops asking.
    let carried = beta.record(0, 2, |r| {
        beta.carry(r, &agreement, a0);
        r.endings = vec![ending];
    });
    y.publish(carried, true, 0).expect("valid by construction");
    assert_eq!(mirrored(&y, &alpha.id()), 0, "beta kept alpha's records");
    y.handle_timeout(now + PARTNER_SYNC_EVERY, 0, &mut rand_core::OsRng);
    let asked: Vec<Request> = std::iter::from_fn(|| y.poll_transmit())
        .filter_map(|t| match t {
            Transmit::Request { request, .. } => Some(request),
            Transmit::Publish(_) => None,
        })
        .collect();
    assert!(
        !asked
            .iter()
            .any(|r| matches!(r, Request::PartnerSummary { .. })),
        "beta still runs partner rounds with alpha: {asked:?}"
    );
}

/// The members `x` sent a partner summary to.
fn partner_summaries(x: &mut Replica) -> Vec<NodeId> {
    std::iter::from_fn(|| x.poll_transmit())
        .filter_map(|t| match t {
            Transmit::Request {
                to,
                request: Request::PartnerSummary { .. },
            } => Some(to),
            _ => None,
        })
        .collect()
}

#[test]
fn a_partner_member_that_cannot_be_reached_is_passed_over_at_once() {
    let Small {
        beta,
        x: (mut x, a0),
        y: (mut y, b0),
        ..
    } = small();
    let mut now = Instant::now();
    for _ in 0..3 {
        round(&mut x, a0, &mut y, b0, now);
        now += PARTNER_SYNC_EVERY;
    }
    assert_eq!(mirrored(&x, &beta.id()), 4, "alpha did not mirror beta");
    // A round asks one beta member; the request fails (e.g. that member was
    // revoked and no longer accepts us; alpha does not know it yet).
    x.handle_timeout(now, 0, &mut rand_core::OsRng);
    let asked = partner_summaries(&mut x);
    assert_eq!(asked.len(), 1, "{asked:?}");
    x.handle_failed(asked[0], 0);
    // Another member is asked now, not in the next round (which may pick
    // the same one again).
    let next = partner_summaries(&mut x);
    assert_eq!(next.len(), 1, "nobody else was asked after the failure");
    assert_ne!(next[0], asked[0], "the member that failed was asked again");
}
