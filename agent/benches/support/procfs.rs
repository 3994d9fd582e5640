//! What an operator reads of a running agent in `/proc`: resident memory
//! and CPU ticks.

use anyhow::{Context, Result};
use std::time::Duration;

/// A field of `/proc/PID/status`, in kB.
pub fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field}"))
}

/// VmRSS of `pid`, in kB.
pub fn rss_kb(pid: u32) -> Result<u64> {
    status_kb(pid, "VmRSS")
}

/// Open file descriptors of `pid`.
pub fn fds(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = stat.rsplit_once(')').context("odd stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).context("no utime")?.parse()?;
    let stime: u64 = f.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Each process's CPU use over `window`, in % of one core.
pub fn cpu_percent(pids: &[u32], window: Duration) -> Result<Vec<f64>> {
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect::<Result<_>>()?;
    std::thread::sleep(window);
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.iter()
        .zip(before)
        .map(|(p, b)| {
            Ok(cpu_ticks(*p)?.saturating_sub(b) as f64 / hz / window.as_secs_f64() * 100.0)
        })
        .collect()
}

/// Median and maximum of `values`.
pub fn median_max<T: Copy + PartialOrd>(values: &[T]) -> Option<(T, T)> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Some((*v.get(v.len() / 2)?, *v.last()?))
}
