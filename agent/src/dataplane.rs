//! The data-plane threads, pure I/O around the sans-IO [`Node`]: TUN →
//! encrypt → UDP (tx), UDP → sort and decrypt → TUN (rx), and the timers,
//! which sleep until [`Node::poll_timeout`] says. Each thread locks the
//! node once per batch and does its I/O outside the lock; buffers are
//! allocated once (again only when the MTU changes). Events the node
//! raises (echo answers, handshakes) go to the control loop.

use drivers::tun::{Tun, TunReader, TunWaiter, TunWriter};
use drivers::udp::{GsoBatch, RecvBuffers, Udp};
use netstack::node::Event;
use netstack::timers::TICK;
use netstack::wire::{DATA_HEADER_LEN, INITIATION_LEN};
use netstack::{Action, DeviceConfig, Node, PrivateKey};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Handshake messages per second before cookies are demanded from every
/// source (netstack also demands one from a source past its own share).
pub const HANDSHAKE_LOAD_LIMIT: u32 = 200;

/// Datagrams a send batch holds before it must be flushed.
const SEND_BATCH: usize = 160;
/// Packets delivered in one receive round up to which the rx thread also
/// forwards the answers the kernel produced (see [`Ends::reader`]).
const LIGHT_TRAFFIC: usize = 4;
/// The receive side gives its burst buffers back after this long without
/// bulk traffic (a batch of more than [`LIGHT_TRAFFIC`] packets).
const RELEASE_AFTER: Duration = Duration::from_secs(5);
/// Events waiting for the control loop, at most (more are dropped: echo
/// answers are asked for again, handshakes show in the peer table).
const EVENTS: usize = 256;

/// Locks `m`. A poisoned lock means another data-plane thread panicked;
/// what it guards is still consistent per call, so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node, shared by the data-plane threads and the control loop.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Inner>,
}

struct Inner {
    node: Mutex<Node>,
    udp: Arc<Udp>,
    /// The timer thread, and whether it sleeps longer than a tick (then
    /// whoever touches the node wakes it: its deadline may have moved).
    timer: OnceLock<Thread>,
    sleeping: AtomicBool,
}

