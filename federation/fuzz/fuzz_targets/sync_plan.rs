//! The anti-entropy steps on what a peer sends: a `Summary`, a `Versions`
//! answer and a request for leaves carved from the input (right-sized,
//! short, long or a real summary with a few buckets changed; known writers
//! with nearby versions, arbitrary ids, and optionally thousands of unknown
//! writers; listed leaves and splits in and out of range, of the right or a
//! wrong size, with arbitrary counts), against a small state of a few
//! records or, on a flag, one of more than `MAX_BATCH` records (whose
//! buckets are full enough to split). `differing`, `leaves`, `plan`,
//! `records_of` and `mirror_plan` (the federated variant) must not panic,
//! must return exactly what their contracts say (checked against a naive
//! reference) and never more than `MAX_BATCH` records or writers, nor
//! leaves past `LIST_BUDGET`.

#![no_main]

use federation::sync::{
    self, Leaf, Split, Summary, Versions, BUCKETS, LIST_AT_MOST, LIST_BUDGET, MAX_BATCH, SUBS,
};
use federation::{NodeId, NodeKey, Rank, SignedRecord, State};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// Writers in the small state.
const SMALL: usize = 6;
/// Writers in the large state (more than one batch).
const LARGE: usize = MAX_BATCH + 100;
/// Most extra unknown writers an input can ask for in one answer.
const MAX_BULK: usize = 3 * MAX_BATCH;

fn build(n: usize) -> State {
    let mut s = State::new();
    for i in 0..n {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        let key = NodeKey::from_seed(&seed);
        let rec = key.sign(1 + i as u64 % 3, vec![i as u8; i % 5]);
        s.insert(rec.verify().expect("own signature"));
    }
    s
}

fn states() -> &'static [State; 2] {
    static S: OnceLock<[State; 2]> = OnceLock::new();
    S.get_or_init(|| [build(SMALL), build(LARGE)])
}

fn bucket(w: &NodeId) -> usize {
    usize::from(w.0[0]) % BUCKETS
}

fn sub(w: &NodeId) -> usize {
    usize::from(w.0[1]) % SUBS
}

/// `state`'s sub-bucket hashes, naively.
fn subs_of(state: &State) -> Vec<[u64; SUBS]> {
    let mut subs = vec![[0u64; SUBS]; BUCKETS];
    for (w, r) in state.versions() {
        subs[bucket(&w)][sub(&w)] ^= sync::entry_hash(&w, &r);
    }
    subs
}

/// Leaves from the input: valid, out of range, repeated.
fn leaves(u: &mut Unstructured<'_>) -> Vec<Leaf> {
    let n = usize::from(u.arbitrary::<u8>().unwrap_or(0)) % 48;
    (0..n)
        .map(|_| {
            let raw: u16 = u.arbitrary().unwrap_or(0);
            let (bucket, sub) = ((raw >> 8) as u8, raw as u8);
            if raw & 1 == 0 {
                Leaf { bucket: bucket % 70, sub: sub % 36 }
            } else {
                Leaf { bucket: bucket % BUCKETS as u8, sub: sub % SUBS as u8 }
            }
        })
        .collect()
}

/// Splits from the input: the state's own sub-hashes with a few changed,
/// or the wrong size, for any bucket byte, with any count.
fn splits(u: &mut Unstructured<'_>, state: &State) -> Vec<Split> {
    let mine = subs_of(state);
    let n = usize::from(u.arbitrary::<u8>().unwrap_or(0)) % 6;
    (0..n)
        .map(|_| {
            let b: u8 = u.arbitrary().unwrap_or(0);
            let count: u32 = match u.arbitrary::<u8>().unwrap_or(0) % 3 {
                0 => u32::from(u.arbitrary::<u8>().unwrap_or(0)),
                1 => u.arbitrary().unwrap_or(0),
                _ => u32::MAX,
            };
            let subs = if u.arbitrary::<u8>().unwrap_or(0) % 4 == 0 {
                let len = usize::from(u.arbitrary::<u8>().unwrap_or(0)) % 40;
                (0..len).map(|_| u.arbitrary().unwrap_or(0)).collect()
            } else {
                let mut subs = mine[usize::from(b) % BUCKETS].to_vec();
                let edits: u8 = u.arbitrary().unwrap_or(0);
                for _ in 0..edits % 12 {
                    let i = usize::from(u.arbitrary::<u8>().unwrap_or(0)) % SUBS;
                    subs[i] ^= u.arbitrary::<u64>().unwrap_or(1).max(1);
                }
                subs
            };
            Split { bucket: b, count, subs }
        })
        .collect()
}

