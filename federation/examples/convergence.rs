//! Convergence and traffic of the control plane's anti-entropy for networks
//! of several sizes, without and with 10 % message loss:
//!
//! ```sh
//! cargo run --release -p federation --example convergence -- 100 1000 5000
//! ```
//!
//! For each size and loss rate it prints the rounds a cold start takes
//! (every member knowing only its own record) and the bytes each member
//! sends and receives meanwhile; the same for an update wave, where 1 % of
//! the members publish a new version of their record once the network has
//! converged; and the bytes per member per round of a converged network
//! where nothing changes. A second table splits the bytes sent by kind of
//! message (summaries, version lists, pulls, records). Records carry a
//! 1,500-byte body, like a member record. Messages are delivered in random
//! order; duplication is off.
//!
//! The simulation is the one of `tests/convergence.rs` (see there for the
//! protocol, network and byte model). Large networks use its compact
//! replica; before the table, a 100-member network is run with both the real
//! `State` and the compact replica to check they still behave identically.

use std::error::Error;
use std::time::Instant;

#[path = "../tests/convergence.rs"]
mod sim;

use sim::{simulate, Config, Kind, Model, Outcome, Phase, Real};

/// Sizes simulated when none are given on the command line.
const DEFAULT_SIZES: [usize; 3] = [100, 1_000, 5_000];
/// Loss rates (percent) simulated for each size.
const LOSSES: [u32; 2] = [0, 10];
/// Quiet rounds averaged for the steady-state cost.
const STEADY_ROUNDS: usize = 5;

/// The simulation of `members` members with `loss` percent loss.
fn config(members: usize, loss: u32) -> Config {
    Config {
        members,
        loss,
        dup: 0,
        seed: 0x5EED_0000 ^ ((members as u64) << 8) ^ u64::from(loss),
        max_rounds: 500,
        steady_rounds: STEADY_ROUNDS,
    }
}

/// Bytes in decimal units (kB = 1,000 bytes, MB = 1,000,000).
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.2} MB", b as f64 / 1e6),
        b if b >= 10_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

/// One line of the main table.
fn row(members: usize, loss: u32, out: &Outcome) -> String {
    format!(
        "{members:>7} {loss:>4}% | {:>6} {:>10} {:>10} | {:>7} {:>6} {:>9} {:>9} | {:>8}",
        out.cold.rounds,
        human(out.cold.traffic_per_member()),
        human(out.cold.max_traffic()),
        out.wave_writers,
        out.wave.rounds,
        human(out.wave.traffic_per_member()),
        human(out.wave.max_traffic()),
        human(out.steady.traffic_per_member() / out.steady.rounds as u64),
    )
}

/// Mean bytes sent per member in `phase`, by kind of message.
fn by_kind(phase: &Phase) -> String {
    Kind::ALL
        .iter()
        .map(|k| format!("{:>9}", human(phase.sent_per_member(*k))))
        .collect::<Vec<_>>()
        .join(" ")
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
    println!("traffic = bytes sent + received, mean per member (max: the busiest member)");
    println!(
        "{:>7} {:>5} | {:^28} | {:^35} | {:>8}",
        "", "", "cold start", "1 % update wave", "steady"
    );
    println!(
        "{:>7} {:>5} | {:>6} {:>10} {:>10} | {:>7} {:>6} {:>9} {:>9} | {:>8}",
        "members",
        "loss",
        "rounds",
        "traffic",
        "max",
        "writers",
        "rounds",
        "traffic",
        "max",
        "/round"
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
        "{:>7} {:>5} | {:^39} | {:^39}",
        "", "", "cold start", "1 % update wave"
    );
    println!(
        "{:>7} {:>5} | {} | {}",
        "members",
        "loss",
        kinds.join(" "),
        kinds.join(" ")
    );
    for (members, loss, out) in &outcomes {
        println!(
            "{members:>7} {loss:>4}% | {} | {}",
            by_kind(&out.cold),
            by_kind(&out.wave)
        );
    }
    Ok(())
}
