//! The agent process: its async runtime, and the signals that stop it.

use anyhow::{Context, Result};

/// A single-threaded async runtime (the control loop needs no more).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
        _ = term.recv() => {}
    }
    tracing::info!("signal received, shutting down");
    Ok(())
}

/// True if this process may configure interfaces: root, or holding
/// CAP_NET_ADMIN (bit 12 of the effective set in /proc/self/status).
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

/// The sentence for a command that needs root.
pub const NEEDS_ROOT: &str = "cladnet needs root for this (or CAP_NET_ADMIN and CAP_NET_RAW): run it with sudo, or run the node as the systemd service";