fn summary(u: &mut Unstructured<'_>, state: &State) -> Summary {
    let mode: u8 = u.arbitrary().unwrap_or(0);
    let n = match mode % 4 {
        0 => BUCKETS,
        1 => usize::from(u.arbitrary::<u8>().unwrap_or(0)),
        2 => {
            // The state's own summary with a few buckets changed.
            let mut s = sync::summary(state);
            let edits: u8 = u.arbitrary().unwrap_or(0);
            for _ in 0..edits % 8 {
                let b = usize::from(u.arbitrary::<u8>().unwrap_or(0)) % BUCKETS;
                s.0[b] ^= u.arbitrary::<u64>().unwrap_or(1).max(1);
            }
            return s;
        }
        _ => BUCKETS + 1 + usize::from(u.arbitrary::<u8>().unwrap_or(0)),
    };
    Summary((0..n).map(|_| u.arbitrary().unwrap_or(0)).collect())
}

fn node_id(u: &mut Unstructured<'_>, state: &State) -> NodeId {
    let known: Vec<NodeId> = state.versions().map(|(w, _)| w).collect();
    let kind: u8 = u.arbitrary().unwrap_or(0);
    if kind & 1 == 0 && !known.is_empty() {
        known[usize::from(u.arbitrary::<u16>().unwrap_or(0)) % known.len()]
    } else {
        NodeId(u.arbitrary().unwrap_or_default())
    }
}

fn versions(u: &mut Unstructured<'_>, state: &State) -> Versions {
    let nb = usize::from(u.arbitrary::<u8>().unwrap_or(0));
    let buckets = u.bytes(nb.min(u.len())).unwrap_or_default().to_vec();
    let n = usize::from(u.arbitrary::<u8>().unwrap_or(0)) % 64;
    let mut versions = Vec::new();
    for _ in 0..n {
        if u.is_empty() {
            break;
        }
        let w = node_id(u, state);
        let held = state.rank(&w).unwrap_or(Rank {
            version: 0,
            tag: [0; 16],
        });
        let other_tag: [u8; 16] = u.arbitrary().unwrap_or_default();
        let v = match u.arbitrary::<u8>().unwrap_or(0) % 6 {
            0 => Rank { version: held.version.saturating_sub(1), ..held },
            1 => held,
            // The same version with another body: an equivocating writer.
            2 => Rank { tag: other_tag, ..held },
            3 => Rank { version: held.version.saturating_add(1), ..held },
            4 => Rank { version: u64::MAX, tag: other_tag },
            _ => Rank { version: u.arbitrary().unwrap_or(0), tag: other_tag },
        };
        versions.push((w, v));
    }
    // Many writers we do not know, so `pull` has to be capped.
    let bulk = usize::from(u.arbitrary::<u16>().unwrap_or(0)) % (MAX_BULK + 1);
    let tag: u8 = u.arbitrary().unwrap_or(0);
    for i in 0..bulk {
        let mut id = [tag; 32];
        id[24..].copy_from_slice(&(i as u64).to_le_bytes());
        versions.push((
            NodeId(id),
            Rank {
                version: 1 + i as u64 % 4,
                tag: [tag; 16],
            },
        ));
    }
    Versions {
        buckets,
        leaves: leaves(u),
        versions,
        splits: splits(u, state),
    }
}

