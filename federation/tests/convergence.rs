//! Simulation of the control plane's anti-entropy ([`federation::sync`]) over
//! a lossy in-memory network: every member ends with every member's latest
//! record, and the bytes it costs stay proportional to what differs.
//!
//! # Protocol (as the agent runs it)
//!
//! Each round every member starts one exchange with a random other member:
//!
//! 1. the asker sends `sync::summary` of its state (64 bucket hashes);
//! 2. the peer answers `sync::differing`: for each bucket that differs, the
//!    (writer, rank) pairs it holds there, or the bucket's sub-bucket
//!    hashes if it holds more than `sync::LIST_AT_MOST` (a split);
//! 3. the asker runs `sync::plan` on that answer, sends `Pull(writers)`, which
//!    the peer answers with `sync::records_of`, `Push(records)`, which the
//!    peer ingests (the agent's `Ack` is not modelled), and `Leaves(leaves)`
//!    for the sub-buckets of a split that differ, which the peer answers
//!    with `sync::leaves` and the asker plans like step 3;
//! 4. an answer to a pull that fills a batch (`MAX_BATCH` records) makes the
//!    asker start another exchange with that peer at once, as the agent
//!    does (how a member just admitted streams the state).
//!
//! Only anti-entropy is simulated. The agent also gossips each new record
//! once it has it; gossip is an optimisation on top that makes updates
//! arrive sooner, and anti-entropy alone must (and here does) converge.
//!
//! # Network
//!
//! Messages travel through one pool per round and are delivered in random
//! order; each delivery is lost with `loss` percent probability, and with
//! `dup` percent probability a copy is put back into the pool to arrive
//! again later. A round ends when nothing is left in flight. After the cold
//! start, `down` percent of the members crash: they start no exchange and
//! every message to them is lost (sent, never received); the update phases
//! converge when every member still up holds every latest record. All
//! randomness (keys included) comes from a xorshift generator, so a failure
//! replays from its seed.
//!
//! # Bytes
//!
//! Counted per member, sent and received (a lost message is sent, not
//! received; a duplicate is received twice): summary 64 × 8 bytes, versions
//! `Versions::wire_len` (a byte per listed bucket, two per listed leaf, 56
//! per (writer, version, body tag), 5 + 32 × 8 per split), leaves two bytes
//! each, pull 32 per writer, records their encoded length. Transport and serialisation framing (QUIC,
//! request-response headers, CBOR) and the push's `Ack` are not counted.
//!
//! # Records, and verifying each one once
//!
//! Each member writes one record whose 1,500-byte body stands for the
//! ~1.5 KB JSON member record of the real system. Every record is signed
//! once and verified once, in the [`Book`]. A real member verifies each
//! record it receives once; doing that at every simulated member would cost
//! N² signature checks, which 5,000 members cannot afford, so the
//! simulation does not repeat it: a received record is decoded from its
//! wire bytes, checked to be identical to the verified one in the book, and
//! that [`Verified`] value is inserted with `State::insert`.
//!
//! # Two replicas, one behaviour
//!
//! [`Real`] is a [`State`] driven by the functions of [`federation::sync`]
//! themselves. Holding 5,000 full states of 5,000 records of 1.6 KB is 40
//! GB, so [`Model`] keeps only a version per writer and its summary updated
//! in place, and takes every record's leaf and hash from `federation::sync`.
//! The tests run both under the same seed and require identical results,
//! message for message and byte for byte, and compare each step of both on
//! states that differ by more than a batch ([`MAX_BATCH`]), as in large
//! networks; the example
//! (`cargo run --release -p federation --example convergence`) uses the
//! model for large networks.

use federation::sync::{
    self, Leaf, Split, Summary, Versions, BUCKETS, LIST_AT_MOST, MAX_BATCH, SUBS,
};
use federation::{Ingest, NodeId, NodeKey, SignedRecord, State, Verified};
use std::cell::OnceCell;
use std::fmt;
use std::rc::Rc;

/// Body length of a simulated member record (a real one is ~1.5 KB of JSON).
pub const BODY_LEN: usize = 1_500;

/// Deterministic xorshift64 generator, so failures replay.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (zero, a fixed point of xorshift, is replaced).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.next() % 100 < u64::from(percent)
    }
}

/// One signed and verified version of a writer's record.
struct Entry {
    verified: Verified,
    /// Its contribution to its bucket of a summary.
    hash: u64,
    /// Its encoded length on the wire.
    wire_len: usize,
}

/// Every record of the simulated network, each signed once and verified
/// once. Writers are numbered in `NodeId` order, the order in which a
/// [`State`] lists them.
pub struct Book {
    keys: Vec<NodeKey>,
    ids: Vec<NodeId>,
    /// Summary bucket of each writer.
    bucket: Vec<usize>,
    /// Sub-bucket of each writer within its bucket.
    sub: Vec<usize>,
    /// Per writer, its versions 1, 2, ...
    records: Vec<Vec<Entry>>,
}

