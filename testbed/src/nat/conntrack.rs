//! Flushing a namespace's conntrack table through ctnetlink, so the lab
//! needs no `conntrack` tool.

use super::Site;
use crate::Lab;
use anyhow::{bail, Context, Result};

impl Lab {
    /// Flushes the conntrack table of the site's router (every NAT binding
    /// and tracked flow; like `conntrack -F`, through ctnetlink directly so
    /// no conntrack tool is needed).
    pub fn flush_site_conntrack(&self, site: &Site) -> Result<()> {
        self.in_netns(&site.router, flush_conntrack)?
            .with_context(|| format!("flushing conntrack of site {}", site.name()))
    }
}

/// `conntrack -F` for IPv4 in the calling thread's network namespace: an
/// `IPCTNL_MSG_CT_DELETE` request without a tuple, acknowledged.
fn flush_conntrack() -> Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const NFNL_SUBSYS_CTNETLINK: u16 = 1;
    const IPCTNL_MSG_CT_DELETE: u16 = 2;
    const NLMSG_ERROR: u16 = 2;
    const HDR: usize = 16;

    // SAFETY: plain socket(2); the result is checked and owned below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if raw < 0 {
        bail!("netlink socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: valid fd, pointer/length of a live timeval.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    }
    let seq: u32 = 1;
    let mut msg = Vec::with_capacity(HDR + 4);
    msg.extend_from_slice(&((HDR + 4) as u32).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version (NFNETLINK_V0), res_id (big endian)
    msg.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
    // SAFETY: an all-zero sockaddr_nl is valid (kernel, no groups).
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: valid fd; buffer and address pointers/lengths are live.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        bail!("netlink send: {}", std::io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: valid fd; `buf` is live and writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            bail!("netlink recv: {}", std::io::Error::last_os_error());
        }
        let data = &buf[..n as usize];
        let mut off = 0;
        while off + HDR <= data.len() {
            let field = |at: usize, len: usize| &data[off + at..off + at + len];
            let len = u32::from_ne_bytes(field(0, 4).try_into()?) as usize;
            let typ = u16::from_ne_bytes(field(4, 2).try_into()?);
            let mseq = u32::from_ne_bytes(field(8, 4).try_into()?);
            if len < HDR || off + len > data.len() {
                bail!("netlink: malformed answer");
            }
            if typ == NLMSG_ERROR && mseq == seq {
                if len < HDR + 4 {
                    bail!("netlink: short error message");
                }
                let err = i32::from_ne_bytes(field(HDR, 4).try_into()?);
                if err == 0 {
                    return Ok(());
                }
                bail!(
                    "conntrack flush: {}",
                    std::io::Error::from_raw_os_error(-err)
                );
            }
            off += (len + 3) & !3;
        }
    }
}
