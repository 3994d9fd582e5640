//! Convergence and traffic of the control plane's anti-entropy for networks
//! of several sizes, without and with 10 % message loss:
//!
//! ```sh
//! cargo run --release -p federation --example convergence -- 100 1000 10000
//! ```
//!
//! Every run delivers messages in random order and duplicates 5 % of them;
//! 1 % of the members crash after the cold start (they answer nothing).
//! For each size and loss rate it prints the rounds a cold start takes
//! (every member knowing only its own record) and the bytes each member
//! sends and receives meanwhile; the rounds until one new record reaches
//! every member up, beside the epidemic estimate for push-pull gossip
//! (log₃ N + ln ln N, Karp et al. 2000); the same as the cold start for an
//! update wave, where 1 % of the members publish a new version; and the
//! bytes per member of a converged network where nothing changes. Seconds
//! and bytes per second assume the agent's round of 2 s. Records carry a
//! 1,500-byte body, like a member record. A second table splits the bytes
//! sent by kind of message; the last line is the memory one member's state
//! takes at the largest size.
//!
//! The simulation is the one of `tests/convergence.rs` (see there for the
//! protocol, network and byte model). Large networks use its compact
//! replica; before the table, a 100-member network is run with both the real
//! `State` and the compact replica to check they still behave identically.

use std::alloc::{GlobalAlloc, Layout, System};
use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[path = "../tests/convergence.rs"]
mod sim;

use sim::{simulate, Book, Config, Kind, Model, Outcome, Phase, Real, Rng};

/// Sizes simulated when none are given on the command line.
const DEFAULT_SIZES: [usize; 3] = [100, 1_000, 10_000];
/// Loss rates (percent) simulated for each size.
const LOSSES: [u32; 2] = [0, 10];
/// Quiet rounds averaged for the steady-state cost.
const STEADY_ROUNDS: usize = 5;
/// The agent's anti-entropy round (`federation::replica::SYNC_EVERY`).
const ROUND_SECONDS: f64 = 2.0;

/// The system allocator, counting the bytes held (for the state's memory).
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The simulation of `members` members with `loss` percent loss.
fn config(members: usize, loss: u32) -> Config {
    Config {
        members,
        loss,
        dup: 5,
        down: 1,
        seed: 0x5EED_0000 ^ ((members as u64) << 8) ^ u64::from(loss),
        max_rounds: 500,
        steady_rounds: STEADY_ROUNDS,
    }
}

/// Bytes in decimal units (kB = 1,000 bytes, MB = 1,000,000).
fn human(bytes: f64) -> String {
    match bytes {
        b if b >= 1e6 => format!("{:.2} MB", b / 1e6),
        b if b >= 1e4 => format!("{:.1} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

/// Push-pull rumour spreading: log₃ N + ln ln N rounds.
fn estimate(members: usize) -> f64 {
    let n = members as f64;
    n.ln() / 3f64.ln() + n.ln().ln()
}

/// Rounds, seconds, mean and max bytes per member per second of a phase.
fn rate(phase: &Phase) -> String {
    let seconds = phase.rounds as f64 * ROUND_SECONDS;
    format!(
        "{:>4} {:>4.0} s {:>9}/s {:>9}/s",
        phase.rounds,
        seconds,
        human(phase.traffic_per_member() as f64 / seconds),
        human(phase.max_traffic() as f64 / seconds),
    )
}

/// One line of the main table.
fn row(members: usize, loss: u32, out: &Outcome) -> String {
    let steady = &out.steady;
    format!(
        "{members:>7} {loss:>3}% | {} {:>9} | {:>3} {:>5.1} | {} | {:>8}",
        rate(&out.cold),
        human(out.cold.traffic_per_member() as f64),
        out.one.rounds,
        estimate(members),
        rate(&out.wave),
        human(steady.traffic_per_member() as f64 / steady.rounds as f64 / ROUND_SECONDS),
    )
}

/// Mean bytes sent per member in `phase`, by kind of message.
fn by_kind(phase: &Phase) -> String {
    Kind::ALL
        .iter()
        .map(|k| format!("{:>9}", human(phase.sent_per_member(*k) as f64)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Heap bytes one member's state of `members` records takes.
fn state_memory(members: usize) -> Result<usize, String> {
    let book = Book::new(members, &mut Rng::new(7))?;
    let before = HELD.load(Ordering::Relaxed);
    let state = book.full_state();
    let held = HELD.load(Ordering::Relaxed).saturating_sub(before);
    drop(state);
    Ok(held)
}

fn main() -> Result<(), Box<dyn Error>> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.replace(['_', ','], "")
                .parse()
                .map_err(|e| format!("{a:?} is not a number of members: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        DEFAULT_SIZES.to_vec()
    } else {
        sizes
    };

    let check = config(100, 10);
    if simulate::<Real>(&check)? != simulate::<Model>(&check)? {
        return Err("the compact replica no longer behaves like federation::sync".into());
    }
    println!("check: 100 members, 10 % loss: the compact replica matches State + sync exactly");
    println!();
    println!("5 % duplicated, random order, 1 % of the members down after the cold start;");
    println!("rounds of 2 s; bytes = sent + received, per member up per second (mean, busiest)");
    println!(
        "{:>7} {:>4} | {:^35} {:>9} | {:^9} | {:^35} | {:>8}",
        "", "", "cold start", "", "1 change", "1 % update wave", "steady"
    );
    println!(
        "{:>7} {:>4} | {:>4} {:>6} {:>11} {:>11} {:>9} | {:>3} {:>5} | {:>4} {:>6} {:>11} {:>11} | {:>8}",
        "members", "loss", "rnds", "time", "mean", "max", "total", "rnd", "est", "rnds", "time", "mean",
        "max", "/s"
    );
    let mut outcomes = Vec::new();
    for &members in &sizes {
        for loss in LOSSES {
            let started = Instant::now();
            let out = simulate::<Model>(&config(members, loss))?;
            println!("{}", row(members, loss, &out));
            eprintln!(
                "  ({members} members, {loss} % loss: {:.1?})",
                started.elapsed()
            );
            outcomes.push((members, loss, out));
        }
    }

    println!();
    println!("where the bytes go: sent per member, by kind of message");
    let kinds: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{:>9}", k.name()))
        .collect();
    println!(
        "{:>7} {:>4} | {:^49} | {:^49}",
        "", "", "cold start", "1 % update wave"
    );
    println!(
        "{:>7} {:>4} | {} | {}",
        "members",
        "loss",
        kinds.join(" "),
        kinds.join(" ")
    );
    for (members, loss, out) in &outcomes {
        println!(
            "{members:>7} {loss:>3}% | {} | {}",
            by_kind(&out.cold),
            by_kind(&out.wave)
        );
    }
    if let Some(&largest) = sizes.iter().max() {
        let held = state_memory(largest)?;
        println!();
        println!(
            "one member's state of {largest} records ({}-byte bodies): {} on the heap, {:.0} B per record",
            sim::BODY_LEN,
            human(held as f64),
            held as f64 / largest as f64
        );
    }
    Ok(())
}
