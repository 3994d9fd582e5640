//! `Ledger::ingest`, the entry point of every record a peer sends, fed:
//!
//! 1. the input as one encoded record (and `SignedRecord::decode` must give
//!    back exactly the input when it accepts it);
//! 2. the input split into records, each prefixed by a little-endian u16
//!    length, all offered to one ledger;
//! 3. the input as the body of a validly signed record of a fixed non-
//!    authority key (`[2; 32]`, version 1), so `Body::parse`, the JSON
//!    bounds and the chain checks see arbitrary bytes;
//! 4. the input cut at NUL bytes into up to 8 bodies, placeholders expanded
//!    (network and node ids, certificate chains that verify: see
//!    `federation_fuzz::expand`), signed by the fixed keys in turn (the
//!    authority among them) and offered to a ledger that holds the
//!    authority's record, so records get accepted, replaced and revoked.
//!
//! 5. the records of step 4 offered as a federated network's records to
//!    `Partners::ingest` of a network that has an agreement with the
//!    fixture's (which exposes everything): whatever enters lies in the
//!    fixture's network and range.
//!
//! Nothing may panic; refusals are counted and leave the state alone;
//! accepted records are held and stale on a second offer; every parsed body
//! re-serialises to itself; the read side (members, revocations, address
//! owners) stays consistent at several times.

#![no_main]

use federation::agreement::{Agreement, Exposure, Offer, Side};
use federation::member::Body;
use federation::partners::Partners;
use federation::{Cidr, Ledger, NetworkId, NodeKey, SignedRecord};
use std::sync::OnceLock;
use federation_fuzz::*;
use libfuzzer_sys::fuzz_target;

/// Most records taken from one input in steps 2 and 4.
const MAX_SPLIT: usize = 16;
const MAX_BODIES: usize = 8;

fn length_prefixed(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while out.len() < MAX_SPLIT {
        let Some((len, rest)) = data.split_first_chunk::<2>() else {
            break;
        };
        let n = usize::from(u16::from_le_bytes(*len)).min(rest.len());
        let (rec, rest) = rest.split_at(n);
        out.push(rec);
        data = rest;
    }
    out
}

fn body_roundtrip(bytes: &[u8]) {
    if let Ok(b) = Body::parse(bytes) {
        assert_eq!(Body::parse(&b.to_bytes()), Ok(b), "body does not re-serialise to itself");
    }
}

/// A network ("us", 100.65.0.0/24) federated with the fixture's ("lab",
/// 100.64.0.0/24, exposing all): its partners, before any record.
fn partners() -> &'static Partners {
    static P: OnceLock<Partners> = OnceLock::new();
    P.get_or_init(|| {
        let f = fixture();
        let us = NodeKey::from_seed(&[9; 32]);
        let side = |authority: &NodeKey, name: &str, cidr: &str| Side {
            network: NetworkId::of(&authority.id()),
            authority: authority.id(),
            name: name.into(),
            cidr: cidr.parse::<Cidr>().expect("cidr"),
            exposes: Exposure::All,
        };
        let lab = &f.keys[AUTHORITY];
        let offer = Offer::sign(lab, [1; 16], side(lab, "lab", "100.64.0.0/24"), u64::MAX);
        let agreement = Agreement::accept(&us, offer, side(&us, "us", "100.65.0.0/24"), 0)
            .expect("a valid agreement");
        let mut p = Partners::new(NetworkId::of(&us.id()));
        p.follow([&agreement].into_iter());
        p
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();

    // 1. One record.
    if let Ok(r) = SignedRecord::decode(data) {
        assert_eq!(r.encode(), data, "decode/encode is not the identity");
    }
    let mut l = Ledger::new(f.network);
    ingest(&mut l, data, NOW);

    // 2. Several records into the same ledger.
    for rec in length_prefixed(data) {
        ingest(&mut l, rec, NOW);
    }
    check_reads(&l);

    // 3. A validly signed record whose body is the input.
    body_roundtrip(data);
    let mut l = Ledger::new(f.network);
    ingest(&mut l, &f.keys[1].sign(1, data.to_vec()).encode(), NOW);
    // (The read side of such a ledger is checked in step 4.)
    let mut l = f.base.clone();
    ingest(&mut l, &f.keys[1].sign(1, data.to_vec()).encode(), NOW);

    // 4. Several signed bodies with placeholders, from the fixed keys in turn.
    let mut l = f.base.clone();
    let mut p = partners().clone();
    for (i, part) in data.split(|b| *b == 0).take(MAX_BODIES).enumerate() {
        let writer = (i + 1) % SEEDS.len();
        let body = expand(part, writer);
        body_roundtrip(&body);
        let version = 1 + (i / SEEDS.len()) as u64;
        let record = f.keys[writer].sign(version, body).encode();
        ingest(&mut l, &record, NOW);
        // 5. The same record from a federated network.
        let _ = p.ingest(&record, NOW);
    }
    check_reads(&l);
    let range: Cidr = "100.64.0.0/24".parse().expect("cidr");
    for m in p.members(NOW) {
        assert_eq!(m.network, f.network.id, "a partner member of another network");
        assert!(range.is_host(m.member.record.address), "a partner member outside its range");
    }
});