fn check_differing(state: &State, theirs: &Summary) -> Versions {
    let mine = sync::summary(state);
    assert_eq!(mine.0.len(), BUCKETS);
    let v = sync::differing(state, theirs);
    let differ: Vec<usize> = (0..BUCKETS)
        .filter(|b| theirs.0.len() != BUCKETS || theirs.0[*b] != mine.0[*b])
        .collect();
    let count = |b: usize| state.versions().filter(|(w, _)| bucket(w) == b).count();
    let listed: Vec<u8> = differ
        .iter()
        .filter(|b| count(**b) <= LIST_AT_MOST)
        .map(|b| *b as u8)
        .collect();
    assert_eq!(v.buckets, listed, "differing buckets listed");
    assert!(v.leaves.is_empty(), "a summary's answer lists no leaves");
    let subs = subs_of(state);
    let split: Vec<Split> = differ
        .iter()
        .filter(|b| count(**b) > LIST_AT_MOST)
        .map(|b| Split {
            bucket: *b as u8,
            count: count(*b) as u32,
            subs: subs[*b].to_vec(),
        })
        .collect();
    assert_eq!(v.splits, split, "differing buckets split");
    let wanted: BTreeSet<usize> = listed.iter().map(|b| usize::from(*b)).collect();
    let expect: Vec<(NodeId, Rank)> = state.versions().filter(|(w, _)| wanted.contains(&bucket(w))).collect();
    assert_eq!(v.versions, expect, "differing versions");
    assert!(v.versions.len() <= state.len());
    if *theirs == mine {
        assert_eq!(v, Versions::default(), "equal summaries differ");
    }
    // Our own answer asks nothing of us.
    let plan = sync::plan(state, &v);
    assert!(
        plan.pull.is_empty() && plan.push.is_empty() && plan.leaves.is_empty(),
        "a state's own answer plans an exchange"
    );
    v
}

/// `leaves`: the valid leaves asked, once each in the order asked, and
/// every (writer, rank) in them.
fn check_leaves(state: &State, asked: &[Leaf]) {
    let v = sync::leaves(state, asked);
    let mut want: Vec<Leaf> = Vec::new();
    for l in asked {
        if usize::from(l.bucket) < BUCKETS && usize::from(l.sub) < SUBS && !want.contains(l) {
            want.push(*l);
        }
    }
    assert_eq!(v.leaves, want, "leaves listed");
    assert!(v.buckets.is_empty() && v.splits.is_empty());
    let expect: Vec<(NodeId, Rank)> = state
        .versions()
        .filter(|(w, _)| want.contains(&sync::leaf_of(w)))
        .collect();
    assert_eq!(v.versions, expect, "versions in the leaves");
}

/// True if `theirs` lists `w`'s part of the writer space.
fn covers(theirs: &Versions, w: &NodeId) -> bool {
    theirs.buckets.iter().any(|b| usize::from(*b) % BUCKETS == bucket(w))
        || theirs.leaves.contains(&sync::leaf_of(w))
}

/// The leaves a plan asks for: valid, unique, each one of a split whose
/// hash differs from ours (or whose size is wrong), within the budget, and
/// every such leaf when the budget is not reached.
fn check_asked(state: &State, theirs: &Versions, asked: &[Leaf]) {
    let mine = subs_of(state);
    // The last split given for a bucket counts.
    let mut split: BTreeMap<usize, &Split> = BTreeMap::new();
    for s in theirs.splits.iter().filter(|s| usize::from(s.bucket) < BUCKETS) {
        split.insert(usize::from(s.bucket), s);
    }
    let differs = |l: &Leaf| {
        split.get(&usize::from(l.bucket)).is_some_and(|s| {
            s.subs.len() != SUBS || s.subs[usize::from(l.sub)] != mine[usize::from(l.bucket)][usize::from(l.sub)]
        })
    };
    let per_leaf = |l: &Leaf| (split[&usize::from(l.bucket)].count as usize).div_ceil(SUBS).max(1);
    let mut seen = BTreeSet::new();
    let mut reckoned = 0usize;
    for l in asked {
        assert!(usize::from(l.bucket) < BUCKETS && usize::from(l.sub) < SUBS, "leaf out of range");
        assert!(seen.insert(*l), "leaf asked twice");
        assert!(differs(l), "a leaf that does not differ is asked");
        assert!(reckoned < LIST_BUDGET, "leaves asked past the budget");
        reckoned = reckoned.saturating_add(per_leaf(l));
    }
    if reckoned < LIST_BUDGET {
        let all = split
            .keys()
            .flat_map(|b| (0..SUBS).map(move |i| Leaf { bucket: *b as u8, sub: i as u8 }))
            .filter(|l| differs(l))
            .count();
        assert_eq!(asked.len(), all, "differing leaves left out under the budget");
    }
}

