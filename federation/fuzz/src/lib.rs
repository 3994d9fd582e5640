//! Helpers shared by the fuzz targets: fixed keys and network, certificates
//! signed once, placeholder expansion (so mutated JSON bodies can name the
//! network and its nodes and carry certificate chains that verify), and the
//! invariants a ledger must keep whatever it is fed.

use federation::address::LEFT_GRACE_MS;
use federation::cert::{Cert, Claim};
use federation::ledger::Status;
use federation::member::{AuthorityRecord, Body};
use federation::ledger::Delta;
use federation::{Ledger, Network, NodeKey, SignedRecord};
use std::sync::OnceLock;

/// The clock handed to the ledger when records come in.
pub const NOW: u64 = 1_700_000_000_000;
/// Seeds of the fixed keys: 0 is the network's authority, 1 the writer of
/// the "validly signed record whose body is the input", 2 an admitter.
pub const SEEDS: [[u8; 32]; 4] = [[1; 32], [2; 32], [3; 32], [4; 32]];
/// Index of the authority in [`SEEDS`].
pub const AUTHORITY: usize = 0;
/// Index of the admitting member (issuer of the `$c` certificates).
pub const ADMITTER: usize = 2;
/// Times at which the read side of a ledger is checked: now, after the
/// `$E` certificates expired and the grace of members that left now ran
/// out, and the end of time (every certificate expired).
pub const READ_TIMES: [u64; 3] = [NOW, NOW + LEFT_GRACE_MS, u64::MAX];

/// Keys, network and signed certificates, built once per process.
pub struct Fixture {
    /// The keys of [`SEEDS`].
    pub keys: Vec<NodeKey>,
    /// The network whose authority is `keys[AUTHORITY]`.
    pub network: Network,
    /// A ledger that already holds a version-0 authority record.
    pub base: Ledger,
    /// Per key: JSON of the placeholder certificates naming it.
    certs: Vec<Certs>,
}

struct Certs {
    /// `$C`: authority → this key, may admit, valid for long.
    root: String,
    /// `$c`: admitter → this key, may not admit.
    via: String,
    /// `$E`: authority → this key, expires at `NOW + 1`.
    expiring: String,
    /// `$K`: authority → admitter, may admit.
    admitter: String,
}

fn cert(issuer: &NodeKey, subject: &NodeKey, network: &Network, admit: bool, expires_ms: u64) -> String {
    let c = Cert::issue(
        issuer,
        Claim {
            network: network.id,
            subject: subject.id(),
            wg_key: subject.id().0,
            name: "node-1".into(),
            admit,
            tags: vec![],
            issued_ms: 0,
            expires_ms,
        },
    );
    serde_json::to_string(&c).expect("certificate serialises")
}

/// The process-wide fixture.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys: Vec<NodeKey> = SEEDS.iter().map(NodeKey::from_seed).collect();
        let network = Network::of(keys[AUTHORITY].id());
        let auth = &keys[AUTHORITY];
        let certs = keys
            .iter()
            .map(|k| Certs {
                root: cert(auth, k, &network, true, u64::MAX / 2),
                via: cert(&keys[ADMITTER], k, &network, false, u64::MAX / 2),
                expiring: cert(auth, k, &network, true, NOW + 1),
                admitter: cert(auth, &keys[ADMITTER], &network, true, u64::MAX / 2),
            })
            .collect();
        let mut base = Ledger::new(network);
        let body = Body::Authority(AuthorityRecord {
            network: network.id,
            name: "lab".into(),
            cidr: "100.64.0.0/24".parse().expect("cidr"),
            block: "100.64.0.0/24".parse().expect("cidr"),
            mtu: 1420,
            revocations: vec![],
        });
        base.ingest(&auth.sign(0, body.to_bytes()).encode(), NOW)
            .expect("authority record");
        Fixture {
            keys,
            network,
            base,
            certs,
        }
    })
}

/// Replaces placeholders in a record body written by `keys[writer]`:
/// `$N` network id, `$A` authority id, `$W` writer id, `$0`–`$3` the fixed
/// keys' ids (all as hex), and certificates as JSON objects: `$C` authority
/// → writer, `$K` authority → admitter, `$c` admitter → writer (so
/// `[$K,$c]` is a two-link chain), `$E` authority → writer expiring at
/// `NOW + 1`. Anything else is copied.
pub fn expand(body: &[u8], writer: usize) -> Vec<u8> {
    let f = fixture();
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'$' && i + 1 < body.len() {
            let sub: Option<String> = match body[i + 1] {
                b'N' => Some(f.network.id.to_string()),
                b'A' => Some(f.keys[AUTHORITY].id().to_hex()),
                b'W' => Some(f.keys[writer].id().to_hex()),
                d @ b'0'..=b'3' => Some(f.keys[usize::from(d - b'0')].id().to_hex()),
                b'C' => Some(f.certs[writer].root.clone()),
                b'c' => Some(f.certs[writer].via.clone()),
                b'E' => Some(f.certs[writer].expiring.clone()),
                b'K' => Some(f.certs[writer].admitter.clone()),
                _ => None,
            };
            if let Some(s) = sub {
                out.extend_from_slice(s.as_bytes());
                i += 2;
                continue;
            }
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

fn rejected_total(l: &Ledger) -> u64 {
    l.rejected().map(|(_, n)| n).sum()
}

/// `ledger.ingest(bytes, now)` with its invariants: exactly refusals are
/// counted, a refusal leaves the state alone, an accepted record (or a newer
/// one of its writer) is held afterwards, and offering it again is stale.
pub fn ingest(l: &mut Ledger, bytes: &[u8], now: u64) -> Option<Option<Delta>> {
    let state = l.state().clone();
    let refused = rejected_total(l);
    let r = l.ingest(bytes, now);
    assert_eq!(rejected_total(l) - refused, u64::from(r.is_err()), "refusal count");
    match r {
        Err(_) => {
            assert_eq!(l.state(), &state, "a refused record changed the state");
            None
        }
        Ok(outcome) => {
            let rec = SignedRecord::decode(bytes).expect("accepted bytes decode");
            let rank = rec.clone().verify().expect("accepted bytes verify").rank();
            let held = l.state().get(&rec.writer).expect("accepted writer is held");
            if let Some(delta) = outcome {
                assert_eq!(held, &rec, "newer record not held");
                assert_eq!(delta.writer, rec.writer, "delta of another writer");
                assert!(l.state().len() <= state.len() + 1);
            } else {
                let held_rank = l.state().rank(&rec.writer).expect("held");
                assert!(held_rank >= rank, "stale verdict for a higher-ranked record");
                assert_eq!(l.state(), &state, "a stale record changed the state");
            }
            assert_eq!(l.ingest(bytes, now), Ok(None), "re-offer not stale");
            Some(outcome)
        }
    }
}

/// The read side of a ledger at several times: members, revocations,
/// address owners, the authority record. Checks that owners are live
/// members holding that address and that every member is in the state.
pub fn check_reads(l: &Ledger) {
    let _ = l.authority();
    for now in READ_TIMES {
        let members = l.members(now);
        let revocations = l.revocations(now);
        for m in &members {
            let held = l.state().get(&m.id).expect("member without a record");
            assert_eq!(held.version, m.version);
            if m.status == Status::Active {
                assert!(!revocations.blocks(&m.record.chain), "revoked member active");
            }
        }
        for (addr, id) in l.address_owners(now) {
            let m = members
                .iter()
                .find(|m| m.id == id)
                .expect("address owner is not a member");
            assert_eq!(m.record.address, addr);
            assert!(matches!(m.status, Status::Active | Status::Left));
        }
    }
}