impl Book {
    /// `members` keys drawn from `rng`, each with version 1 of its record.
    pub fn new(members: usize, rng: &mut Rng) -> Result<Self, String> {
        let mut keys: Vec<NodeKey> = (0..members)
            .map(|_| {
                let mut seed = [0u8; 32];
                seed.chunks_mut(8)
                    .for_each(|c| c.copy_from_slice(&rng.next().to_le_bytes()));
                NodeKey::from_seed(&seed)
            })
            .collect();
        keys.sort_by_key(NodeKey::id);
        let ids: Vec<NodeId> = keys.iter().map(NodeKey::id).collect();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("two members drew the same key".into());
        }
        let mut book = Self {
            keys,
            bucket: ids
                .iter()
                .map(|w| usize::from(sync::leaf_of(w).bucket))
                .collect(),
            sub: ids
                .iter()
                .map(|w| usize::from(sync::leaf_of(w).sub))
                .collect(),
            ids,
            records: (0..members).map(|_| Vec::new()).collect(),
        };
        for writer in 0..members {
            book.publish(writer)?;
        }
        Ok(book)
    }

    /// Signs (and verifies, once) the next version of `writer`'s record.
    pub fn publish(&mut self, writer: usize) -> Result<(), String> {
        let version = self.records[writer].len() as u64 + 1;
        let mut body =
            format!("{{\"member\":{writer},\"version\":{version},\"pad\":\"").into_bytes();
        body.resize(BODY_LEN - 2, b'.');
        body.extend_from_slice(b"\"}");
        let record = self.keys[writer].sign(version, body);
        let wire_len = record.encode().len();
        let verified = record
            .verify()
            .map_err(|e| format!("a freshly signed record does not verify: {e}"))?;
        // The bucket and hash sync::summary gives this record, alone in a state.
        let mut alone = State::new();
        alone.insert(verified.clone());
        let Summary(buckets) = sync::summary(&alone);
        let (bucket, &hash) = buckets
            .iter()
            .enumerate()
            .find(|(_, h)| **h != 0)
            .ok_or("a record's summary hash is zero")?;
        if bucket != self.bucket[writer] {
            return Err("a record's summary bucket is not its writer's leaf's".into());
        }
        self.records[writer].push(Entry {
            verified,
            hash,
            wire_len,
        });
        Ok(())
    }

    /// A state holding every writer's latest record (what one member of a
    /// converged network holds).
    pub fn full_state(&self) -> State {
        let mut state = State::new();
        for w in 0..self.len() {
            state.insert(self.entry(w, self.latest(w)).verified.clone());
        }
        state
    }

    /// Number of writers.
    fn len(&self) -> usize {
        self.ids.len()
    }

    /// The latest version of `writer`'s record.
    fn latest(&self, writer: usize) -> u32 {
        self.records[writer].len() as u32
    }

    fn entry(&self, writer: usize, version: u32) -> &Entry {
        &self.records[writer][version as usize - 1]
    }

    /// The verified record identical to `record`, if the book signed it.
    fn verified(&self, record: &SignedRecord) -> Result<&Verified, String> {
        let writer = self
            .ids
            .binary_search(&record.writer)
            .map_err(|_| "a record from an unknown writer")?;
        let entry = usize::try_from(record.version)
            .ok()
            .and_then(|v| self.records[writer].get(v.checked_sub(1)?))
            .ok_or("a record of a version never signed")?;
        if entry.verified.record() != record {
            return Err("a record differs from the one its writer signed".into());
        }
        Ok(&entry.verified)
    }
}

/// One member's copy of the network's state and its side of the steps.
pub trait Replica: Sized {
    /// Step 2's answer (and the answer to a leaves request).
    type Versions;
    /// The writers asked for in step 3.
    type Pull;
    /// Records on the wire: a push, or the answer to a pull.
    type Records;

    /// A member that knows only its own record.
    fn new(book: &Book, me: usize) -> Self;
    /// Takes the latest version of `writer`'s record (its writer publishing).
    fn publish(&mut self, book: &Book, writer: usize);
    /// Step 1.
    fn summary(&self) -> Summary;
    /// Step 2.
    fn differing(&self, book: &Book, theirs: &Summary) -> Self::Versions;
    /// The answer to a request for leaves.
    fn leaves(&self, book: &Book, leaves: &[Leaf]) -> Self::Versions;
    /// Called once converged, before the quiet rounds that measure what a
    /// network costs when nothing changes.
    fn quiet(&mut self) {}
    /// Step 3: what to pull from the peer, what to push to it, and which
    /// leaves to ask it for.
    fn plan(&self, book: &Book, theirs: &Self::Versions) -> (Self::Pull, Self::Records, Vec<Leaf>);
    /// The answer to a pull.
    fn records_of(&self, writers: &Self::Pull) -> Self::Records;
    /// Takes received records.
    fn ingest(&mut self, book: &Book, records: &Self::Records) -> Result<(), String>;
    /// True if this member holds every writer's latest record (records
    /// only ever come from the book, so the same versions mean the same
    /// records).
    fn complete(&self, book: &Book) -> bool;
    /// Wire size of a step-2 answer.
    fn versions_bytes(versions: &Self::Versions) -> usize;
    /// Wire size of a pull.
    fn pull_bytes(writers: &Self::Pull) -> usize;
    /// Number of records.
    fn records_len(records: &Self::Records) -> usize;
    /// Wire size of records.
    fn records_bytes(book: &Book, records: &Self::Records) -> usize;
}