fn check_plan(state: &State, theirs: &Versions) -> Vec<NodeId> {
    let sync::Plan { pull, push, leaves } = sync::plan(state, theirs);
    check_asked(state, theirs, &leaves);
    assert!(pull.len() <= MAX_BATCH, "pull of {} writers", pull.len());
    assert!(push.len() <= MAX_BATCH, "push of {} records", push.len());
    // Reference: the last rank given for a writer counts.
    let mut given: BTreeMap<NodeId, Rank> = BTreeMap::new();
    for (w, v) in &theirs.versions {
        given.insert(*w, *v);
    }
    let want_pull: Vec<NodeId> = given
        .iter()
        .filter(|(w, v)| state.rank(w).is_none_or(|r| r < **v))
        .map(|(w, _)| *w)
        .take(MAX_BATCH)
        .collect();
    assert_eq!(pull, want_pull, "pull");
    let want_push: Vec<Vec<u8>> = state
        .versions()
        .filter(|(w, v)| covers(theirs, w) && given.get(w).is_none_or(|t| t < v))
        .take(MAX_BATCH)
        .map(|(w, _)| state.get(&w).expect("held").encode())
        .collect();
    assert_eq!(push, want_push, "push");
    // (Equal to the state's records, which were verified on the way in.)
    for r in &push {
        SignedRecord::decode(r).expect("pushed record decodes");
    }
    pull
}

/// `mirror_plan` (a federated network's answer): the same pull and leaves
/// as `plan`, and to forget exactly the writers held in the listed parts
/// that the answer does not name (at most a batch).
fn check_mirror_plan(state: &State, theirs: &Versions, pull: &[NodeId]) {
    let mirror = sync::mirror_plan(state, theirs);
    assert_eq!(mirror.pull, pull, "mirror pull");
    assert_eq!(mirror.leaves, sync::plan(state, theirs).leaves, "mirror leaves");
    let forget = mirror.forget;
    let named: BTreeSet<NodeId> = theirs.versions.iter().map(|(w, _)| *w).collect();
    let want: Vec<NodeId> = state
        .versions()
        .map(|(w, _)| w)
        .filter(|w| covers(theirs, w) && !named.contains(w))
        .take(MAX_BATCH)
        .collect();
    assert_eq!(forget, want, "mirror forget");
}

fn check_records_of(state: &State, writers: &[NodeId]) {
    let out = sync::records_of(state, writers);
    assert!(out.len() <= MAX_BATCH && out.len() <= writers.len());
    let want: Vec<Vec<u8>> = writers
        .iter()
        .take(MAX_BATCH)
        .filter_map(|w| state.get(w).map(|r| r.encode()))
        .collect();
    assert_eq!(out, want, "records_of");
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let flags: u8 = u.arbitrary().unwrap_or(0);
    let state = &states()[usize::from(flags & 1)];

    let s = summary(&mut u, state);
    check_differing(state, &s);

    let v = versions(&mut u, state);
    let pull = check_plan(state, &v);
    check_mirror_plan(state, &v, &pull);
    check_leaves(state, &v.leaves);

    // A pull: what the plan asked, writers from the input, or every writer
    // we hold (more than a batch in the large state), in any mix.
    let mut writers = if flags & 2 != 0 { pull } else { Vec::new() };
    if flags & 4 != 0 {
        writers.extend(state.versions().map(|(w, _)| w));
    }
    let n = usize::from(u.arbitrary::<u8>().unwrap_or(0)) % 32;
    for _ in 0..n {
        if u.is_empty() {
            break;
        }
        writers.push(node_id(&mut u, state));
    }
    check_records_of(state, &writers);
});