impl Shared {
    fn new(node: Node, udp: Arc<Udp>) -> Self {
        Self {
            inner: Arc::new(Inner {
                node: Mutex::new(node),
                udp,
                timer: OnceLock::new(),
                sleeping: AtomicBool::new(false),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Node> {
        lock(&self.inner.node)
    }

    /// Runs `f` on the node (wakes the timers: their deadline may move).
    pub fn with<R>(&self, f: impl FnOnce(&mut Node) -> R) -> R {
        let r = f(&mut self.lock());
        self.wake_timers();
        r
    }

    /// Sends one datagram from the data-plane socket (an echo question).
    pub fn send_to(&self, to: std::net::SocketAddr, datagram: &[u8]) -> io::Result<()> {
        self.inner.udp.send(to, datagram, None)
    }

    /// Sends `datagram` to `to` with IP TTL `ttl` (a hole punch).
    pub fn send_with_ttl(
        &self,
        to: std::net::SocketAddr,
        datagram: &[u8],
        ttl: u8,
    ) -> io::Result<()> {
        self.inner.udp.send_with_ttl(to, datagram, ttl)
    }

    fn wake_timers(&self) {
        if self.inner.sleeping.load(Ordering::Relaxed) {
            if let Some(t) = self.inner.timer.get() {
                t.unpark();
            }
        }
    }
}

/// A data plane for private key `key` and MTU `mtu`; relaying for members
/// if `relay` (a static node has none).
pub fn node(key: PrivateKey, mtu: u16, relay: bool) -> Node {
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Node::new(
        DeviceConfig {
            private_key: key,
            mtu: usize::from(mtu),
            handshake_load_limit: HANDSHAKE_LOAD_LIMIT,
        },
        relay,
        Instant::now(),
        wall,
    )
}

/// Starts the three data-plane threads around `node`; returns the shared
/// node and the events it raises.
pub fn start(tun: &Tun, udp: Udp, node: Node) -> io::Result<(Shared, mpsc::Receiver<Event>)> {
    let udp = Arc::new(udp);
    let shared = Shared::new(node, udp.clone());
    let (events, rx) = mpsc::channel(EVENTS);
    let ends = Arc::new(Ends {
        shared: shared.clone(),
        udp,
        reader: Mutex::new(tun.reader()),
        waiter: tun.waiter(),
        events,
    });
    let writer = tun.writer(DATA_HEADER_LEN);
    spawn("cladnet-tx", {
        let ends = ends.clone();
        move || outbound(&ends)
    })?;
    spawn("cladnet-rx", {
        let ends = ends.clone();
        move || inbound(&ends, writer)
    })?;
    let timer = spawn("cladnet-timer", move || timers(&ends))?;
    let _ = shared.inner.timer.set(timer);
    Ok((shared, rx))
}

/// What the data-plane threads share.
struct Ends {
    shared: Shared,
    udp: Arc<Udp>,
    /// The TUN reader: owned by the tx thread while it works, and taken by
    /// the rx thread right after it wrote to the TUN device, so an answer
    /// the kernel produced at once (a ping reply, a TCP ACK) leaves without
    /// waking the tx thread. Whoever holds it reads and sends in order.
    reader: Mutex<TunReader>,
    waiter: TunWaiter,
    events: mpsc::Sender<Event>,
}

impl Ends {
    /// Hands the node's events to the control loop.
    fn pass_events(&self, node: &mut Node) {
        while let Some(e) = node.poll_event() {
            let _ = self.events.try_send(e);
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<Thread> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(|h| h.thread().clone())
}

/// A send batch sized for the node's current MTU.
fn batch(node: &Node, udp: &Udp) -> GsoBatch {
    GsoBatch::new(
        node.max_datagram().max(INITIATION_LEN),
        SEND_BATCH,
        udp.max_gso_segments(),
    )
}

/// Re-sizes `batch` (empty) if the node's MTU changed since it was made.
fn fit(batch: &mut GsoBatch, node: &Node, udp: &Udp) {
    if batch.max_datagram() != node.max_datagram().max(INITIATION_LEN) {
        *batch = self::batch(node, udp);
    }
}

/// Moves the node's pending transmissions into `batch`; false if it
/// stopped because the batch is full (send it and call again).
fn drain(node: &mut Node, batch: &mut GsoBatch, now: Instant) -> bool {
    while batch.has_room() {
        match node.poll_transmit(batch.slot(), now) {
            Some((to, len)) => batch.commit(to, len),
            None => return true,
        }
    }
    false
}

/// True if a TUN read error means the device is gone (stop), false if it
/// concerned one packet or was transient (go on).
fn tun_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD | libc::ENODEV | libc::EBADF)
    )
}

/// Reads what the TUN device holds now (at most `max_reads` batches),
/// encrypts and sends it. Returns false if the device is gone.
fn forward_ready(
    ends: &Ends,
    reader: &mut TunReader,
    batch: &mut GsoBatch,
    max_reads: usize,
) -> bool {
    for _ in 0..max_reads {
        let n = match reader.try_recv() {
            Ok(0) => return true,
            Ok(n) => n,
            Err(e) if tun_gone(&e) => {
                tracing::error!("the TUN device is gone ({e}); stopping outbound traffic");
                return false;
            }
            Err(e) => {
                // E.g. a super-packet with more segments than our buffers
                // (tiny MSS): that packet is lost, TCP resends it.
                tracing::debug!("dropped a TUN read: {e}");
                continue;
            }
        };
        let now = Instant::now();
        let mut next = 0;
        loop {
            let mut node = ends.shared.lock();
            fit(batch, &node, &ends.udp);
            while next < n && batch.has_room() {
                if let Action::Send { to, len } =
                    node.encapsulate(reader.packet(next), batch.slot(), now)
                {
                    batch.commit(to, len);
                }
                next += 1;
            }
            let done = next == n && drain(&mut node, batch, now);
            drop(node);
            batch.send(&ends.udp);
            if done {
                break;
            }
        }
        ends.shared.wake_timers();
    }
    true
}

fn outbound(ends: &Ends) {
    let mut batch = batch(&ends.shared.lock(), &ends.udp);
    loop {
        let mut reader = lock(&ends.reader);
        if !forward_ready(ends, &mut reader, &mut batch, usize::MAX) {
            return;
        }
        drop(reader);
        ends.waiter.wait();
    }
}

/// Receive errors that only echo an ICMP error about an earlier send.
fn is_icmp_echo(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::Interrupted
    )
}

fn inbound(ends: &Ends, mut writer: TunWriter) {
    let mut replies = batch(&ends.shared.lock(), &ends.udp);
    let mut rx: RecvBuffers = Udp::recv_buffers();
    // When the last bulk batch came, and whether its buffers went back.
    let (mut last_bulk, mut released) = (Instant::now(), false);
    loop {
        // Before a receive, never after one (the batch lives in `rx`).
        if !released && last_bulk.elapsed() >= RELEASE_AFTER {
            // Quiet (at most light traffic): the pages the last burst
            // filled go back to the kernel; light traffic touches few.
            rx.release();
            writer.release();
            released = true;
        }
        match ends.udp.recv(&mut rx, RELEASE_AFTER) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                if !is_icmp_echo(&e) {
                    tracing::warn!("receiving on the UDP socket failed: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                continue;
            }
        }
        let now = Instant::now();
        let mut datagrams = rx.datagrams();
        let mut carry = None;
        let mut delivered = 0;
        loop {
            let mut node = ends.shared.lock();
            fit(&mut replies, &node, &ends.udp);
            let mut exhausted = true;
            while let Some((from, datagram)) = carry.take().or_else(|| datagrams.next()) {
                if writer.is_full() || !replies.has_room() {
                    carry = Some((from, datagram));
                    exhausted = false;
                    break;
                }
                let Some(out) = writer.next_buffer(datagram.len().max(INITIATION_LEN)) else {
                    break;
                };
                match node.handle_datagram(from, datagram, out, now) {
                    Action::Deliver(range) => {
                        writer.commit(range.len());
                        delivered += 1;
                    }
                    Action::Send { to, len } => {
                        replies.slot()[..len].copy_from_slice(&out[..len]);
                        replies.commit(to, len);
                    }
                    Action::None => {}
                }
            }
            let done = exhausted && drain(&mut node, &mut replies, now);
            ends.pass_events(&mut node);
            drop(node);
            flush_tun(&mut writer);
            replies.send(&ends.udp);
            if done {
                break;
            }
        }
        ends.shared.wake_timers();
        if delivered > LIGHT_TRAFFIC {
            (last_bulk, released) = (now, false);
        }
        // Only after light traffic (an exchange, not a bulk stream whose
        // ACKs the tx thread handles in parallel), and one batch at most:
        // the rx thread must get back to its socket.
        if delivered <= LIGHT_TRAFFIC {
            if let Ok(mut reader) = ends.reader.try_lock() {
                forward_ready(ends, &mut reader, &mut replies, 1);
            }
        }
    }
}

fn flush_tun(writer: &mut TunWriter) {
    if let Err(e) = writer.flush() {
        tracing::debug!("writing to the TUN device failed: {e}");
    }
}

/// Runs the node's timers when it asks; sleeps until then, or until
/// someone touching the node wakes it.
fn timers(ends: &Ends) {
    let sleeping = &ends.shared.inner.sleeping;
    let mut batch = batch(&ends.shared.lock(), &ends.udp);
    loop {
        let due = ends.shared.lock().poll_timeout();
        let now = Instant::now();
        match due {
            Some(t) if t <= now => {}
            Some(t) if t - now <= TICK => std::thread::sleep(t - now),
            long => {
                // Announce the long sleep first, then look again, so a
                // wake-up between the two is not lost.
                sleeping.store(true, Ordering::SeqCst);
                let again = ends.shared.lock().poll_timeout();
                if again == long {
                    match long {
                        Some(t) => std::thread::park_timeout(t.saturating_duration_since(now)),
                        None => std::thread::park(),
                    }
                }
                sleeping.store(false, Ordering::SeqCst);
                continue;
            }
        }
        let now = Instant::now();
        let mut node = ends.shared.lock();
        node.handle_timeout(now);
        fit(&mut batch, &node, &ends.udp);
        loop {
            let done = drain(&mut node, &mut batch, now);
            drop(node);
            batch.send(&ends.udp);
            node = ends.shared.lock();
            if done {
                break;
            }
        }
        ends.pass_events(&mut node);
    }
}