/// The real thing: a [`State`] and the functions of [`federation::sync`].
///
/// Two shortcuts save time (in debug builds, hashing summaries dominates
/// the tests) without changing any answer. Its summary is kept until the
/// state changes, as it is a function of the state. And during the cold
/// start and the update waves, a summary equal to its own is answered with
/// no versions without calling `sync::differing`, which would compute the
/// summary again and find no bucket differing; the quiet rounds, which
/// measure what a converged network costs, call `sync::differing` for
/// every summary and so check that case of the protocol itself.
pub struct Real {
    state: State,
    summary: OnceCell<Summary>,
    /// True until the quiet rounds: equal summaries answered without sync.
    shortcut: bool,
}

impl Replica for Real {
    type Versions = Versions;
    type Pull = Vec<NodeId>;
    type Records = Vec<Vec<u8>>;

    fn new(book: &Book, me: usize) -> Self {
        let mut real = Self {
            state: State::new(),
            summary: OnceCell::new(),
            shortcut: true,
        };
        real.publish(book, me);
        real
    }

    fn publish(&mut self, book: &Book, writer: usize) {
        let latest = book.entry(writer, book.latest(writer));
        if self.state.insert(latest.verified.clone()) == Ingest::Newer {
            self.summary.take();
        }
    }

    fn summary(&self) -> Summary {
        self.summary
            .get_or_init(|| sync::summary(&self.state))
            .clone()
    }

    fn differing(&self, _: &Book, theirs: &Summary) -> Versions {
        if self.shortcut && self.summary.get() == Some(theirs) {
            return Versions::default();
        }
        sync::differing(&self.state, theirs)
    }

    fn leaves(&self, _: &Book, leaves: &[Leaf]) -> Versions {
        sync::leaves(&self.state, leaves)
    }

    fn quiet(&mut self) {
        self.shortcut = false;
    }

    fn plan(&self, _: &Book, theirs: &Versions) -> (Vec<NodeId>, Vec<Vec<u8>>, Vec<Leaf>) {
        let plan = sync::plan(&self.state, theirs);
        (plan.pull, plan.push, plan.leaves)
    }

    fn records_of(&self, writers: &Vec<NodeId>) -> Vec<Vec<u8>> {
        sync::records_of(&self.state, writers)
    }

    fn ingest(&mut self, book: &Book, records: &Vec<Vec<u8>>) -> Result<(), String> {
        for bytes in records {
            let record = SignedRecord::decode(bytes).map_err(|e| e.to_string())?;
            // Stands for `State::ingest`, whose signature check the book did once.
            if self.state.insert(book.verified(&record)?.clone()) == Ingest::Newer {
                self.summary.take();
            }
        }
        Ok(())
    }

    fn complete(&self, book: &Book) -> bool {
        self.state.len() == book.len()
            && self
                .state
                .versions()
                .enumerate()
                .all(|(i, (w, v))| w == book.ids[i] && v.version == u64::from(book.latest(i)))
    }

    fn versions_bytes(versions: &Versions) -> usize {
        versions.wire_len()
    }

    fn pull_bytes(writers: &Vec<NodeId>) -> usize {
        32 * writers.len()
    }

    fn records_len(records: &Vec<Vec<u8>>) -> usize {
        records.len()
    }

    fn records_bytes(_: &Book, records: &Vec<Vec<u8>>) -> usize {
        records.iter().map(Vec::len).sum()
    }
}

/// A compact replica for large networks: per writer the version held (0 for
/// none), and the summary and sub-bucket hashes kept up to date as records
/// arrive. It makes the same decisions as [`Real`], in the same order, with
/// writers as numbers.
pub struct Model {
    held: Vec<u32>,
    buckets: [u64; BUCKETS],
    /// Writers held per bucket.
    counts: [usize; BUCKETS],
    /// Sub-bucket hashes, `SUBS` per bucket.
    subs: Vec<u64>,
}

/// [`Model`]'s step-2 answer: [`Versions`] with writers as numbers.
pub struct ModelVersions {
    buckets: Vec<u8>,
    leaves: Vec<Leaf>,
    /// (writer, version), in writer order.
    entries: Vec<(u32, u32)>,
    splits: Vec<Split>,
}

impl Model {
    fn empty(book: &Book) -> Self {
        Self {
            held: vec![0; book.len()],
            buckets: [0; BUCKETS],
            counts: [0; BUCKETS],
            subs: vec![0; BUCKETS * SUBS],
        }
    }

    fn take(&mut self, book: &Book, writer: usize, version: u32) {
        let b = book.bucket[writer];
        let leaf = b * SUBS + book.sub[writer];
        if self.held[writer] > 0 {
            let old = book.entry(writer, self.held[writer]).hash;
            self.buckets[b] ^= old;
            self.subs[leaf] ^= old;
        } else {
            self.counts[b] += 1;
        }
        let new = book.entry(writer, version).hash;
        self.buckets[b] ^= new;
        self.subs[leaf] ^= new;
        self.held[writer] = version;
    }

    /// The (writer, version) held where `listed(writer)`, in writer order.
    fn entries(&self, listed: impl Fn(usize) -> bool) -> Vec<(u32, u32)> {
        self.held
            .iter()
            .enumerate()
            .filter(|(w, v)| **v > 0 && listed(*w))
            .map(|(w, v)| (w as u32, *v))
            .collect()
    }
}

impl Replica for Model {
    type Versions = ModelVersions;
    type Pull = Vec<u32>;
    /// (writer, version) of each record.
    type Records = Vec<(u32, u32)>;

    fn new(book: &Book, me: usize) -> Self {
        let mut model = Self::empty(book);
        model.publish(book, me);
        model
    }

