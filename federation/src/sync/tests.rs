use super::*;
use crate::record::NodeKey;

fn state(records: &[(&NodeKey, u64)]) -> State {
    let mut s = State::new();
    for (k, v) in records {
        s.ingest(&k.sign(*v, vec![]).encode()).unwrap();
    }
    s
}

/// One exchange, `asker` asking `peer`, to the end (leaves included):
/// the bytes of version lists it cost.
fn exchange(asker: &mut State, peer: &mut State) -> usize {
    let mut answer = differing(peer, &summary(asker));
    let mut listed = answer.wire_len();
    loop {
        let p = plan(asker, &answer);
        for r in records_of(peer, &p.pull) {
            asker.ingest(&r).unwrap();
        }
        for r in p.push {
            peer.ingest(&r).unwrap();
        }
        if p.leaves.is_empty() {
            return listed;
        }
        answer = leaves(peer, &p.leaves);
        listed += answer.wire_len();
    }
}

#[test]
fn equal_states_exchange_nothing_and_different_ones_repair() {
    let keys: Vec<NodeKey> = (0..50).map(|_| NodeKey::generate()).collect();
    let all: Vec<(&NodeKey, u64)> = keys.iter().map(|k| (k, 1)).collect();
    let a = state(&all);
    assert_eq!(differing(&a, &summary(&a)), Versions::default());

    let mut b_recs = all[..40].to_vec();
    b_recs[0].1 = 2; // b has a newer record of writer 0
    let mut b = state(&b_recs);
    let mut a = a;
    // b asks a: 50 writers in 64 buckets, all listed.
    let answer = differing(&a, &summary(&b));
    assert!(answer.splits.is_empty());
    let p = plan(&b, &answer);
    assert_eq!(p.pull.len(), 10, "b lacks ten writers");
    assert_eq!(p.push.len(), 1, "a has writer 0 older");
    assert!(p.leaves.is_empty());
    for r in records_of(&a, &p.pull) {
        b.ingest(&r).unwrap();
    }
    for r in p.push {
        a.ingest(&r).unwrap();
    }
    assert_eq!(a, b);
    assert_eq!(summary(&a), summary(&b));
}

#[test]
fn full_buckets_split_and_the_version_lists_stay_near_the_change() {
    let keys: Vec<NodeKey> = (0..3_000).map(|_| NodeKey::generate()).collect();
    let all: Vec<(&NodeKey, u64)> = keys.iter().map(|k| (k, 1)).collect();
    let mut a = state(&all);
    let mut b = a.clone();
    // Five writers publish version 2 at b.
    for k in &keys[..5] {
        b.ingest(&k.sign(2, vec![]).encode()).unwrap();
    }
    // a asks b: the differing buckets (~47 writers each) are split.
    let answer = differing(&b, &summary(&a));
    assert!(answer.buckets.is_empty() && answer.versions.is_empty());
    assert!((1..=5).contains(&answer.splits.len()));
    let listed = exchange(&mut a, &mut b);
    assert_eq!(a, b, "one exchange repairs");
    // Whole buckets would have listed ~47 ranks each (~2.6 KB a bucket).
    let whole = ENTRY_BYTES * 3_000 / BUCKETS * answer.splits.len();
    assert!(
        listed < whole / 2,
        "{listed} B of version lists, {whole} B for whole buckets"
    );
    // a holds one writer b lacks, in a split bucket: pushed after leaves.
    let extra = NodeKey::generate();
    a.ingest(&extra.sign(1, vec![]).encode()).unwrap();
    exchange(&mut b, &mut a);
    assert_eq!(a, b);
}

#[test]
fn a_cold_member_gets_everything_in_batches() {
    let keys: Vec<NodeKey> = (0..3_000).map(|_| NodeKey::generate()).collect();
    let all: Vec<(&NodeKey, u64)> = keys.iter().map(|k| (k, 1)).collect();
    let mut full = state(&all);
    let mut cold = state(&all[..1]);
    let mut exchanges = 0;
    while cold != full {
        let listed = exchange(&mut cold, &mut full);
        exchanges += 1;
        assert!(exchanges <= 7, "3,000 records take six batches of 512");
        // Lists of about two batches' worth, not the whole network.
        assert!(
            listed < 2 * LIST_BUDGET * ENTRY_BYTES,
            "{listed} B of version lists in one exchange"
        );
    }
}

#[test]
fn a_welcome_holds_one_batch_with_the_named_writers_first() {
    let keys: Vec<NodeKey> = (0..700).map(|_| NodeKey::generate()).collect();
    let all: Vec<(&NodeKey, u64)> = keys.iter().map(|k| (k, 1)).collect();
    let s = state(&all);
    let (a, b) = (keys[650].id(), keys[3].id());
    let welcome = first_records(&s, &[a, b]);
    assert_eq!(welcome.len(), MAX_BATCH);
    let writer = |r: &Vec<u8>| crate::record::SignedRecord::decode(r).unwrap().writer;
    assert_eq!((writer(&welcome[0]), writer(&welcome[1])), (a, b));
    let mut writers: Vec<NodeId> = welcome.iter().map(writer).collect();
    writers.sort();
    writers.dedup();
    assert_eq!(writers.len(), MAX_BATCH, "no record twice");
    // A small network's state goes whole.
    let small = state(&all[..20]);
    assert_eq!(first_records(&small, &[keys[0].id()]).len(), 20);
}

#[test]
fn malformed_answers_and_requests_are_bounded() {
    let keys: Vec<NodeKey> = (0..600).map(|_| NodeKey::generate()).collect();
    let all: Vec<(&NodeKey, u64)> = keys.iter().map(|k| (k, 1)).collect();
    let a = state(&all);
    // A summary of the wrong length: every bucket differs, none is listed.
    let answer = differing(&a, &Summary(vec![1, 2, 3]));
    assert_eq!(answer.buckets.len() + answer.splits.len(), BUCKETS);
    // Splits with the wrong number of sub-buckets ask for all their leaves;
    // out-of-range buckets are ignored.
    let bad = Versions {
        splits: vec![
            Split {
                bucket: 3,
                count: 0,
                subs: vec![0; 2],
            },
            Split {
                bucket: 200,
                count: 0,
                subs: vec![0; SUBS],
            },
        ],
        ..Versions::default()
    };
    assert_eq!(plan(&a, &bad).leaves.len(), SUBS);
    // Leaves asked twice or out of range are listed once or not at all.
    let leaf = leaf_of(&keys[0].id());
    let asked = vec![
        leaf,
        leaf,
        Leaf { bucket: 64, sub: 0 },
        Leaf { bucket: 0, sub: 32 },
    ];
    let listed = leaves(&a, &asked);
    assert_eq!(listed.leaves, vec![leaf]);
    assert!(listed.versions.iter().all(|(w, _)| leaf_of(w) == leaf));
    assert!(listed.versions.iter().any(|(w, _)| *w == keys[0].id()));
}
