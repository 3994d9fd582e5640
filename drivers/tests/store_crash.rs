//! Crash test of the state store: a child process writes keys one by one and acknowledges each
//! write after `put` returns; the parent kills it with SIGKILL mid-stream, reopens the state and
//! checks that every acknowledged write survived. Repeated a few times on the same state, so
//! that the recovery of a killed writer is itself recovered from.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drivers::store::{Store, StoreError, Table};

/// Where the child writes; set only in the child.
const DIR_ENV: &str = "CLADNET_STORE_CRASH_DIR";
/// First key the child writes.
const START_ENV: &str = "CLADNET_STORE_CRASH_START";
/// Keys a child writes at most (it is killed long before).
const MAX_KEYS: u64 = 100_000;
/// Acknowledgements the parent waits for before it kills the child, per round.
const KILL_AFTER: [u64; 3] = [200, 137, 251];

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn value(i: u64) -> Vec<u8> {
    format!(
        "value of key {i}, padded to span pages {}",
        "x".repeat((i % 300) as usize)
    )
    .into_bytes()
}

/// The child's half: a no-op unless run by `store_crash_acked_writes_survive_sigkill`.
#[test]
fn store_crash_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let start: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let store = Store::open(&PathBuf::from(dir)).unwrap();
    let out = std::io::stdout();
    for i in start..start + MAX_KEYS {
        store.put(Table::Records, &key(i), &value(i)).unwrap();
        let mut o = out.lock();
        writeln!(o, "ack {i}").unwrap();
        o.flush().unwrap();
    }
}

/// Removes the test's directory however the test ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn store_crash_acked_writes_survive_sigkill() {
    let dir = std::env::temp_dir().join(format!("cladnet-store-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _cleanup = RemoveOnDrop(dir.clone());
    let state = dir.join("state");
    Store::create(&state).unwrap();

    let started = Instant::now();
    let mut next = 0u64; // first key of the next round
    for (round, kill_after) in KILL_AFTER.into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store_crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, &state)
            .env(START_ENV, next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        let mut acked = None;
        let mut count = 0;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            // The test harness prints its own lines too, and "test store_crash_child ... "
            // without a newline, before the child's first ack.
            let Some(n) = line.find("ack ").map(|at| &line[at + 4..]) else {
                continue;
            };
            let n: u64 = n.parse().unwrap();
            assert_eq!(n, acked.map_or(next, |a| a + 1), "acks out of order");
            acked = Some(n);
            count += 1;
            if count == kill_after {
                // While the child holds the state, nobody else may open it.
                let e = Store::open(&state).unwrap_err();
                assert!(matches!(e, StoreError::Locked { .. }), "{e:?}");
                // SAFETY: kill(2) on our own child, which is not yet reaped, so the pid is its.
                assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
                break;
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(
            count, kill_after,
            "round {round}: child ended early: {status}"
        );
        let acked = acked.unwrap();

        let store = Store::open(&state).unwrap();
        for i in 0..=acked {
            assert_eq!(
                store.get(Table::Records, &key(i)).unwrap(),
                Some(value(i)),
                "round {round}: acked key {i} lost (last ack {acked})"
            );
        }
        // Writes acknowledged after the last ack we read (still in the pipe
        // when the kill landed) may exist too; whatever exists is a gapless
        // prefix of the sequence with the right values.
        let all = store.all(Table::Records).unwrap();
        assert!(
            all.len() as u64 > acked,
            "round {round}: {} keys after last ack {acked}",
            all.len()
        );
        for (n, (k, v)) in all.iter().enumerate() {
            let i = u64::from_be_bytes(k.as_slice().try_into().unwrap());
            assert_eq!(i, n as u64, "round {round}: keys have a gap");
            assert_eq!(v, &value(i));
        }
        next = all.len() as u64;
        drop(store);
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "crash test too slow: {:?}",
        started.elapsed()
    );
}
