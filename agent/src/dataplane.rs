//! The data plane threads: TUN → encrypt → UDP, UDP → decrypt → TUN, and the
//! protocol timer. Each thread works in batches: one lock of the device per
//! batch, I/O outside the lock, buffers allocated once.

use crate::echo::Echo;
use crate::relays::Relays;
use drivers::tun::{Tun, TunReader, TunWaiter, TunWriter};
use drivers::udp::{GsoBatch, RecvBuffers, Udp};
use netstack::echo;
use netstack::relay::{self, Envelope};
use netstack::timers::TICK;
use netstack::wire::{DATA_HEADER_LEN, INITIATION_LEN};
use netstack::{Action, Device};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Largest datagram we produce: a 64 KiB inner packet cannot occur (the TUN
/// MTU bounds it), so MTU-sized packets plus overhead and padding suffice.
const MAX_DATAGRAM: usize = 65_535 + 64;
/// Datagrams a send batch holds before it must be flushed.
const SEND_BATCH: usize = 160;
/// Packets delivered in one receive round up to which the rx thread also
/// forwards the answers the kernel produced (see [`Ends::reader`]).
const LIGHT_TRAFFIC: usize = 4;

type Shared = Arc<Mutex<Device>>;

fn lock(device: &Shared) -> MutexGuard<'_, Device> {
    // A poisoned lock means another data-plane thread panicked; the device
    // state is still consistent per call, so keep serving.
    device.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the three data-plane threads.
pub fn start(
    tun: &Tun,
    udp: &Arc<Udp>,
    device: &Shared,
    relays: &Arc<Relays>,
    echo: &Arc<Echo>,
) -> io::Result<()> {
    let max_datagram = tun_datagram_limit(device);
    let gso = || GsoBatch::new(max_datagram, SEND_BATCH, udp.max_gso_segments());
    let ends = Arc::new(Ends {
        device: device.clone(),
        udp: udp.clone(),
        reader: Mutex::new(tun.reader()),
        waiter: tun.waiter(),
        relays: relays.clone(),
        echo: echo.clone(),
    });
    let writer = tun.writer(DATA_HEADER_LEN);
    spawn("cladnet-tx", {
        let (ends, batch) = (ends.clone(), gso());
        move || outbound(&ends, batch)
    })?;
    spawn("cladnet-rx", {
        let (ends, batch) = (ends.clone(), gso());
        move || inbound(&ends, writer, batch)
    })?;
    spawn("cladnet-timer", {
        let batch = gso();
        move || timers(&ends, batch)
    })?;
    Ok(())
}

/// What the data-plane threads share.
struct Ends {
    device: Shared,
    udp: Arc<Udp>,
    /// The TUN reader: owned by the tx thread while it works, and taken by
    /// the rx thread right after it wrote to the TUN device, so an answer
    /// the kernel produced at once (a ping reply, a TCP ACK) leaves without
    /// waking the tx thread. Whoever holds it reads and sends in order.
    reader: Mutex<TunReader>,
    waiter: TunWaiter,
    relays: Arc<Relays>,
    echo: Arc<Echo>,
}

impl Ends {
    /// Sends a batch, wrapping datagrams to relayed peers.
    fn send(&self, batch: &mut GsoBatch) {
        batch.send_via(&self.udp, &|to| self.relays.rewrite(to));
    }
}

fn tun_datagram_limit(device: &Shared) -> usize {
    (lock(device).mtu() + 16 + DATA_HEADER_LEN + 16).clamp(INITIATION_LEN, MAX_DATAGRAM)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(|_| ())
}

/// Moves the device's pending transmissions into `batch`; false if it
/// stopped because the batch is full (send it and call again).
fn drain(dev: &mut Device, batch: &mut GsoBatch, now: Instant) -> bool {
    while batch.has_room() {
        match dev.poll_transmit(batch.slot(), now) {
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
            let mut dev = lock(&ends.device);
            while next < n && batch.has_room() {
                if let Action::Send { to, len } =
                    dev.encapsulate(reader.packet(next), batch.slot(), now)
                {
                    batch.commit(to, len);
                }
                next += 1;
            }
            let done = next == n && drain(&mut dev, batch, now);
            drop(dev);
            ends.send(batch);
            if done {
                break;
            }
        }
    }
    true
}

fn outbound(ends: &Ends, mut batch: GsoBatch) {
    loop {
        let mut reader = ends.reader.lock().unwrap_or_else(|e| e.into_inner());
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

fn inbound(ends: &Ends, mut writer: TunWriter, mut replies: GsoBatch) {
    let (udp, device) = (&ends.udp, &ends.device);
    let mut rx: RecvBuffers = Udp::recv_buffers();
    loop {
        if let Err(e) = udp.recv(&mut rx) {
            if !is_icmp_echo(&e) {
                tracing::warn!("receiving on the UDP socket failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            continue;
        }
        let now = Instant::now();
        let mut datagrams = rx.datagrams();
        let mut carry = None;
        let mut delivered = 0;
        loop {
            let mut dev = lock(device);
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
                // Endpoint echo: answer members, pass answers on.
                if let Some(message) = echo::parse(datagram) {
                    if let Some(reply) = ends.echo.handle(from, message, datagram) {
                        replies.slot()[..reply.len()].copy_from_slice(&reply);
                        replies.commit(from, reply.len());
                    }
                    continue;
                }
                // Relay envelopes: forward for others, or unwrap ours.
                let (from, datagram) = match relay::parse(datagram) {
                    None => (from, datagram),
                    Some(Envelope::From { source, inner }) => {
                        match ends.relays.inbound(from, source) {
                            Some(v) => (v, inner),
                            None => continue,
                        }
                    }
                    Some(Envelope::To { target, inner }) => {
                        forward_relayed(ends, &dev, from, target, inner, &mut replies);
                        continue;
                    }
                };
                match dev.decapsulate(from, datagram, out, now) {
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
            let done = exhausted && drain(&mut dev, &mut replies, now);
            drop(dev);
            flush_tun(&mut writer);
            ends.send(&mut replies);
            if done {
                break;
            }
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

/// Relays `inner` from the peer at `from` to the member with key id
/// `target`: only between peers whose endpoints we know (so strangers
/// cannot use us as a reflector), never to another relayed path, and only
/// if this node serves as a relay.
fn forward_relayed(
    ends: &Ends,
    dev: &Device,
    from: std::net::SocketAddr,
    target: relay::KeyId,
    inner: &[u8],
    out: &mut GsoBatch,
) {
    let source = dev.peer_at(from);
    let to = ends
        .relays
        .member(&target)
        .and_then(|k| dev.endpoint_of(&k))
        .filter(|e| !relay::is_virtual(e));
    let (Some(source), Some(to), true) = (source, to, ends.relays.serve) else {
        ends.relays
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return;
    };
    let slot = out.slot();
    if slot.len() < relay::HEADER + inner.len() {
        return;
    }
    let mut header = [0u8; relay::HEADER];
    relay::write_header(relay::FROM, &relay::key_id(&source), &mut header);
    slot[..relay::HEADER].copy_from_slice(&header);
    slot[relay::HEADER..relay::HEADER + inner.len()].copy_from_slice(inner);
    out.commit(to, relay::HEADER + inner.len());
    ends.relays.count(inner.len());
}

fn flush_tun(writer: &mut TunWriter) {
    if let Err(e) = writer.flush() {
        tracing::debug!("writing to the TUN device failed: {e}");
    }
}

fn timers(ends: &Ends, mut batch: GsoBatch) {
    let device = &ends.device;
    loop {
        std::thread::sleep(TICK);
        let now = Instant::now();
        lock(device).handle_timeout(now);
        loop {
            let done = drain(&mut lock(device), &mut batch, now);
            ends.send(&mut batch);
            if done {
                break;
            }
        }
    }
}
