//! Anti-entropy between two members, in three small steps whose cost is
//! proportional to what differs, not to the network's size:
//!
//! 1. the asker sends a [`Summary`]: 64 bucket hashes of (writer, rank);
//! 2. the peer answers with the ranks it holds in the buckets that differ;
//! 3. the asker pulls what the peer ranks higher and pushes what it ranks
//!    higher.
//!
//! A rank is a version and a body hash ([`Rank`]), the order the ledger and
//! the state keep too: two members holding different bodies of one version
//! see their summaries differ and end with the same one.

use crate::record::{NodeId, Rank};
use crate::state::State;
use blake2::digest::{FixedOutput, Update};
use blake2::Blake2s256;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Number of summary buckets.
pub const BUCKETS: usize = 64;
/// Most records sent in one answer (a larger gap takes several rounds).
pub const MAX_BATCH: usize = 512;

/// Per bucket, the XOR of a hash of every (writer, rank) in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary(pub Vec<u64>);

fn bucket(writer: &NodeId) -> usize {
    usize::from(writer.0[0]) % BUCKETS
}

fn entry_hash(writer: &NodeId, rank: &Rank) -> u64 {
    let mut h = Blake2s256::default();
    Update::update(&mut h, &writer.0);
    Update::update(&mut h, &rank.version.to_le_bytes());
    Update::update(&mut h, &rank.tag);
    let full: [u8; 32] = h.finalize_fixed().into();
    let mut b = [0u8; 8];
    b.copy_from_slice(&full[..8]);
    u64::from_le_bytes(b)
}

/// The summary of `state`.
pub fn summary(state: &State) -> Summary {
    summary_of(state.versions())
}

/// The summary of a set of (writer, rank): a state's, or the part of it
/// exposed to a federated network.
pub fn summary_of(versions: impl Iterator<Item = (NodeId, Rank)>) -> Summary {
    let mut buckets = vec![0u64; BUCKETS];
    for (w, r) in versions {
        buckets[bucket(&w)] ^= entry_hash(&w, &r);
    }
    Summary(buckets)
}

/// Step 2's answer: which buckets differ, and the peer's ranks in them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// Indices of the buckets that differ.
    pub buckets: Vec<u8>,
    /// The answering peer's (writer, rank) in those buckets.
    pub versions: Vec<(NodeId, Rank)>,
}

/// Bytes one (writer, rank) entry of [`Versions`] stands for (writer,
/// version, tag), for traffic counters.
pub const ENTRY_BYTES: usize = 32 + 8 + 16;

/// Step 2: the buckets where `theirs` differs from `state`'s summary and
/// the ranks `state` holds in them. A malformed summary counts as all
/// buckets differing.
pub fn differing(state: &State, theirs: &Summary) -> Versions {
    differing_of(state.versions().collect(), theirs)
}

/// [`differing`] over a set of (writer, rank).
pub fn differing_of(versions: Vec<(NodeId, Rank)>, theirs: &Summary) -> Versions {
    let mine = summary_of(versions.iter().copied());
    let buckets: Vec<u8> = (0..BUCKETS)
        .filter(|b| theirs.0.len() != BUCKETS || theirs.0[*b] != mine.0[*b])
        .map(|b| b as u8)
        .collect();
    let mut wanted = [false; BUCKETS];
    buckets.iter().for_each(|b| wanted[usize::from(*b)] = true);
    Versions {
        versions: versions
            .into_iter()
            .filter(|(w, _)| wanted[bucket(w)])
            .collect(),
        buckets,
    }
}

/// Step 3: from the peer's answer, which writers to pull from it and which
/// of our records to push to it (each capped at [`MAX_BATCH`]).
pub fn plan(state: &State, theirs: &Versions) -> (Vec<NodeId>, Vec<Vec<u8>>) {
    let (wanted, versions, pull) = read_answer(state, theirs);
    let push: Vec<Vec<u8>> = state
        .versions()
        .filter(|(w, v)| wanted[bucket(w)] && versions.get(w).is_none_or(|t| t < v))
        .filter_map(|(w, _)| state.get(&w).map(|r| r.encode()))
        .take(MAX_BATCH)
        .collect();
    (pull, push)
}

/// Step 3 against a network that is the only source of its records (a
/// federated one): the writers to pull, and the writers held here, in the
/// buckets that differ, that the other side no longer has (to forget).
pub fn mirror_plan(state: &State, theirs: &Versions) -> (Vec<NodeId>, Vec<NodeId>) {
    let (wanted, versions, pull) = read_answer(state, theirs);
    let forget = state
        .versions()
        .filter(|(w, _)| wanted[bucket(w)] && !versions.contains_key(w))
        .map(|(w, _)| w)
        .take(MAX_BATCH)
        .collect();
    (pull, forget)
}

/// The buckets a peer's answer covers, its ranks by writer, and the
/// writers it ranks higher than `state` (to pull, at most [`MAX_BATCH`]).
fn read_answer(
    state: &State,
    theirs: &Versions,
) -> ([bool; BUCKETS], BTreeMap<NodeId, Rank>, Vec<NodeId>) {
    let mut wanted = [false; BUCKETS];
    theirs
        .buckets
        .iter()
        .for_each(|b| wanted[usize::from(*b) % BUCKETS] = true);
    let versions: BTreeMap<NodeId, Rank> = theirs.versions.iter().copied().collect();
    let pull = versions
        .iter()
        .filter(|(w, v)| state.rank(w).is_none_or(|r| r < **v))
        .map(|(w, _)| *w)
        .take(MAX_BATCH)
        .collect();
    (wanted, versions, pull)
}

/// The encoded records of `writers` that `state` holds (answer to a pull).
pub fn records_of(state: &State, writers: &[NodeId]) -> Vec<Vec<u8>> {
    writers
        .iter()
        .take(MAX_BATCH)
        .filter_map(|w| state.get(w).map(|r| r.encode()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NodeKey;

    fn state(records: &[(&NodeKey, u64)]) -> State {
        let mut s = State::new();
        for (k, v) in records {
            s.ingest(&k.sign(*v, vec![]).encode()).unwrap();
        }
        s
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
        // b asks a.
        let answer = differing(&a, &summary(&b));
        let (pull, push) = plan(&b, &answer);
        assert_eq!(pull.len(), 10, "b lacks ten writers");
        assert_eq!(push.len(), 1, "a has writer 0 older");
        for r in records_of(&a, &pull) {
            b.ingest(&r).unwrap();
        }
        for r in push {
            a.ingest(&r).unwrap();
        }
        assert_eq!(a, b);
        assert_eq!(summary(&a), summary(&b));
    }
}
