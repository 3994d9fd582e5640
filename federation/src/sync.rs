//! Anti-entropy between two members, in small steps whose cost is
//! proportional to what differs, not to the network's size:
//!
//! 1. the asker sends a [`Summary`]: 64 bucket hashes of (writer, rank);
//! 2. the peer answers, for each bucket that differs, the ranks it holds
//!    there if they are few ([`LIST_AT_MOST`]), or else the bucket's
//!    [`SUBS`] sub-bucket hashes (a *split*);
//! 3. the asker pulls what the peer ranks higher and pushes what it ranks
//!    higher in the listed buckets, and asks for the ranks in the
//!    sub-buckets (*leaves*) of a split that differ from its own, which
//!    the peer answers like step 2 and the asker plans like step 3.
//!
//! A quiet network costs one 512-byte summary each way per round whatever
//! its size. When records change, an answer lists about the changed
//! writers' leaves — ~1/2,048 of the network each — instead of whole
//! buckets (1/64), so at 10,000 members a version list stays near the size
//! of the records it announces.
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
/// Number of sub-buckets (leaves) a bucket splits into.
pub const SUBS: usize = 32;
/// A differing bucket holding at most this many writers is listed in full;
/// a fuller one is split (listing 8 ranks costs about what a split does).
pub const LIST_AT_MOST: usize = 8;
/// Most records sent in one answer (a larger gap takes several rounds).
pub const MAX_BATCH: usize = 512;
/// Leaves are asked for until the peer's answer would list about this many
/// writers (reckoned from the counts in its splits): a member that lacks
/// nearly everything (one just admitted) gets lists of two batches' worth,
/// not the whole network's.
pub const LIST_BUDGET: usize = 2 * MAX_BATCH;

/// Per bucket, the XOR of a hash of every (writer, rank) in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary(pub Vec<u64>);

/// One sub-bucket: a bucket and its sub-bucket index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Leaf {
    /// The bucket (below [`BUCKETS`]).
    pub bucket: u8,
    /// The sub-bucket within it (below [`SUBS`]).
    pub sub: u8,
}

impl Leaf {
    /// Its index among all `BUCKETS × SUBS` leaves, if it is well-formed.
    fn index(self) -> Option<usize> {
        let (b, s) = (usize::from(self.bucket), usize::from(self.sub));
        (b < BUCKETS && s < SUBS).then_some(b * SUBS + s)
    }
}

/// The leaf `writer` falls in (its bucket is `leaf_of(w).bucket`).
pub fn leaf_of(writer: &NodeId) -> Leaf {
    Leaf {
        bucket: writer.0[0] % BUCKETS as u8,
        sub: writer.0[1] % SUBS as u8,
    }
}

fn bucket(writer: &NodeId) -> usize {
    usize::from(leaf_of(writer).bucket)
}

fn leaf_index(writer: &NodeId) -> usize {
    let l = leaf_of(writer);
    usize::from(l.bucket) * SUBS + usize::from(l.sub)
}

/// The hash a (writer, rank) adds (XOR) to its bucket and its leaf.
pub fn entry_hash(writer: &NodeId, rank: &Rank) -> u64 {
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

/// A differing bucket too full to list: its sub-bucket hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The bucket.
    pub bucket: u8,
    /// How many writers the peer holds in it.
    #[serde(default)]
    pub count: u32,
    /// Per sub-bucket, the XOR of its entries' hashes ([`SUBS`] of them).
    pub subs: Vec<u64>,
}

impl Split {
    /// The writers a leaf of it is reckoned to list: at least one.
    fn per_leaf(&self) -> usize {
        usize::try_from(self.count)
            .unwrap_or(usize::MAX)
            .div_ceil(SUBS)
            .max(1)
    }
}

/// A peer's answer to a summary or to a request for leaves: the parts of
/// the writer space it lists in full with its ranks there, and the
/// differing buckets it split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// Buckets listed in full.
    pub buckets: Vec<u8>,
    /// Leaves listed in full.
    #[serde(default)]
    pub leaves: Vec<Leaf>,
    /// The answering peer's (writer, rank) in the listed buckets and leaves.
    pub versions: Vec<(NodeId, Rank)>,
    /// Differing buckets too full to list.
    #[serde(default)]
    pub splits: Vec<Split>,
}

/// Bytes one (writer, rank) entry of [`Versions`] stands for (writer,
/// version, tag), for traffic counters.
pub const ENTRY_BYTES: usize = 32 + 8 + 16;

