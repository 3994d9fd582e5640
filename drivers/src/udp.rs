//! The UDP socket of the data plane, through quinn-udp: batched receive
//! (recvmmsg + GRO) and segmented send (GSO).

use crate::DriverError;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Socket buffer size asked for (root may exceed rmem_max/wmem_max).
const SOCKET_BUFFER: usize = 8 << 20;
/// Datagrams received per syscall.
pub const RECV_BATCH: usize = 32;
/// Times a send waits for buffer space before the datagrams are dropped.
const SEND_RETRIES: usize = 20;
/// Milliseconds of one such wait.
const SEND_WAIT_MS: libc::c_int = 5;
/// Bytes per receive buffer: room for a GRO train of 64 KiB.
const RECV_BUF: usize = 65_536;

/// A bound UDP socket with batching state.
pub struct Udp {
    sock: UdpSocket,
    state: UdpSocketState,
    /// Bound to `[::]` serving IPv4 too: IPv4 peers are v4-mapped on the wire.
    dual_stack: bool,
}

/// Binds `addr`; an unspecified IPv4 address binds `[::]` dual-stack when
/// the host has IPv6, so one socket (one NAT mapping) serves both families.
fn bind_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    if addr.ip() == std::net::Ipv4Addr::UNSPECIFIED {
        let six = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).and_then(|s| {
            s.set_only_v6(false)?;
            let any = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, addr.port()));
            s.bind(&any.into())?;
            Ok(s)
        });
        match six {
            Ok(s) => return Ok(s.into()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
            Err(_) => {} // no IPv6 on this host: plain IPv4 below
        }
    }
    UdpSocket::bind(addr)
}

