//! The network's state: one verified record per writer, merged as a
//! state-based CRDT (`crdts::CvRDT`): a merge keeps, per writer, the record
//! of the highest [`Rank`] (version, then body hash). Merge is commutative, associative
//! and idempotent, so members that saw the same records hold the same state
//! whatever the order, duplication or batching of what they received.

use crate::record::{NodeId, Rank, RecordError, SignedRecord, Verified};
use crdts::CvRDT;
use std::collections::BTreeMap;
use std::convert::Infallible;

/// The state: the winning record of every writer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    records: BTreeMap<NodeId, Verified>,
}

/// What ingesting one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// It replaced an older record of its writer, or was the first one.
    Newer,
    /// The state already held this record or a newer one.
    Stale,
}

impl State {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers one verified record; keeps it if it outranks its writer's.
    pub fn insert(&mut self, record: Verified) -> Ingest {
        let writer = record.record().writer;
        match self.records.get(&writer) {
            Some(held) if held.rank() >= record.rank() => Ingest::Stale,
            _ => {
                self.records.insert(writer, record);
                Ingest::Newer
            }
        }
    }

    /// Decodes, verifies and offers a record received from the network.
    pub fn ingest(&mut self, bytes: &[u8]) -> Result<Ingest, RecordError> {
        Ok(self.insert(SignedRecord::decode(bytes)?.verify()?))
    }

    /// Drops `writer`'s record (a federated network stopped exposing it);
    /// true if one was held.
    pub fn remove(&mut self, writer: &NodeId) -> bool {
        self.records.remove(writer).is_some()
    }

    /// The record of `writer`.
    pub fn get(&self, writer: &NodeId) -> Option<&SignedRecord> {
        self.records.get(writer).map(Verified::record)
    }

    /// The rank of `writer`'s record held here.
    pub fn rank(&self, writer: &NodeId) -> Option<Rank> {
        self.records.get(writer).map(Verified::rank)
    }

    /// Every writer's rank: what a peer compares to find what it lacks.
    pub fn versions(&self) -> impl Iterator<Item = (NodeId, Rank)> + '_ {
        self.records.iter().map(|(w, r)| (*w, r.rank()))
    }

    /// Every record, encoded (a joining member's first state).
    pub fn encoded(&self) -> Vec<Vec<u8>> {
        self.records.values().map(|r| r.record().encode()).collect()
    }

    /// Number of writers.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl CvRDT for State {
    type Validation = Infallible;

    fn validate_merge(&self, _other: &Self) -> Result<(), Infallible> {
        Ok(())
    }

    fn merge(&mut self, other: Self) {
        for record in other.records.into_values() {
            self.insert(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NodeKey;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// A few fixed writers, so generated records collide on writers.
    fn keys() -> &'static [NodeKey] {
        static KEYS: OnceLock<Vec<NodeKey>> = OnceLock::new();
        KEYS.get_or_init(|| (0..4u8).map(|i| NodeKey::from_seed(&[i + 1; 32])).collect())
    }

    fn state_of(specs: &[(usize, u64, u8)]) -> State {
        let mut s = State::new();
        for &(w, version, body) in specs {
            let rec = keys()[w % keys().len()].sign(version, vec![body]);
            s.insert(rec.verify().expect("own signature"));
        }
        s
    }

    fn specs() -> impl Strategy<Value = Vec<(usize, u64, u8)>> {
        proptest::collection::vec((0usize..4, 0u64..4, 0u8..3), 0..8)
    }

    fn merged(a: &State, b: &State) -> State {
        let mut m = a.clone();
        m.merge(b.clone());
        m
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn merge_is_commutative(a in specs(), b in specs()) {
            let (a, b) = (state_of(&a), state_of(&b));
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in specs(), b in specs(), c in specs()) {
            let (a, b, c) = (state_of(&a), state_of(&b), state_of(&c));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent(a in specs()) {
            let a = state_of(&a);
            prop_assert_eq!(merged(&a, &a), a);
        }

        #[test]
        fn order_of_ingestion_does_not_matter(a in specs()) {
            let mut reversed = a.clone();
            reversed.reverse();
            prop_assert_eq!(state_of(&a), state_of(&reversed));
        }
    }

    #[test]
    fn higher_version_wins_and_forgeries_never_enter() {
        let k = NodeKey::generate();
        let mut s = State::new();
        assert_eq!(
            s.ingest(&k.sign(2, b"new".to_vec()).encode()),
            Ok(Ingest::Newer)
        );
        assert_eq!(
            s.ingest(&k.sign(1, b"old".to_vec()).encode()),
            Ok(Ingest::Stale)
        );
        assert_eq!(
            s.ingest(&k.sign(2, b"new".to_vec()).encode()),
            Ok(Ingest::Stale)
        );
        let mut forged = k.sign(9, b"evil".to_vec());
        forged.sig[0] ^= 1;
        assert_eq!(s.ingest(&forged.encode()), Err(RecordError::BadSignature));
        // Someone else cannot write k's record, even with a valid signature of their own.
        let mallory = NodeKey::generate();
        let mut stolen = mallory.sign(9, b"evil".to_vec());
        stolen.writer = k.id();
        assert_eq!(s.ingest(&stolen.encode()), Err(RecordError::BadSignature));
        assert_eq!(s.get(&k.id()).map(|r| r.body.as_slice()), Some(&b"new"[..]));
        assert_eq!(
            s.versions()
                .map(|(w, r)| (w, r.version))
                .collect::<Vec<_>>(),
            vec![(k.id(), 2)]
        );
    }
}