    fn publish(&mut self, book: &Book, writer: usize) {
        self.take(book, writer, book.latest(writer));
    }

    fn summary(&self) -> Summary {
        Summary(self.buckets.to_vec())
    }

    fn differing(&self, book: &Book, theirs: &Summary) -> ModelVersions {
        let differs = |b: usize| theirs.0.len() != BUCKETS || theirs.0[b] != self.buckets[b];
        let mut listed = [false; BUCKETS];
        let mut answer = ModelVersions {
            buckets: Vec::new(),
            leaves: Vec::new(),
            entries: Vec::new(),
            splits: Vec::new(),
        };
        for b in (0..BUCKETS).filter(|b| differs(*b)) {
            if self.counts[b] <= LIST_AT_MOST {
                listed[b] = true;
                answer.buckets.push(b as u8);
            } else {
                answer.splits.push(Split {
                    bucket: b as u8,
                    count: self.counts[b] as u32,
                    subs: self.subs[b * SUBS..(b + 1) * SUBS].to_vec(),
                });
            }
        }
        if !answer.buckets.is_empty() {
            answer.entries = self.entries(|w| listed[book.bucket[w]]);
        }
        answer
    }

    fn leaves(&self, book: &Book, leaves: &[Leaf]) -> ModelVersions {
        let mut wanted = vec![false; BUCKETS * SUBS];
        let mut listed = Vec::new();
        for leaf in leaves {
            let (b, s) = (usize::from(leaf.bucket), usize::from(leaf.sub));
            if b < BUCKETS && s < SUBS && !wanted[b * SUBS + s] {
                wanted[b * SUBS + s] = true;
                listed.push(*leaf);
            }
        }
        ModelVersions {
            buckets: Vec::new(),
            leaves: listed,
            entries: self.entries(|w| wanted[book.bucket[w] * SUBS + book.sub[w]]),
            splits: Vec::new(),
        }
    }

    fn plan(&self, book: &Book, theirs: &ModelVersions) -> (Vec<u32>, Vec<(u32, u32)>, Vec<Leaf>) {
        let mut covered = vec![false; BUCKETS * SUBS];
        for b in &theirs.buckets {
            let b = usize::from(*b) % BUCKETS;
            covered[b * SUBS..(b + 1) * SUBS].fill(true);
        }
        for l in &theirs.leaves {
            covered[usize::from(l.bucket) * SUBS + usize::from(l.sub)] = true;
        }
        let mut split: Vec<Option<&Split>> = vec![None; BUCKETS];
        theirs
            .splits
            .iter()
            .for_each(|s| split[usize::from(s.bucket)] = Some(s));
        let mut leaves = Vec::new();
        let mut budget = sync::LIST_BUDGET;
        for (b, s) in split.iter().enumerate() {
            let Some(s) = s else { continue };
            let per_leaf = (s.count as usize).div_ceil(SUBS).max(1);
            for i in (0..SUBS).filter(|i| s.subs[*i] != self.subs[b * SUBS + i]) {
                if budget == 0 {
                    break;
                }
                budget = budget.saturating_sub(per_leaf);
                leaves.push(Leaf {
                    bucket: b as u8,
                    sub: i as u8,
                });
            }
        }
        let pull = theirs
            .entries
            .iter()
            .filter(|(w, v)| self.held[*w as usize] < *v)
            .map(|(w, _)| *w)
            .take(MAX_BATCH)
            .collect();
        let mut push = Vec::new();
        let mut next = theirs.entries.iter().peekable();
        for (w, &mine) in self.held.iter().enumerate() {
            if push.len() == MAX_BATCH {
                break;
            }
            if mine == 0 || !covered[book.bucket[w] * SUBS + book.sub[w]] {
                continue;
            }
            while next.next_if(|(t, _)| (*t as usize) < w).is_some() {}
            let their = next
                .peek()
                .filter(|(t, _)| *t as usize == w)
                .map_or(0, |e| e.1);
            if their < mine {
                push.push((w as u32, mine));
            }
        }
        (pull, push, leaves)
    }

    fn records_of(&self, writers: &Vec<u32>) -> Vec<(u32, u32)> {
        writers
            .iter()
            .take(MAX_BATCH)
            .filter(|w| self.held[**w as usize] > 0)
            .map(|w| (*w, self.held[*w as usize]))
            .collect()
    }

    fn ingest(&mut self, book: &Book, records: &Vec<(u32, u32)>) -> Result<(), String> {
        for &(w, v) in records {
            if v > self.held[w as usize] {
                self.take(book, w as usize, v);
            }
        }
        Ok(())
    }

    fn complete(&self, book: &Book) -> bool {
        self.held
            .iter()
            .enumerate()
            .all(|(w, v)| *v == book.latest(w))
    }

    fn versions_bytes(v: &ModelVersions) -> usize {
        // `Versions::wire_len`, checked equal by the tests.
        v.buckets.len()
            + 2 * v.leaves.len()
            + sync::ENTRY_BYTES * v.entries.len()
            + v.splits.iter().map(|s| 5 + 8 * s.subs.len()).sum::<usize>()
    }

    fn pull_bytes(writers: &Vec<u32>) -> usize {
        32 * writers.len()
    }

    fn records_len(records: &Vec<(u32, u32)>) -> usize {
        records.len()
    }

