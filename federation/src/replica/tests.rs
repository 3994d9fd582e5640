use super::*;
use crate::fixture::{TestMember, TestNetwork};
use crate::record::NodeKey;
use crate::sync::{Summary, Versions, BUCKETS};

const NOW_MS: u64 = 1_000;

/// A counter as the random generator: picks are predictable.
struct Counter(u32);

impl RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(1);
        self.0
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.iter_mut().for_each(|b| *b = self.next_u32() as u8);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// A replica of member 1 that knows members 1 and 2.
fn replica(net: &TestNetwork) -> (Replica, TestMember, TestMember) {
    let (a, b) = (net.member(1), net.member(2));
    let mut ledger = net.ledger();
    for m in [&a, &b] {
        ledger.ingest(&m.signed(1), NOW_MS).unwrap();
    }
    (Replica::new(ledger, a.key.id()), a, b)
}

fn drain(r: &mut Replica) -> Vec<Transmit> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

fn to(t: &[Transmit], who: &NodeId) -> usize {
    t.iter()
        .filter(|t| matches!(t, Transmit::Request { to, .. } if to == who))
        .count()
}

fn records_in(t: &[Transmit]) -> usize {
    t.iter()
        .map(|t| match t {
            Transmit::Request {
                request: Request::Push(r),
                ..
            } => r.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn an_outsider_gets_nothing_of_the_state() {
    let net = TestNetwork::new(9);
    let (mut r, _, b) = replica(&net);
    let x = NodeKey::generate().id();
    r.handle_connected(x, NOW_MS);
    assert!(drain(&mut r).is_empty(), "a summary went to an outsider");
    let nothing = Summary(vec![0; BUCKETS]);
    for request in [
        Request::Summary(nothing),
        Request::Pull(vec![b.key.id()]),
        Request::Push(vec![b.signed(2)]),
        Request::Query("{\"cmd\":\"members\"}".into()),
    ] {
        assert_eq!(
            r.handle_request(x, request, NOW_MS),
            Inbound::Answer(Answer(Response::NotMember))
        );
    }
    // Answers it was never asked for: "I have nothing" must not make us
    // push the state to it.
    assert_eq!(
        r.handle_response(x, Response::Versions(Versions::default()), NOW_MS),
        None
    );
    assert_eq!(
        r.handle_gossip(&x, &b.signed(3), NOW_MS),
        Verdict::Ignore,
        "gossip from an outsider"
    );
    assert!(drain(&mut r).is_empty());
    assert_eq!(
        r.ledger().state().rank(&b.key.id()).map(|k| k.version),
        Some(1)
    );
    let refused: BTreeMap<_, _> = r.refused().collect();
    assert_eq!(
        refused,
        BTreeMap::from([
            ("gossip", 1),
            ("pull", 1),
            ("push", 1),
            ("query", 1),
            ("response", 1),
            ("summary", 1)
        ])
    );
}

#[test]
fn a_member_just_admitted_introduces_itself_and_is_then_served() {
    let net = TestNetwork::new(9);
    let (mut r, _, _) = replica(&net);
    let n = net.member(3);
    r.handle_connected(n.key.id(), NOW_MS);
    // Someone else's record from a non-member is not an introduction.
    let other = net.member(4);
    assert_eq!(
        r.handle_request(n.key.id(), Request::Push(vec![other.signed(1)]), NOW_MS),
        Inbound::Answer(Answer(Response::NotMember))
    );
    assert_eq!(
        r.handle_request(n.key.id(), Request::Push(vec![n.signed(1)]), NOW_MS),
        Inbound::Answer(Answer(Response::Ack))
    );
    assert!(r.is_member(&n.key.id(), NOW_MS));
    let out = drain(&mut r);
    assert_eq!(to(&out, &n.key.id()), 1, "anti-entropy starts: {out:?}");
    assert!(
        out.iter().any(|t| matches!(t, Transmit::Publish(_))),
        "passed on"
    );
    assert!(
        matches!(r.poll_event(), Some(Event::Accepted { delta, .. }) if delta.writer == n.key.id())
    );

    // The newcomer's side: a member that does not know it yet answers
    // NotMember; the newcomer pushes its own record, once per connection.
    let mut mine = n_replica(&net, &n);
    let a = net.member(1);
    mine.handle_connected(a.key.id(), NOW_MS);
    drain(&mut mine);
    for _ in 0..2 {
        assert_eq!(
            mine.handle_response(a.key.id(), Response::NotMember, NOW_MS),
            Some(Response::NotMember),
            "also said to whoever asked"
        );
    }
    let out = drain(&mut mine);
    assert_eq!(records_in(&out), 1, "one introduction: {out:?}");
}

/// Member 3's replica, holding the state it got when admitted.
fn n_replica(net: &TestNetwork, n: &TestMember) -> Replica {
    let mut ledger = net.ledger();
    for m in [net.member(1), net.member(2)] {
        ledger.ingest(&m.signed(1), NOW_MS).unwrap();
    }
    ledger.ingest(&n.signed(1), NOW_MS).unwrap();
    Replica::new(ledger, n.key.id())
}

#[test]
fn two_replicas_converge_and_every_message_is_counted() {
    let net = TestNetwork::new(9);
    let (mut a, _, b_member) = replica(&net);
    let mut b = {
        let (r, _, _) = replica(&net);
        Replica::new(r.ledger().clone(), b_member.key.id())
    };
    // b learns a newer record of its own, which a lacks.
    b.publish(b_member.signed(2), false, NOW_MS).unwrap();
    let (a_id, b_id) = (net.member(1).key.id(), b_member.key.id());
    a.handle_connected(b_id, NOW_MS);
    b.handle_connected(a_id, NOW_MS);
    let mut sent = (0u64, 0u64);
    let mut gossiped = (0u64, 0u64);
    // Deliver until quiet, both ways, counting what crosses.
    let mut replicas = [(a, a_id), (b, b_id)];
    for _ in 0..10 {
        for i in 0..2 {
            let [x, y] = &mut replicas;
            let ((from, from_id), (to, to_id)) = if i == 0 { (x, y) } else { (y, x) };
            while let Some(t) = from.poll_transmit() {
                let request = match t {
                    Transmit::Request { request, .. } => request,
                    Transmit::Publish(bytes) => {
                        // Gossip is not delivered here, only counted.
                        gossiped.0 += 1;
                        gossiped.1 += bytes.len() as u64;
                        continue;
                    }
                };
                sent.0 += 1;
                sent.1 += request.payload_len() as u64;
                if let Inbound::Answer(Answer(response)) =
                    to.handle_request(*from_id, request, NOW_MS)
                {
                    sent.0 += 1;
                    sent.1 += response.payload_len() as u64;
                    from.handle_response(*to_id, response, NOW_MS);
                }
            }
        }
    }
    let [(a, _), (b, _)] = replicas;
    assert_eq!(a.ledger().state(), b.ledger().state(), "converged");
    let (ta, tb) = (a.traffic(), b.traffic());
    assert_eq!(
        (
            ta.out_messages + tb.out_messages,
            ta.out_bytes + tb.out_bytes
        ),
        (sent.0 + gossiped.0, sent.1 + gossiped.1),
        "every request, response and gossip sent is counted, pulls included"
    );
    assert_eq!(
        (ta.in_messages + tb.in_messages, ta.in_bytes + tb.in_bytes),
        sent,
        "and every one received"
    );
    assert!(
        sent.0 >= 4,
        "summary, versions, pull, records at least: {sent:?}"
    );
}

#[test]
fn anti_entropy_runs_on_its_timer_with_one_member_at_a_time() {
    let net = TestNetwork::new(9);
    let (mut r, _, b) = replica(&net);
    let start = Instant::now();
    let mut rng = Counter(0);
    r.handle_timeout(start, NOW_MS, &mut rng);
    assert!(drain(&mut r).is_empty(), "nobody connected");
    assert_eq!(r.poll_timeout(), Some(start + SYNC_EVERY));
    r.handle_connected(b.key.id(), NOW_MS);
    r.handle_connected(NodeKey::generate().id(), NOW_MS); // an outsider
    drain(&mut r);
    r.handle_timeout(start + SYNC_EVERY / 2, NOW_MS, &mut rng);
    assert!(drain(&mut r).is_empty(), "not due yet");
    r.handle_timeout(start + SYNC_EVERY, NOW_MS, &mut rng);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(to(&out, &b.key.id()), 1, "the member, never the outsider");
}

#[test]
fn a_revoked_member_is_shown_why_and_nothing_else() {
    let net = TestNetwork::new(9);
    let (mut r, a, b) = replica(&net);
    // a revokes b.
    let mut revoker = a.record.clone();
    revoker.revocations.push(crate::cert::Revocation {
        node: b.key.id(),
        keep: vec![],
    });
    let proof = a
        .key
        .sign(2, crate::member::Body::Member(revoker).to_bytes())
        .encode();
    r.publish(proof.clone(), false, NOW_MS).unwrap();
    drain(&mut r);
    r.handle_connected(b.key.id(), NOW_MS);
    let answer = r.handle_request(b.key.id(), Request::Pull(vec![a.key.id()]), NOW_MS);
    assert_eq!(
        answer,
        Inbound::Answer(Answer(Response::Revoked(vec![proof.clone()])))
    );
    let again = r.handle_request(b.key.id(), Request::Pull(vec![a.key.id()]), NOW_MS);
    assert_eq!(
        again,
        Inbound::Answer(Answer(Response::NotMember)),
        "once per connection"
    );
    // b's side: it checks the proof and knows.
    let mut ledger = net.ledger();
    for m in [&a, &b] {
        ledger.ingest(&m.signed(1), NOW_MS).unwrap();
    }
    let mut mine = Replica::new(ledger, b.key.id());
    assert_eq!(mine.standing(NOW_MS), Some(Status::Active));
    mine.handle_response(a.key.id(), Response::Revoked(vec![proof]), NOW_MS);
    assert_eq!(mine.standing(NOW_MS), Some(Status::Revoked));
    // A forged "proof" changes nothing.
    let (mut other, _, _) = replica(&net);
    let forged = NodeKey::generate().sign(9, b"{}".to_vec()).encode();
    other.handle_response(b.key.id(), Response::Revoked(vec![forged]), NOW_MS);
    assert_eq!(other.standing(NOW_MS), Some(Status::Active));
}

#[test]
fn a_stranger_answering_not_member_gets_no_introduction() {
    let net = TestNetwork::new(9);
    let (mut r, _, _) = replica(&net);
    // An outsider reached through `--via IP:PORT` answers "not a member".
    let x = NodeKey::generate().id();
    r.handle_connected(x, NOW_MS);
    assert_eq!(
        r.handle_response(x, Response::NotMember, NOW_MS),
        Some(Response::NotMember)
    );
    assert_eq!(
        records_in(&drain(&mut r)),
        0,
        "our record went to a stranger"
    );
}

#[test]
fn joins_for_another_inviter_are_forwarded_only_between_members() {
    let net = TestNetwork::new(9);
    let (mut r, a, b) = replica(&net);
    let newcomer = NodeKey::generate().id();
    let join = |inviter: Option<NodeId>| crate::protocol::JoinRequest {
        network: net.network.id,
        invite: [1; 16],
        secret: [2; 32],
        wg_key: [3; 32],
        name: "n".into(),
        address: None,
        inviter,
    };
    let ours = r.handle_request(newcomer, Request::Join(join(Some(a.key.id()))), NOW_MS);
    assert!(matches!(ours, Inbound::Join { subject, .. } if subject == newcomer));
    let theirs = r.handle_request(newcomer, Request::Join(join(Some(b.key.id()))), NOW_MS);
    assert!(
        matches!(theirs, Inbound::Forward { inviter, subject, .. } if inviter == b.key.id() && subject == newcomer)
    );
    let gone = r.handle_request(newcomer, Request::Join(join(Some(newcomer))), NOW_MS);
    assert!(
        matches!(gone, Inbound::Answer(Answer(Response::Refused(w))) if w.contains("no longer part"))
    );
    // Only a member may pass a join on, and it names the newcomer.
    let forwarded = Request::ForwardedJoin {
        subject: newcomer,
        join: join(Some(a.key.id())),
    };
    let stranger = r.handle_request(newcomer, forwarded.clone(), NOW_MS);
    assert_eq!(stranger, Inbound::Answer(Answer(Response::NotMember)));
    let member = r.handle_request(b.key.id(), forwarded, NOW_MS);
    assert!(matches!(member, Inbound::Join { subject, .. } if subject == newcomer));
}

#[test]
fn a_full_batch_of_records_is_followed_by_another_exchange_at_once() {
    let net = TestNetwork::new(9);
    let (mut r, _, b) = replica(&net);
    let summaries = |t: &[Transmit]| {
        t.iter()
            .filter(|t| {
                matches!(
                    t,
                    Transmit::Request {
                        request: Request::Summary(_),
                        ..
                    }
                )
            })
            .count()
    };
    // A short answer to a pull: the peer had no more.
    let short = vec![b.signed(2); crate::sync::MAX_BATCH - 1];
    assert_eq!(
        r.handle_response(b.key.id(), Response::Records(short), NOW_MS),
        None
    );
    assert_eq!(summaries(&drain(&mut r)), 0);
    // A full batch: it may have more, so it is asked again now, not in a round.
    let full = vec![b.signed(3); crate::sync::MAX_BATCH];
    assert_eq!(
        r.handle_response(b.key.id(), Response::Records(full), NOW_MS),
        None
    );
    let out = drain(&mut r);
    assert_eq!(summaries(&out), 1, "{out:?}");
    assert_eq!(to(&out, &b.key.id()), 1);
}

#[test]
fn an_answer_made_outside_the_replica_is_counted_once() {
    let net = TestNetwork::new(9);
    let mut r = Replica::new(net.ledger(), net.member(1).key.id());
    let before = r.traffic();
    let answer = r.answer(Response::Refused("busy".into()));
    let after = r.traffic();
    assert_eq!(after.out_messages, before.out_messages + 1);
    assert_eq!(
        after.out_bytes - before.out_bytes,
        answer.0.payload_len() as u64
    );
}
