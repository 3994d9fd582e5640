//! A simulated network of members exchanging digests and records over a
//! lossy in-memory network (loss, duplication, reordering) converges: every
//! member ends with every member's latest record.

use federation::{Digest, NodeKey, State};

/// Deterministic xorshift generator, so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

enum Msg {
    /// "Here is what I know; send me what I lack, and your digest."
    Pull { from: usize, digest: Digest },
    /// Records for the receiver, plus the sender's digest (push-pull).
    Push {
        from: usize,
        records: Vec<Vec<u8>>,
        digest: Option<Digest>,
    },
}

struct Outcome {
    rounds: usize,
    bytes_per_node: usize,
}

fn simulate(n: usize, loss: u64, dup: u64, seed: u64, max_rounds: usize) -> Option<Outcome> {
    let mut rng = Rng(seed);
    let keys: Vec<NodeKey> = (0..n).map(|_| NodeKey::generate()).collect();
    let mut states: Vec<State> = (0..n).map(|_| State::new()).collect();
    for (i, k) in keys.iter().enumerate() {
        states[i]
            .ingest(&k.sign(1, format!("node {i}").into_bytes()).encode())
            .ok()?;
    }
    let mut bytes = 0usize;
    for round in 1..=max_rounds {
        // Each member starts one exchange with a random other member.
        let mut inflight: Vec<(usize, Msg)> = (0..n)
            .map(|i| {
                let to = (i + 1 + rng.below(n - 1)) % n;
                (
                    to,
                    Msg::Pull {
                        from: i,
                        digest: states[i].digest(),
                    },
                )
            })
            .collect();
        // Deliver in random order with loss and duplication; answers join the queue.
        while !inflight.is_empty() {
            let (to, msg) = inflight.swap_remove(rng.below(inflight.len()));
            if rng.chance(loss) {
                continue;
            }
            let copies = if rng.chance(dup) { 2 } else { 1 };
            for _ in 0..copies {
                match &msg {
                    Msg::Pull { from, digest } => {
                        bytes += digest.wire_len();
                        let records = states[to].newer_than(digest);
                        inflight.push((
                            *from,
                            Msg::Push {
                                from: to,
                                records,
                                digest: Some(states[to].digest()),
                            },
                        ));
                    }
                    Msg::Push {
                        from,
                        records,
                        digest,
                    } => {
                        for r in records {
                            bytes += r.len();
                            states[to].ingest(r).ok()?;
                        }
                        if let Some(d) = digest {
                            bytes += d.wire_len();
                            let back = states[to].newer_than(d);
                            if !back.is_empty() {
                                inflight.push((
                                    *from,
                                    Msg::Push {
                                        from: to,
                                        records: back,
                                        digest: None,
                                    },
                                ));
                            }
                        }
                    }
                }
            }
        }
        if states.iter().all(|s| s.len() == n) && states.windows(2).all(|w| w[0] == w[1]) {
            return Some(Outcome {
                rounds: round,
                bytes_per_node: bytes / n,
            });
        }
    }
    None
}

#[test]
fn two_hundred_members_converge_despite_loss_duplication_and_reordering() {
    let out =
        simulate(200, 20, 10, 0x9E37_79B9_7F4A_7C15, 40).expect("did not converge in 40 rounds");
    eprintln!(
        "200 members, 20 % loss, 10 % duplication: {} rounds, {} bytes per node",
        out.rounds, out.bytes_per_node
    );
    assert!(out.rounds <= 40);
}

#[test]
fn without_loss_convergence_takes_logarithmic_rounds() {
    let out = simulate(100, 0, 0, 7, 40).expect("did not converge");
    eprintln!(
        "100 members, no loss: {} rounds, {} bytes per node",
        out.rounds, out.bytes_per_node
    );
    // Push-pull gossip spreads in O(log n) rounds; 100 members need far fewer than 20.
    assert!(out.rounds < 20, "{} rounds", out.rounds);
}