    fn records_bytes(book: &Book, records: &Vec<(u32, u32)>) -> usize {
        records
            .iter()
            .map(|&(w, v)| book.entry(w as usize, v).wire_len)
            .sum()
    }
}

/// What one simulation runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Number of members (at least 2).
    pub members: usize,
    /// Percent of deliveries lost.
    pub loss: u32,
    /// Percent of deliveries that arrive a second time, later.
    pub dup: u32,
    /// Percent of the members that crash after the cold start.
    pub down: u32,
    /// Seed of everything random, keys included.
    pub seed: u64,
    /// Rounds allowed for each convergence before giving up.
    pub max_rounds: usize,
    /// Rounds measured once converged and nothing changes.
    pub steady_rounds: usize,
}

/// Kinds of message, for [`Phase::sent_by_kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Step 1: a summary.
    Summary = 0,
    /// Step 2: the versions in the buckets that differ.
    Versions = 1,
    /// Step 3: the writers pulled.
    Pull = 2,
    /// Records, pushed or answering a pull.
    Records = 3,
    /// Step 3 after a split: the leaves asked for.
    Leaves = 4,
}

impl Kind {
    /// Every kind, in index order.
    pub const ALL: [Kind; 5] = [
        Kind::Summary,
        Kind::Versions,
        Kind::Leaves,
        Kind::Pull,
        Kind::Records,
    ];

    /// What the example's tables call it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Summary => "summaries",
            Kind::Versions => "versions",
            Kind::Pull => "pulls",
            Kind::Records => "records",
            Kind::Leaves => "leaves",
        }
    }
}

/// Rounds and per-member traffic of one phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// Rounds the phase took.
    pub rounds: usize,
    /// Members up.
    pub up: usize,
    /// Bytes each member sent.
    pub sent: Vec<u64>,
    /// Bytes each member received.
    pub received: Vec<u64>,
    /// Bytes sent by all members, per [`Kind`].
    pub sent_by_kind: [u64; 5],
}

impl Phase {
    /// Mean bytes sent plus received per member up.
    pub fn traffic_per_member(&self) -> u64 {
        (self.sent.iter().sum::<u64>() + self.received.iter().sum::<u64>()) / self.up as u64
    }

    /// Most bytes sent plus received by one member.
    pub fn max_traffic(&self) -> u64 {
        self.sent
            .iter()
            .zip(&self.received)
            .map(|(s, r)| s + r)
            .max()
            .unwrap_or(0)
    }

    /// Mean bytes of `kind` sent per member up.
    pub fn sent_per_member(&self, kind: Kind) -> u64 {
        self.sent_by_kind[kind as usize] / self.up as u64
    }
}

/// The phases of a simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// From every member knowing only itself to everyone knowing everything.
    pub cold: Phase,
    /// From one member publishing a new version to every member up holding it.
    pub one: Phase,
    /// How many members published version 2 in the update wave (1 %).
    pub wave_writers: usize,
    /// From those publications to everyone holding them.
    pub wave: Phase,
    /// `steady_rounds` rounds of a converged network where nothing changes.
    pub steady: Phase,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cold start {} rounds, {} B sent+received per member (max {}); \
             one change: {} rounds; \
             {} new records: {} rounds, {} B per member (max {}); \
             steady {} B per member per round",
            self.cold.rounds,
            self.cold.traffic_per_member(),
            self.cold.max_traffic(),
            self.one.rounds,
            self.wave_writers,
            self.wave.rounds,
            self.wave.traffic_per_member(),
            self.wave.max_traffic(),
            self.steady.traffic_per_member() / self.steady.rounds.max(1) as u64,
        )
    }
}

enum Msg<R: Replica> {
    Summary(Summary),
    Versions(R::Versions),
    Leaves(Vec<Leaf>),
    Pull(R::Pull),
    Push(R::Records),
    Records(R::Records),
}

struct Packet<R: Replica> {
    from: usize,
    to: usize,
    bytes: usize,
    msg: Rc<Msg<R>>,
    /// A duplicate made by the network (not duplicated again).
    copy: bool,
}

struct Net<R: Replica> {
    book: Book,
    members: Vec<R>,
    rng: Rng,
    loss: u32,
    dup: u32,
    /// False for a crashed member.
    up: Vec<bool>,
    pool: Vec<Packet<R>>,
    sent: Vec<u64>,
    received: Vec<u64>,
    sent_by_kind: [u64; 5],
}

impl<R: Replica> Net<R> {
    fn send(&mut self, from: usize, to: usize, msg: Msg<R>) {
        let (kind, bytes) = match &msg {
            Msg::Summary(s) => (Kind::Summary, 8 * s.0.len()),
            Msg::Versions(v) => (Kind::Versions, R::versions_bytes(v)),
            Msg::Leaves(l) => (Kind::Leaves, 2 * l.len()),
            Msg::Pull(p) => (Kind::Pull, R::pull_bytes(p)),
            Msg::Push(r) | Msg::Records(r) => (Kind::Records, R::records_bytes(&self.book, r)),
        };
        self.sent[from] += bytes as u64;
        self.sent_by_kind[kind as usize] += bytes as u64;
        self.pool.push(Packet {
            from,
            to,
            bytes,
            msg: Rc::new(msg),
            copy: false,
        });
    }