fn force_buffer(sock: &UdpSocket, opt: libc::c_int, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the size passed.
    let _ = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

impl Udp {
    /// Binds `addr` and enables GRO/GSO where the kernel has them.
    pub fn bind(addr: SocketAddr) -> Result<Self, DriverError> {
        let sock = bind_socket(addr).map_err(|source| match source.kind() {
            io::ErrorKind::AddrInUse => DriverError::PortInUse { addr },
            _ => DriverError::Bind {
                addr,
                reason: source,
            },
        })?;
        let state =
            UdpSocketState::new(UdpSockRef::from(&sock)).map_err(|source| DriverError::Bind {
                addr,
                reason: source,
            })?;
        let _ = state.set_recv_buffer_size(UdpSockRef::from(&sock), SOCKET_BUFFER);
        let _ = state.set_send_buffer_size(UdpSockRef::from(&sock), SOCKET_BUFFER);
        force_buffer(&sock, libc::SO_RCVBUFFORCE, SOCKET_BUFFER);
        force_buffer(&sock, libc::SO_SNDBUFFORCE, SOCKET_BUFFER);
        let dual_stack = sock.local_addr().is_ok_and(|a| a.is_ipv6()) && addr.ip().is_unspecified();
        Ok(Self {
            sock,
            state,
            dual_stack,
        })
    }

    /// The bound address (`[::]:port` when dual-stack).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Most segments one GSO send may carry.
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Sends `contents` to `to`, cut into datagrams of `segment` bytes if
    /// given; waits (bounded) for room in the socket buffer.
    pub fn send(&self, to: SocketAddr, contents: &[u8], segment: Option<usize>) -> io::Result<()> {
        let to = match to {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port()))
            }
            other => other,
        };
        let t = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size: segment,
            src_ip: None,
        };
        let mut result = self.state.try_send(UdpSockRef::from(&self.sock), &t);
        for _ in 0..SEND_RETRIES {
            match result {
                Err(ref e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(libc::POLLOUT, SEND_WAIT_MS);
                    result = self.state.try_send(UdpSockRef::from(&self.sock), &t);
                }
                _ => break,
            }
        }
        result
    }

    /// Sends one datagram to `to` with IP TTL (IPv6: hop limit) `ttl`, for
    /// this datagram only: a hole punch that must open our own NAT and die
    /// before the peer's. No waiting for buffer space: a punch is sent
    /// again on the next round.
    pub fn send_with_ttl(&self, to: SocketAddr, datagram: &[u8], ttl: u8) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let v4 = match to {
            SocketAddr::V4(_) => true,
            SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
        };
        let to = match to {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port()))
            }
            other => other,
        };
        let (level, kind) = if v4 {
            (libc::IPPROTO_IP, libc::IP_TTL)
        } else {
            (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT)
        };
        let addr = socket2::SockAddr::from(to);
        let value = libc::c_int::from(ttl);
        // One control message holding a c_int, 8-byte aligned.
        let mut control = [0u64; 4];
        let value_len = std::mem::size_of::<libc::c_int>() as libc::c_uint;
        let mut iov = libc::iovec {
            iov_base: datagram.as_ptr().cast_mut().cast(),
            iov_len: datagram.len(),
        };
        // SAFETY: msghdr is plain data; every pointer set below points to
        // a live buffer of the length given, for the duration of the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = addr.as_ptr().cast_mut().cast();
        msg.msg_namelen = addr.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(value_len) } as _;
        // SAFETY: the control buffer (32 bytes) holds one CMSG_SPACE(4)
        // message (24 bytes); CMSG_FIRSTHDR points into it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null() {
                return Err(io::Error::other("no room for the TTL control message"));
            }
            (*cmsg).cmsg_level = level;
            (*cmsg).cmsg_type = kind;
            (*cmsg).cmsg_len = libc::CMSG_LEN(value_len) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), value);
        }
        // SAFETY: a valid fd and a msghdr whose pointers are live (above).
        let sent = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until the socket is ready for `events` or `timeout_ms` passes
    /// (-1: forever); true if it is ready.
    fn wait(&self, events: libc::c_short, timeout_ms: libc::c_int) -> bool {
        use std::os::fd::AsRawFd;
        crate::wait_fd(self.sock.as_raw_fd(), events, timeout_ms)
    }

    /// Receive buffers and metadata for [`Udp::recv`] (the buffers are
    /// allocated at the first receive).
    pub fn recv_buffers() -> RecvBuffers {
        RecvBuffers {
            buf: Vec::new(),
            meta: vec![RecvMeta::default(); RECV_BATCH],
            count: 0,
        }
    }

    /// Blocks for the next batch of datagrams, or until `idle` passes
    /// without one (then false).
    pub fn recv(&self, rb: &mut RecvBuffers, idle: Duration) -> io::Result<bool> {
        rb.count = 0;
        if rb.buf.is_empty() {
            rb.buf = vec![0u8; RECV_BATCH * RECV_BUF];
        }
        let mut slices: [IoSliceMut<'_>; RECV_BATCH] = {
            let mut it = rb.buf.chunks_mut(RECV_BUF);
            std::array::from_fn(|_| IoSliceMut::new(it.next().unwrap_or(&mut [])))
        };
        let timeout = libc::c_int::try_from(idle.as_millis()).unwrap_or(libc::c_int::MAX);
        loop {
            match self
                .state
                .recv(UdpSockRef::from(&self.sock), &mut slices, &mut rb.meta)
            {
                Ok(n) => {
                    rb.count = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.wait(libc::POLLIN, timeout) {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Buffers of one receive batch: one block, so giving it back when idle
/// returns its pages to the kernel at once.
pub struct RecvBuffers {
    buf: Vec<u8>,
    meta: Vec<RecvMeta>,
    count: usize,
}

impl RecvBuffers {
    /// Every datagram of the last batch with its source (GRO trains split).
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.meta[..self.count]
            .iter()
            .zip(self.buf.chunks(RECV_BUF))
            .flat_map(|(m, b)| {
                let stride = m.stride.max(1);
                let from = SocketAddr::new(m.addr.ip().to_canonical(), m.addr.port());
                b[..m.len].chunks(stride).map(move |d| (from, d))
            })
    }

    /// Gives the buffers back (the next receive allocates them again).
    pub fn release(&mut self) {
        self.buf = Vec::new();
        self.count = 0;
    }
}

/// Largest payload of one GSO send: the UDP length field caps a super-datagram.
const MAX_GSO_BYTES: usize = 65_000;

/// One train of equal-size datagrams to one destination (the last may be shorter).
#[derive(Clone, Copy)]
struct Train {
    to: SocketAddr,
    start: usize,
    end: usize,
    segment: usize,
    count: usize,
}

/// Collects outgoing datagrams into GSO trains without doing any I/O, so a
/// caller can build a batch under a lock and send it after releasing it.
pub struct GsoBatch {
    buf: Vec<u8>,
    len: usize,
    max_datagram: usize,
    trains: Vec<Train>,
    max_segments: usize,
}

impl GsoBatch {
    /// Room for `datagrams` datagrams of at most `max_datagram` bytes.
    pub fn new(max_datagram: usize, datagrams: usize, max_segments: usize) -> Self {
        Self {
            buf: vec![0; max_datagram * datagrams],
            len: 0,
            max_datagram,
            trains: Vec::with_capacity(datagrams),
            max_segments: max_segments.clamp(1, 64),
        }
    }

    /// True if another datagram of the maximum size fits.
    pub fn has_room(&self) -> bool {
        self.buf.len() - self.len >= self.max_datagram
    }

    /// Space for the next datagram.
    pub fn slot(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// Records the `len` bytes just written into `slot()` as a datagram to `to`.
    pub fn commit(&mut self, to: SocketAddr, len: usize) {
        let start = self.len;
        self.len += len;
        if let Some(t) = self.trains.last_mut() {
            let joins = t.to == to
                && t.count < self.max_segments
                && len <= t.segment
                && t.end - t.start + len <= MAX_GSO_BYTES
                && t.end - t.start == t.count * t.segment;
            if joins {
                t.end = self.len;
                t.count += 1;
                return;
            }
        }
        self.trains.push(Train {
            to,
            start,
            end: self.len,
            segment: len,
            count: 1,
        });
    }

    /// The largest datagram a slot is sized for.
    pub fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// Sends every train and empties the batch. A train the kernel refuses
    /// as a whole (GSO unsupported on this path) is resent one datagram at a
    /// time; returns how many datagrams were lost anyway, like on a wire.
    pub fn send(&mut self, udp: &Udp) -> usize {
        let mut failed = 0;
        for t in self.trains.drain(..) {
            let train = &self.buf[t.start..t.end];
            let sent = match t.count {
                1 => udp.send(t.to, train, None).is_ok(),
                _ => udp.send(t.to, train, Some(t.segment)).is_ok(),
            };
            if !sent && t.count > 1 {
                failed += train
                    .chunks(t.segment)
                    .filter(|d| udp.send(t.to, d, None).is_err())
                    .count();
            } else if !sent {
                failed += 1;
            }
        }
        self.len = 0;
        self.max_segments = udp.max_gso_segments().clamp(1, 64);
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// The TTL the next datagram on `sock` arrived with (IP_RECVTTL on).
    fn received_ttl(sock: &UdpSocket) -> Option<i32> {
        let mut buf = [0u8; 64];
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: test-only recvmsg into live buffers of the sizes given.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            if libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) < 0 {
                return None;
            }
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (!cmsg.is_null() && (*cmsg).cmsg_type == libc::IP_TTL)
                .then(|| std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>()))
        }
    }

    #[test]
    fn a_datagram_sent_with_a_ttl_carries_it_and_the_next_does_not() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a valid fd and a c_int of the size passed.
        let r = unsafe {
            libc::setsockopt(
                rx.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_RECVTTL,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        let to = rx.local_addr().unwrap();
        // Both socket kinds: plain IPv4 and dual-stack (v4-mapped).
        for bind in ["127.0.0.1:0", "0.0.0.0:0"] {
            let tx = Udp::bind(bind.parse().unwrap()).unwrap();
            tx.send_with_ttl(to, b"punch", 3).unwrap();
            assert_eq!(received_ttl(&rx), Some(3), "{bind}");
            tx.send(to, b"data", None).unwrap();
            assert_ne!(received_ttl(&rx), Some(3), "{bind}: the socket's own TTL");
        }
    }
}
