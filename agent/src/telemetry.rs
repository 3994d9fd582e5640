//! What the agent measures of itself: its CPU share and resident memory,
//! published in its record.

use std::time::Instant;

/// CPU time and wall time at the previous sample, for CPU share.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    cpu_ticks: u64,
    at: Instant,
}

fn proc_self_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (the unit of /proc CPU times).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory effects.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// CPU time this process used, in seconds.
pub fn cpu_seconds() -> f64 {
    proc_self_ticks().map_or(0.0, |t| t as f64 / ticks_per_second())
}

/// File descriptors this process holds open.
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Resident memory of this process in KiB.
pub fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

impl CpuSample {
    /// A sample now.
    pub fn now() -> Self {
        Self {
            cpu_ticks: proc_self_ticks().unwrap_or(0),
            at: Instant::now(),
        }
    }

    /// CPU share since `self`, in thousandths of a core; and the new sample.
    pub fn since(self) -> (u32, CpuSample) {
        let next = CpuSample::now();
        let hz = ticks_per_second();
        let secs = next.at.duration_since(self.at).as_secs_f64();
        let used = next.cpu_ticks.saturating_sub(self.cpu_ticks) as f64 / hz;
        let permille = if secs > 0.0 {
            used / secs * 1000.0
        } else {
            0.0
        };
        (permille as u32, next)
    }
}