impl Versions {
    /// Payload bytes (for traffic counters): a byte per bucket, two per
    /// leaf, [`ENTRY_BYTES`] per rank, 5 bytes and `8 × SUBS` per split.
    pub fn wire_len(&self) -> usize {
        self.buckets.len()
            + 2 * self.leaves.len()
            + ENTRY_BYTES * self.versions.len()
            + self
                .splits
                .iter()
                .map(|s| 5 + 8 * s.subs.len())
                .sum::<usize>()
    }
}

/// Step 2: the buckets where `theirs` differs from `state`'s summary,
/// listed or split. A malformed summary counts as all buckets differing.
pub fn differing(state: &State, theirs: &Summary) -> Versions {
    differing_of(state.versions().collect(), theirs)
}

/// [`differing`] over a set of (writer, rank).
pub fn differing_of(versions: Vec<(NodeId, Rank)>, theirs: &Summary) -> Versions {
    // Each entry hashed once, for its bucket and (if split) its leaf.
    let entry_hashes: Vec<u64> = versions.iter().map(|(w, r)| entry_hash(w, r)).collect();
    let mut hashes = [0u64; BUCKETS];
    let mut counts = [0usize; BUCKETS];
    for ((w, _), h) in versions.iter().zip(&entry_hashes) {
        hashes[bucket(w)] ^= h;
        counts[bucket(w)] += 1;
    }
    let differs = |b: usize| theirs.0.len() != BUCKETS || theirs.0[b] != hashes[b];
    let mut listed = [false; BUCKETS];
    let mut subs = vec![[0u64; SUBS]; BUCKETS];
    let mut answer = Versions::default();
    for b in (0..BUCKETS).filter(|b| differs(*b)) {
        listed[b] = counts[b] <= LIST_AT_MOST;
        if listed[b] {
            answer.buckets.push(b as u8);
        }
    }
    for ((w, r), h) in versions.into_iter().zip(entry_hashes) {
        let b = bucket(&w);
        if listed[b] {
            answer.versions.push((w, r));
        } else if differs(b) {
            subs[b][usize::from(leaf_of(&w).sub)] ^= h;
        }
    }
    answer.splits = (0..BUCKETS)
        .filter(|b| differs(*b) && !listed[*b])
        .map(|b| Split {
            bucket: b as u8,
            count: u32::try_from(counts[b]).unwrap_or(u32::MAX),
            subs: subs[b].to_vec(),
        })
        .collect();
    answer
}

/// Answer to a request for `leaves`: the ranks `state` holds in them.
pub fn leaves(state: &State, leaves: &[Leaf]) -> Versions {
    leaves_of(state.versions(), leaves)
}

/// [`leaves`] over a set of (writer, rank). Malformed leaves are left out.
pub fn leaves_of(versions: impl Iterator<Item = (NodeId, Rank)>, leaves: &[Leaf]) -> Versions {
    let mut wanted = vec![false; BUCKETS * SUBS];
    let mut listed = Vec::new();
    for leaf in leaves {
        if let Some(i) = leaf.index().filter(|i| !wanted[*i]) {
            wanted[i] = true;
            listed.push(*leaf);
        }
    }
    Versions {
        leaves: listed,
        versions: versions.filter(|(w, _)| wanted[leaf_index(w)]).collect(),
        ..Versions::default()
    }
}

/// What to do with a peer's [`Versions`] (step 3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Writers to pull from the peer (at most [`MAX_BATCH`]).
    pub pull: Vec<NodeId>,
    /// Our records to push to it (at most [`MAX_BATCH`]).
    pub push: Vec<Vec<u8>>,
    /// Leaves of its splits that differ from ours: to ask it for (within
    /// [`LIST_BUDGET`]).
    pub leaves: Vec<Leaf>,
}

/// Step 3: from the peer's answer, which writers to pull from it, which
/// of our records to push to it, and which leaves to ask it for.
pub fn plan(state: &State, theirs: &Versions) -> Plan {
    let read = read_answer(state, theirs);
    let push = state
        .versions()
        .filter(|(w, v)| read.covers(w) && read.ranks.get(w).is_none_or(|t| t < v))
        .filter_map(|(w, _)| state.get(&w).map(|r| r.encode()))
        .take(MAX_BATCH)
        .collect();
    Plan {
        pull: read.pull,
        push,
        leaves: read.leaves,
    }
}