    /// Every member up starts one exchange; runs until nothing is in flight.
    fn round(&mut self) -> Result<(), String> {
        let n = self.members.len();
        for i in 0..n {
            if !self.up[i] {
                continue;
            }
            let to = (i + 1 + self.rng.below(n - 1)) % n;
            let summary = self.members[i].summary();
            self.send(i, to, Msg::Summary(summary));
        }
        while !self.pool.is_empty() {
            let p = self.pool.swap_remove(self.rng.below(self.pool.len()));
            if self.rng.chance(self.loss) || !self.up[p.to] {
                continue;
            }
            if !p.copy && self.rng.chance(self.dup) {
                self.pool.push(Packet {
                    msg: Rc::clone(&p.msg),
                    copy: true,
                    ..p
                });
            }
            self.received[p.to] += p.bytes as u64;
            let (me, peer) = (p.to, p.from);
            match &*p.msg {
                Msg::Summary(s) => {
                    let versions = self.members[me].differing(&self.book, s);
                    self.send(me, peer, Msg::Versions(versions));
                }
                Msg::Versions(v) => {
                    let (pull, push, leaves) = self.members[me].plan(&self.book, v);
                    if R::pull_bytes(&pull) > 0 {
                        self.send(me, peer, Msg::Pull(pull));
                    }
                    if R::records_bytes(&self.book, &push) > 0 {
                        self.send(me, peer, Msg::Push(push));
                    }
                    if !leaves.is_empty() {
                        self.send(me, peer, Msg::Leaves(leaves));
                    }
                }
                Msg::Leaves(leaves) => {
                    let versions = self.members[me].leaves(&self.book, leaves);
                    self.send(me, peer, Msg::Versions(versions));
                }
                Msg::Pull(writers) => {
                    let records = self.members[me].records_of(writers);
                    self.send(me, peer, Msg::Records(records));
                }
                Msg::Push(records) => {
                    self.members[me].ingest(&self.book, records)?;
                }
                Msg::Records(records) => {
                    self.members[me].ingest(&self.book, records)?;
                    if R::records_len(records) >= MAX_BATCH {
                        // A full batch: the agent asks again at once.
                        let summary = self.members[me].summary();
                        self.send(me, peer, Msg::Summary(summary));
                    }
                }
            }
        }
        Ok(())
    }

    /// Members up that lack a latest record.
    fn incomplete(&self) -> usize {
        self.members
            .iter()
            .zip(&self.up)
            .filter(|(m, up)| **up && !m.complete(&self.book))
            .count()
    }

    /// `count` members up, picked at random, publish their next version.
    fn publish(&mut self, count: usize) -> Result<(), String> {
        let mut up: Vec<usize> = (0..self.members.len()).filter(|i| self.up[*i]).collect();
        for i in 0..count.min(up.len()) {
            let j = i + self.rng.below(up.len() - i);
            up.swap(i, j);
            let writer = up[i];
            self.book.publish(writer)?;
            self.members[writer].publish(&self.book, writer);
        }
        Ok(())
    }

    /// Zeroes the traffic counters.
    fn reset(&mut self) {
        self.sent.fill(0);
        self.received.fill(0);
        self.sent_by_kind = [0; 5];
    }

    /// Rounds until every member is complete, and their traffic.
    fn converge(&mut self, what: &str, max_rounds: usize) -> Result<Phase, String> {
        self.reset();
        for round in 1..=max_rounds {
            self.round()?;
            if self.incomplete() == 0 {
                return Ok(self.phase(round));
            }
        }
        Err(format!(
            "{what}: {} of {} members still incomplete after {max_rounds} rounds",
            self.incomplete(),
            self.members.len()
        ))
    }

    fn phase(&self, rounds: usize) -> Phase {
        Phase {
            rounds,
            up: self.up.iter().filter(|u| **u).count().max(1),
            sent: self.sent.clone(),
            received: self.received.clone(),
            sent_by_kind: self.sent_by_kind,
        }
    }
}

/// Runs a cold start, crashes `down` percent of the members, then one
/// change, a 1 % update wave and `steady_rounds` quiet rounds.
pub fn simulate<R: Replica>(cfg: &Config) -> Result<Outcome, String> {
    let n = cfg.members;
    if n < 2 {
        return Err("a network needs at least two members".into());
    }
    let mut rng = Rng::new(cfg.seed);
    let book = Book::new(n, &mut rng)?;
    let mut net = Net::<R> {
        members: (0..n).map(|i| R::new(&book, i)).collect(),
        book,
        rng,
        loss: cfg.loss,
        dup: cfg.dup,
        up: vec![true; n],
        pool: Vec::new(),
        sent: vec![0; n],
        received: vec![0; n],
        sent_by_kind: [0; 5],
    };
    let cold = net.converge("cold start", cfg.max_rounds)?;

    let crashed = n * cfg.down as usize / 100;
    for _ in 0..crashed {
        let i = net.rng.below(n);
        net.up[i] = false;
    }
    net.publish(1)?;
    let one = net.converge("one change", cfg.max_rounds)?;

    // 1 % of the members publish a new version of their record.
    let wave_writers = (n / 100).max(1);
    net.publish(wave_writers)?;
    let wave = net.converge("update wave", cfg.max_rounds)?;

    net.reset();
    net.members.iter_mut().for_each(R::quiet);
    for _ in 0..cfg.steady_rounds {
        net.round()?;
    }
    if net.incomplete() > 0 {
        return Err("a converged network diverged while nothing changed".into());
    }
    Ok(Outcome {
        cold,
        one,
        wave_writers,
        wave,
        steady: net.phase(cfg.steady_rounds),
    })
}

