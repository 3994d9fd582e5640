//! Everything of cladnet that touches the operating system: the TUN device
//! (tun-rs, with virtio-net offloads), the UDP socket (quinn-udp: batched
//! recvmmsg, GRO and GSO) and interface configuration over rtnetlink.

pub mod netlink;
pub mod store;

/// Waits up to `timeout_ms` (-1: forever) until `fd` is ready for
/// `events`; true if it is.
pub(crate) fn wait_fd(
    fd: std::os::fd::RawFd,
    events: libc::c_short,
    timeout_ms: libc::c_int,
) -> bool {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, timeout_ms) != 0 }
}

/// Hands the C allocator's free heap pages back to the kernel. glibc keeps
/// what a burst freed (the data plane's coalescing and receive buffers,
/// QUIC buffers), so without this the RSS after a transfer stays at its
/// peak.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks and releases the allocator's own free
    // lists; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub mod tun;
pub mod udp;

/// Errors of the OS drivers, each with a message that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The TUN device could not be created.
    #[error("cannot create TUN device {name}: {reason}; run as root or with CAP_NET_ADMIN, and check that /dev/net/tun exists")]
    Tun {
        /// Requested interface name.
        name: String,
        /// OS error.
        reason: std::io::Error,
    },
    /// Another interface (another agent's) has the name.
    #[error("interface {name} is already in use (another cladnet agent or WireGuard?): pick another name with --iface NAME")]
    TunBusy {
        /// Requested interface name.
        name: String,
    },
    /// The UDP port is taken.
    #[error("cannot listen on UDP {addr}: the port is already in use; pick another ListenPort or stop the other program")]
    PortInUse {
        /// Requested address.
        addr: std::net::SocketAddr,
    },
    /// Binding the UDP socket failed for another reason.
    #[error("cannot listen on UDP {addr}: {reason}")]
    Bind {
        /// Requested address.
        addr: std::net::SocketAddr,
        /// OS error.
        reason: std::io::Error,
    },
    /// A netlink request failed.
    #[error("cannot configure interface {iface}: {what}: {detail}")]
    Netlink {
        /// Interface name.
        iface: String,
        /// The step that failed.
        what: String,
        /// Kernel's answer.
        detail: String,
    },
}