/// Step 3 against a network that is the only source of its records (a
/// federated one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirror {
    /// Writers to pull (at most [`MAX_BATCH`]).
    pub pull: Vec<NodeId>,
    /// Writers held here, in the parts the answer lists, that the other
    /// side no longer has (to forget; at most [`MAX_BATCH`]).
    pub forget: Vec<NodeId>,
    /// Leaves of its splits that differ from ours: to ask it for.
    pub leaves: Vec<Leaf>,
}

/// [`plan`] for a mirror of a federated network's exposed records.
pub fn mirror_plan(state: &State, theirs: &Versions) -> Mirror {
    let read = read_answer(state, theirs);
    let forget = state
        .versions()
        .filter(|(w, _)| read.covers(w) && !read.ranks.contains_key(w))
        .map(|(w, _)| w)
        .take(MAX_BATCH)
        .collect();
    Mirror {
        pull: read.pull,
        forget,
        leaves: read.leaves,
    }
}

/// A peer's answer as read against our state.
struct Read {
    /// Listed buckets, then listed leaves, by index.
    whole: [bool; BUCKETS],
    leaf: Vec<bool>,
    /// Its ranks by writer.
    ranks: BTreeMap<NodeId, Rank>,
    /// Writers it ranks higher than we do (at most [`MAX_BATCH`]).
    pull: Vec<NodeId>,
    /// Leaves of its splits whose hash differs from ours (within
    /// [`LIST_BUDGET`]).
    leaves: Vec<Leaf>,
}

impl Read {
    /// True if the answer lists `writer`'s part of the writer space.
    fn covers(&self, writer: &NodeId) -> bool {
        self.whole[bucket(writer)] || self.leaf[leaf_index(writer)]
    }
}

/// Reads `theirs` against `state`: what it lists, what to pull, and which
/// leaves of its splits to ask for.
fn read_answer(state: &State, theirs: &Versions) -> Read {
    let mut whole = [false; BUCKETS];
    theirs
        .buckets
        .iter()
        .for_each(|b| whole[usize::from(*b) % BUCKETS] = true);
    let mut leaf = vec![false; BUCKETS * SUBS];
    theirs
        .leaves
        .iter()
        .filter_map(|l| l.index())
        .for_each(|i| leaf[i] = true);
    // Our sub-bucket hashes in the buckets the peer split.
    let mut split: Vec<Option<&Split>> = vec![None; BUCKETS];
    theirs
        .splits
        .iter()
        .filter(|s| usize::from(s.bucket) < BUCKETS)
        .for_each(|s| split[usize::from(s.bucket)] = Some(s));
    let mut subs = vec![[0u64; SUBS]; BUCKETS];
    for (w, r) in state.versions().filter(|(w, _)| split[bucket(w)].is_some()) {
        subs[bucket(&w)][usize::from(leaf_of(&w).sub)] ^= entry_hash(&w, &r);
    }
    let mut leaves = Vec::new();
    let mut budget = LIST_BUDGET;
    for (b, s) in split.iter().enumerate() {
        let Some(s) = s else { continue };
        let malformed = s.subs.len() != SUBS;
        for i in (0..SUBS).filter(|i| malformed || s.subs[*i] != subs[b][*i]) {
            if budget == 0 {
                break;
            }
            budget = budget.saturating_sub(s.per_leaf());
            leaves.push(Leaf {
                bucket: b as u8,
                sub: i as u8,
            });
        }
    }
    let ranks: BTreeMap<NodeId, Rank> = theirs.versions.iter().copied().collect();
    let pull = ranks
        .iter()
        .filter(|(w, v)| state.rank(w).is_none_or(|r| r < **v))
        .map(|(w, _)| *w)
        .take(MAX_BATCH)
        .collect();
    Read {
        whole,
        leaf,
        ranks,
        pull,
        leaves,
    }
}

/// What a member just admitted gets with its welcome: the records of
/// `first` (the network's authority, the admitter), then others in state
/// order, [`MAX_BATCH`] in all. It pulls the rest by anti-entropy, batch
/// after batch, once its agent runs.
pub fn first_records(state: &State, first: &[NodeId]) -> Vec<Vec<u8>> {
    let firsts = first.iter().filter_map(|w| state.get(w));
    let rest = state
        .versions()
        .filter(|(w, _)| !first.contains(w))
        .filter_map(|(w, _)| state.get(&w));
    firsts
        .chain(rest)
        .take(MAX_BATCH)
        .map(|r| r.encode())
        .collect()
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
mod tests;