// The tests; the example includes this file without them.
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// Wire size of a summary: 64 bucket hashes of 8 bytes.
    const SUMMARY_BYTES: u64 = (BUCKETS * 8) as u64;
    /// Wire size of a member record: writer, version, length, body, signature.
    const RECORD_BYTES: u64 = (32 + 8 + 4 + BODY_LEN + 64) as u64;

    /// One configuration simulated with the real state and with the model.
    struct Runs {
        cfg: Config,
        real: Outcome,
        model: Outcome,
    }

    impl Runs {
        fn of(cfg: Config) -> Result<Self, String> {
            Ok(Self {
                real: simulate::<Real>(&cfg)?,
                model: simulate::<Model>(&cfg)?,
                cfg,
            })
        }

        /// Mean bytes received per member in `phase`.
        fn received(&self, phase: &Phase) -> u64 {
            phase.received.iter().sum::<u64>() / phase.up as u64
        }
    }

    /// 200 members, 20 % loss, 10 % duplication, two crash after the cold
    /// start (simulated once for all tests).
    fn lossy() -> &'static Runs {
        static RUNS: OnceLock<Result<Runs, String>> = OnceLock::new();
        let runs = RUNS.get_or_init(|| {
            let runs = Runs::of(Config {
                members: 200,
                loss: 20,
                dup: 10,
                down: 1,
                seed: 0x9E37_79B9_7F4A_7C15,
                max_rounds: 100,
                steady_rounds: 3,
            })?;
            eprintln!(
                "200 members, 20 % loss, 10 % duplication, 1 % down: {}",
                runs.real
            );
            Ok(runs)
        });
        runs.as_ref().unwrap()
    }

    /// 100 members, no loss, no duplication (simulated once for all tests).
    fn clean() -> &'static Runs {
        static RUNS: OnceLock<Result<Runs, String>> = OnceLock::new();
        let runs = RUNS.get_or_init(|| {
            let runs = Runs::of(Config {
                members: 100,
                loss: 0,
                dup: 0,
                down: 0,
                seed: 7,
                max_rounds: 100,
                steady_rounds: 3,
            })?;
            eprintln!("100 members, no loss: {}", runs.real);
            Ok(runs)
        });
        runs.as_ref().unwrap()
    }

    #[test]
    fn two_hundred_members_converge_despite_loss_duplication_and_reordering() {
        let runs = lossy();
        let cold = &runs.real.cold;
        assert!(cold.rounds <= 40, "cold start took {} rounds", cold.rounds);
        // Every member must receive the 199 others' records; summaries, version
        // lists and some records arriving twice (pushed and pulled, or
        // duplicated) come on top, but not a flood.
        let needed = 199 * RECORD_BYTES;
        assert!(
            runs.received(cold) <= 3 * needed,
            "cold start: {} B received per member, {needed} B of records needed",
            runs.received(cold)
        );
    }

    #[test]
    fn without_loss_convergence_takes_logarithmic_rounds() {
        let runs = clean();
        let cold = &runs.real.cold;
        // Push-pull anti-entropy spreads in O(log n) rounds: ~7 for 100 members.
        assert!(cold.rounds <= 20, "cold start took {} rounds", cold.rounds);
        let needed = 99 * RECORD_BYTES;
        assert!(
            runs.received(cold) <= 3 * needed,
            "cold start: {} B received per member, {needed} B of records needed",
            runs.received(cold)
        );
    }

    #[test]
    fn an_update_wave_costs_little_more_than_the_new_records() {
        for runs in [lossy(), clean()] {
            let (n, wave) = (runs.cfg.members as u64, &runs.real.wave);
            let writers = runs.real.wave_writers as u64;
            assert_eq!(writers, n / 100);
            assert!(
                wave.rounds <= 20,
                "{n} members: the wave took {} rounds",
                wave.rounds
            );
            let rounds = wave.rounds as u64;
            // One summary per member per round.
            assert_eq!(wave.sent_per_member(Kind::Summary), rounds * SUMMARY_BYTES);
            // An answer lists only the versions in the buckets of the changed
            // writers (n / 64 writers each on average; allow twice that), and a
            // member answers about one summary per round.
            let answers =
                rounds * writers * (1 + sync::ENTRY_BYTES as u64 * 2 * n.div_ceil(BUCKETS as u64));
            let versions = wave.sent_per_member(Kind::Versions);
            assert!(
                versions <= answers,
                "{n} members: {versions} B of versions sent per member in the wave, bound {answers}"
            );
            // Each member needs each new record once; pushes crossing pulls,
            // losses and duplicates may send some again.
            let records = wave.sent_per_member(Kind::Records);
            assert!(
                records <= 3 * writers * RECORD_BYTES,
                "{n} members: {records} B of records sent per member for {writers} new records"
            );
        }
    }

    #[test]
    fn a_converged_network_only_exchanges_summaries() {
        for runs in [clean(), lossy()] {
            let (cfg, steady) = (&runs.cfg, &runs.real.steady);
            let per_round = steady.sent_per_member(Kind::Summary) / cfg.steady_rounds as u64;
            assert_eq!(per_round, SUMMARY_BYTES, "one summary per member per round");
            let rest: u64 = steady.sent_by_kind[1..].iter().sum();
            assert_eq!(
                rest, 0,
                "{} members: only summaries when nothing changes",
                cfg.members
            );
            let sent: u64 = steady.sent.iter().sum::<u64>() / steady.up as u64;
            assert!(sent / cfg.steady_rounds as u64 <= 600);
        }
        // Without loss or duplication, exactly one summary out and one in.
        let runs = clean();
        let quiet = 2 * SUMMARY_BYTES * runs.cfg.steady_rounds as u64;
        assert_eq!(runs.real.steady.traffic_per_member(), quiet);
    }

    #[test]
    fn the_compact_replica_behaves_exactly_like_sync() {
        for runs in [lossy(), clean()] {
            assert!(
                runs.real == runs.model,
                "{} members: the model used for large networks differs from sync:\nreal  {}\nmodel {}",
                runs.cfg.members,
                runs.real,
                runs.model
            );
        }
    }

    /// A real replica holding `records` (writer, version).
    fn real_with(book: &Book, records: &[(usize, u32)]) -> Real {
        let mut state = State::new();
        for &(w, v) in records {
            state.insert(book.entry(w, v).verified.clone());
        }
        Real {
            state,
            summary: OnceCell::new(),
            shortcut: false,
        }
    }

    /// A model replica holding `records` (writer, version).
    fn model_with(book: &Book, records: &[(usize, u32)]) -> Model {
        let mut model = Model::empty(book);
        records.iter().for_each(|&(w, v)| model.take(book, w, v));
        model
    }

    /// The whole simulations above never differ by more than [`MAX_BATCH`]
    /// records nor hold buckets full enough to split; the large ones of the
    /// example do. Compare each step on members whose states differ by more
    /// than a batch, in buckets of ~20 writers.
    #[test]
    fn the_compact_replica_takes_the_same_batches_as_sync() {
        let mut rng = Rng::new(0xBA7C4);
        let n = 2 * MAX_BATCH + 300;
        let mut book = Book::new(n, &mut rng).unwrap();
        for w in (0..n).filter(|w| w % 3 == 0) {
            book.publish(w).unwrap();
        }
        // Which records a member holds: `share` percent of the writers, at a
        // random one of their versions.
        let holding = |rng: &mut Rng, share: u32| -> Vec<(usize, u32)> {
            let mut held = Vec::new();
            for w in 0..n {
                if rng.chance(share) {
                    held.push((w, 1 + rng.below(book.latest(w) as usize) as u32));
                }
            }
            held
        };
        let index = |id: &NodeId| book.ids.binary_search(id).unwrap() as u32;
        let (mut capped, mut splits) = (0, 0);
        for (a_share, b_share) in [(10, 95), (95, 10), (60, 60), (100, 100)] {
            let (a, b) = (holding(&mut rng, a_share), holding(&mut rng, b_share));
            let (real_a, model_a) = (real_with(&book, &a), model_with(&book, &a));
            let (real_b, model_b) = (real_with(&book, &b), model_with(&book, &b));
            // Step 1 and 2: b answers a's summary.
            let summary = real_a.summary();
            assert_eq!(summary, model_a.summary());
            let mut versions = real_b.differing(&book, &summary);
            let mut model_versions = model_b.differing(&book, &summary);
            let same = |real: &Versions, model: &ModelVersions| {
                let listed: Vec<(u32, u32)> = real
                    .versions
                    .iter()
                    .map(|(w, v)| (index(w), v.version as u32))
                    .collect();
                real.buckets == model.buckets
                    && real.leaves == model.leaves
                    && real.splits == model.splits
                    && listed == model.entries
                    && Real::versions_bytes(real) == Model::versions_bytes(model)
            };
            let decoded = |records: &Vec<Vec<u8>>| -> Vec<(u32, u32)> {
                records
                    .iter()
                    .map(|r| SignedRecord::decode(r).unwrap())
                    .map(|r| (index(&r.writer), r.version as u32))
                    .collect()
            };
            splits += versions.splits.len();
            // Step 3 on b's answer, then on its answer to the leaves asked.
            for step in ["step 2", "leaves"] {
                assert!(same(&versions, &model_versions), "{step}: answers differ");
                let (pull, push, leaves) = real_a.plan(&book, &versions);
                let (model_pull, model_push, model_leaves) = model_a.plan(&book, &model_versions);
                assert!(leaves == model_leaves, "{step}: leaves asked differ");
                let pulled: Vec<u32> = pull.iter().map(index).collect();
                assert!(pulled == model_pull, "{step}: pulls differ");
                assert!(decoded(&push) == model_push, "{step}: pushes differ");
                let records = real_b.records_of(&pull);
                let model_records = model_b.records_of(&model_pull);
                assert!(
                    decoded(&records) == model_records,
                    "{step}: answers to the pull differ"
                );
                assert_eq!(
                    Real::records_bytes(&book, &records),
                    Model::records_bytes(&book, &model_records)
                );
                capped +=
                    usize::from(pull.len() == MAX_BATCH) + usize::from(push.len() == MAX_BATCH);
                versions = real_b.leaves(&book, &leaves);
                model_versions = model_b.leaves(&book, &leaves);
            }
        }
        assert!(capped >= 2, "no exchange reached the batch limit");
        assert!(splits > 0, "no answer split a bucket");
    }
}
