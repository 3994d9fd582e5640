//! The anti-entropy steps on what a peer sends: a `Summary` and a
//! `Versions` answer carved from the input (right-sized, short, long or a
//! real summary with a few buckets changed; known writers with nearby
//! versions, arbitrary ids, and optionally thousands of unknown writers),
//! against a small state of a few records or, on a flag, one of more than
//! `MAX_BATCH` records. `differing`, `plan`, `records_of` and
//! `mirror_plan` (the federated variant) must not panic, must return
//! exactly what their contracts say (checked against a naive
//! reference) and never more than `MAX_BATCH` records or writers.

#![no_main]

use federation::sync::{self, Summary, Versions, BUCKETS, MAX_BATCH};
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
    Versions { buckets, versions }
}

fn check_differing(state: &State, theirs: &Summary) -> Versions {
    let mine = sync::summary(state);
    assert_eq!(mine.0.len(), BUCKETS);
    let v = sync::differing(state, theirs);
    let want: Vec<u8> = (0..BUCKETS)
        .filter(|b| theirs.0.len() != BUCKETS || theirs.0[*b] != mine.0[*b])
        .map(|b| b as u8)
        .collect();
    assert_eq!(v.buckets, want, "differing buckets");
    let wanted: BTreeSet<usize> = want.iter().map(|b| usize::from(*b)).collect();
    let expect: Vec<(NodeId, Rank)> = state.versions().filter(|(w, _)| wanted.contains(&bucket(w))).collect();
    assert_eq!(v.versions, expect, "differing versions");
    assert!(v.versions.len() <= state.len());
    if *theirs == mine {
        assert_eq!(v, Versions::default(), "equal summaries differ");
    }
    // Our own answer asks nothing of us.
    let (pull, push) = sync::plan(state, &v);
    assert!(pull.is_empty() && push.is_empty(), "a state's own answer plans an exchange");
    v
}

fn check_plan(state: &State, theirs: &Versions) -> Vec<NodeId> {
    let (pull, push) = sync::plan(state, theirs);
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
    let wanted: BTreeSet<usize> = theirs.buckets.iter().map(|b| usize::from(*b) % BUCKETS).collect();
    let want_push: Vec<Vec<u8>> = state
        .versions()
        .filter(|(w, v)| wanted.contains(&bucket(w)) && given.get(w).is_none_or(|t| t < v))
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

/// `mirror_plan` (a federated network's answer): the same pull as `plan`,
/// and to forget exactly the writers held in the differing buckets that
/// the answer does not name (at most a batch).
fn check_mirror_plan(state: &State, theirs: &Versions, pull: &[NodeId]) {
    let (mirror_pull, forget) = sync::mirror_plan(state, theirs);
    assert_eq!(mirror_pull, pull, "mirror pull");
    let named: BTreeSet<NodeId> = theirs.versions.iter().map(|(w, _)| *w).collect();
    let wanted: BTreeSet<usize> = theirs.buckets.iter().map(|b| usize::from(*b) % BUCKETS).collect();
    let want: Vec<NodeId> = state
        .versions()
        .map(|(w, _)| w)
        .filter(|w| wanted.contains(&bucket(w)) && !named.contains(w))
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
