//! cladnet testbed: network-namespace labs for integration tests and benches.
//!
//! Everything a lab creates lives inside network namespaces it creates itself
//! (named `cl-<pid>-<n>-<node>`), joined through a Linux bridge that sits in a
//! dedicated "switch" namespace. Nothing is ever added to the root namespace:
//! veth pairs are created directly inside the lab's namespaces. Underlay
//! addresses come from 198.18.0.0/15, overlay addresses (chosen by the tests)
//! from 100.64.0.0/10. NAT sites ([`nat`], [`Lab::add_site`]) put nodes on
//! private LANs (10/8, 172.16/12, 192.168/16) behind router namespaces; those
//! addresses too exist only inside the lab's namespaces.
//!
//! Cleanup: dropping the [`Lab`] (also during a panic's unwinding) stops every
//! process the lab started (SIGTERM, grace, SIGKILL — by PID, only its own
//! children), deletes its namespaces and its temp dir (kept, with its path
//! printed, when the drop happens during a panic or `CLADNET_TESTBED_KEEP=1`).
//! [`sweep_stale`] removes namespaces left by lab processes that died without
//! unwinding (SIGKILL, abort).
//!
//! Everything needs root; tests call [`is_root`] and skip loudly otherwise.

pub mod fake_time;
mod lab;
pub mod nat;
pub mod rng;
pub mod wg;
pub mod wire;

pub use lab::{Lab, Node, Proc, DEFAULT_EXEC_TIMEOUT};
pub use nat::{Firewall, NatKind, Site};
/// Re-exported so that tests can parse `cladnet show --json` without their own dependency.
pub use serde_json;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Prefix of every namespace a lab creates.
pub const NS_PREFIX: &str = "cl-";

/// True when running as root (labs need CAP_NET_ADMIN / CAP_SYS_ADMIN).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Set to 1 to let labs skip (loudly) instead of fail when not run as root.
pub const ALLOW_SKIP: &str = "CLADNET_ALLOW_SKIP";

/// Whether a lab runs: `Ok(true)` to skip (not root, and skipping was
/// asked for), `Ok(false)` to run, `Err` to fail (not root, no opt-out: a
/// lab that silently passes without running proves nothing).
pub fn skip_decision(root: bool, opt_out: bool) -> Result<bool, String> {
    match (root, opt_out) {
        (true, _) => Ok(false),
        (false, true) => Ok(true),
        (false, false) => Err(format!(
            "needs root (network namespaces, TUN): run `sudo scripts/test.sh`, or set {ALLOW_SKIP}=1 to skip the labs"
        )),
    }
}

/// Returns true if the caller must skip (not root and [`ALLOW_SKIP`] set,
/// said loudly); panics when not root without that opt-out.
pub fn skip_unless_root(test: &str) -> bool {
    let opt_out = std::env::var_os(ALLOW_SKIP).is_some_and(|v| v == "1");
    match skip_decision(is_root(), opt_out) {
        Ok(false) => false,
        Ok(true) => {
            eprintln!();
            eprintln!(
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            );
            eprintln!("!!! SKIPPED {test}: needs root ({ALLOW_SKIP}=1). Run: sudo scripts/test.sh");
            eprintln!(
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            );
            eprintln!();
            true
        }
        Err(why) => panic!("{test} {why}"),
    }
}

/// Polls `f` every `interval` until it returns true or `timeout` elapses.
/// Returns whether it succeeded. Always bounded.
pub fn wait_until_every(
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(interval.min(deadline - now));
    }
}

/// [`wait_until_every`] with a 100 ms interval.
pub fn wait_until(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    wait_until_every(timeout, Duration::from_millis(100), f)
}

/// Like [`wait_until`] but `f` returns `Some(value)` when done.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let mut out = None;
    wait_until(timeout, || {
        out = f();
        out.is_some()
    });
    out
}

/// Finds a helper program: `$ENV_VAR` if set, else `PATH`, else `~/.cargo/bin/NAME`.
pub fn find_program(name: &str, env_var: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let c = dir.join(name);
            if c.is_file() {
                return Some(c);
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    let c = home.join(".cargo/bin").join(name);
    c.is_file().then_some(c)
}

/// Deletes namespaces named `cl-<pid>-...` whose creating process is dead
/// (a lab that was SIGKILLed never ran its Drop). Processes still inside such
/// a namespace are not ours to kill: they are reported, and the namespace
/// name is removed anyway (the kernel frees it when they exit).
/// Returns the names deleted.
pub fn sweep_stale() -> Vec<String> {
    let mut deleted = Vec::new();
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return deleted;
    };
    for ent in dir.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let pids = lab::host_output(&["ip", "netns", "pids", &name]).unwrap_or_default();
        if !pids.trim().is_empty() {
            eprintln!(
                "testbed: stale namespace {name} still holds processes {} (not ours to kill)",
                pids.split_whitespace().collect::<Vec<_>>().join(",")
            );
        }
        if lab::host_output(&["ip", "netns", "del", &name]).is_ok() {
            eprintln!("testbed: swept stale namespace {name}");
            deleted.push(name);
        }
    }
    deleted
}

/// SIGINT (so tests need no libc dependency of their own to stop a `ping`
/// gracefully with [`Proc::signal`]).
pub fn libc_sigint() -> i32 {
    libc::SIGINT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labs_fail_when_not_root_unless_skipping_was_asked_for() {
        assert_eq!(skip_decision(true, false), Ok(false));
        assert_eq!(skip_decision(true, true), Ok(false), "root always runs");
        assert_eq!(skip_decision(false, true), Ok(true));
        let e = skip_decision(false, false).unwrap_err();
        assert!(
            e.contains("sudo scripts/test.sh") && e.contains(ALLOW_SKIP),
            "{e}"
        );
    }
}
