//! All namespaces share the kernel's IPv4 neighbour table (1,024 entries by
//! default): past ~30 hosts on one bridge it overflows and packets fail
//! with ENOBUFS ("No buffer space available"), which looks like a cladnet
//! bug and is not one. Labs of that size raise its thresholds while they
//! run.

use anyhow::Result;

const NEIGH: &str = "/proc/sys/net/ipv4/neigh/default";
const RAISED: [(&str, u32); 3] = [
    ("gc_thresh1", 4096),
    ("gc_thresh2", 8192),
    ("gc_thresh3", 16384),
];

/// The thresholds as they were, put back on drop.
pub struct Thresholds(Vec<(String, String)>);

impl Thresholds {
    /// Raises `gc_thresh1/2/3` to 4096/8192/16384 where they are lower.
    pub fn raise() -> Result<Self> {
        let mut old = Vec::new();
        for (name, value) in RAISED {
            let path = format!("{NEIGH}/{name}");
            let was = std::fs::read_to_string(&path)?.trim().to_string();
            if was.parse::<u32>().unwrap_or(0) < value {
                std::fs::write(&path, value.to_string())?;
                old.push((path, was));
            }
        }
        Ok(Self(old))
    }
}

impl Drop for Thresholds {
    fn drop(&mut self) {
        for (path, was) in self.0.iter().rev() {
            let _ = std::fs::write(path, was);
        }
    }
}
