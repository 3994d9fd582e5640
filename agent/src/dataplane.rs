//! The data plane threads: TUN → encrypt → UDP, UDP → decrypt → TUN, and the
//! protocol timer. Each thread works in batches: one lock of the device per
//! batch, I/O outside the lock, buffers allocated once.

use drivers::tun::{Tun, TunReader, TunWriter};
use drivers::udp::{GsoBatch, RecvBuffers, Udp};
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

type Shared = Arc<Mutex<Device>>;

fn lock(device: &Shared) -> MutexGuard<'_, Device> {
    // A poisoned lock means another data-plane thread panicked; the device
    // state is still consistent per call, so keep serving.
    device.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the three data-plane threads.
pub fn start(tun: &Tun, udp: &Arc<Udp>, device: &Shared) -> io::Result<()> {
    let max_datagram = tun_datagram_limit(device);
    let gso = || GsoBatch::new(max_datagram, SEND_BATCH, udp.max_gso_segments());
    let (reader, writer) = (tun.reader(), tun.writer(DATA_HEADER_LEN));
    spawn("cladnet-tx", {
        let (udp, device, batch) = (udp.clone(), device.clone(), gso());
        move || outbound(reader, &udp, &device, batch)
    })?;
    spawn("cladnet-rx", {
        let (udp, device, batch) = (udp.clone(), device.clone(), gso());
        move || inbound(writer, &udp, &device, batch)
    })?;
    spawn("cladnet-timer", {
        let (udp, device, batch) = (udp.clone(), device.clone(), gso());
        move || timers(&udp, &device, batch)
    })?;
    Ok(())
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

/// Drains the device's pending transmissions into `batch`, flushing when full.
fn drain(dev: &mut Device, batch: &mut GsoBatch, udp: &Udp, now: Instant) {
    loop {
        if !batch.has_room() {
            batch.send(udp);
        }
        match dev.poll_transmit(batch.slot(), now) {
            Some((to, len)) => batch.commit(to, len),
            None => return,
        }
    }
}

fn outbound(mut reader: TunReader, udp: &Udp, device: &Shared, mut batch: GsoBatch) {
    loop {
        let n = match reader.recv() {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("reading the TUN device failed: {e}; stopping outbound traffic");
                return;
            }
        };
        let now = Instant::now();
        let mut dev = lock(device);
        for i in 0..n {
            if !batch.has_room() {
                batch.send(udp);
            }
            if let Action::Send { to, len } = dev.encapsulate(reader.packet(i), batch.slot(), now) {
                batch.commit(to, len);
            }
        }
        drain(&mut dev, &mut batch, udp, now);
        drop(dev);
        batch.send(udp);
    }
}

fn inbound(mut writer: TunWriter, udp: &Udp, device: &Shared, mut replies: GsoBatch) {
    let mut rx: RecvBuffers = Udp::recv_buffers();
    loop {
        if let Err(e) = udp.recv(&mut rx) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!("receiving on the UDP socket failed: {e}");
            }
            continue;
        }
        let now = Instant::now();
        let mut dev = lock(device);
        for (from, datagram) in rx.datagrams() {
            if writer.is_full() {
                flush_tun(&mut writer);
            }
            let Some(out) = writer.next_buffer(datagram.len().max(INITIATION_LEN)) else {
                continue;
            };
            match dev.decapsulate(from, datagram, out, now) {
                Action::Deliver(range) => writer.commit(range.len()),
                Action::Send { to, len } => {
                    if !replies.has_room() {
                        replies.send(udp);
                    }
                    replies.slot()[..len].copy_from_slice(&out[..len]);
                    replies.commit(to, len);
                }
                Action::None => {}
            }
        }
        drain(&mut dev, &mut replies, udp, now);
        drop(dev);
        flush_tun(&mut writer);
        replies.send(udp);
    }
}

fn flush_tun(writer: &mut TunWriter) {
    if let Err(e) = writer.flush() {
        tracing::debug!("writing to the TUN device failed: {e}");
    }
}

fn timers(udp: &Udp, device: &Shared, mut batch: GsoBatch) {
    loop {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let mut dev = lock(device);
        dev.handle_timeout(now);
        drain(&mut dev, &mut batch, udp, now);
        drop(dev);
        batch.send(udp);
    }
}
