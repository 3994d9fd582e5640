//! The TUN device: creation, and batched reads and writes that use the
//! kernel's TSO/GRO offloads (IFF_VNET_HDR) when available, so one syscall
//! moves up to 64 KiB of TCP data.

use crate::DriverError;
use std::io;
use std::sync::Arc;
use tun_rs::{DeviceBuilder, GROTable, SyncDevice, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// Largest super-packet the kernel hands us with offloads on.
const MAX_SEGMENTED: usize = 65_535 + VIRTIO_NET_HDR_LEN;
/// Capacity of a write buffer: room for GRO to coalesce into it.
const WRITE_CAPACITY: usize = 65_535 + 64;

/// A TUN device owned by the agent; removed by the kernel when dropped.
pub struct Tun {
    dev: Arc<SyncDevice>,
    name: String,
    index: u32,
}

impl Tun {
    /// Creates TUN device `name` with offloads enabled where the kernel allows.
    pub fn create(name: &str, mtu: u16) -> Result<Self, DriverError> {
        let err = |reason| DriverError::Tun {
            name: name.to_string(),
            reason,
        };
        let dev = DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .offload(true)
            .build_sync()
            .map_err(|reason| match reason.raw_os_error() {
                Some(libc::EBUSY) => DriverError::TunBusy {
                    name: name.to_string(),
                },
                _ => err(reason),
            })?;
        // Non-blocking, so whichever data-plane thread is awake can drain it.
        dev.set_nonblocking(true).map_err(err)?;
        let index = dev.if_index().map_err(err)?;
        let name = dev.name().map_err(err)?;
        Ok(Self {
            dev: Arc::new(dev),
            name,
            index,
        })
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kernel interface index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// True if TSO/GRO offloads are active.
    pub fn offload(&self) -> bool {
        self.dev.tcp_gso()
    }

    /// A batch reader sharing the device (one reader per device).
    pub fn reader(&self) -> TunReader {
        TunReader {
            dev: self.dev.clone(),
            original: vec![0; MAX_SEGMENTED],
            bufs: (0..IDEAL_BATCH_SIZE).map(|_| vec![0; 65_535]).collect(),
            sizes: vec![0; IDEAL_BATCH_SIZE],
            count: 0,
        }
    }

    /// A handle that sleeps until the device is readable (without holding the reader).
    pub fn waiter(&self) -> TunWaiter {
        TunWaiter {
            dev: self.dev.clone(),
        }
    }

    /// A batch writer sharing the device; packets start at `offset`.
    pub fn writer(&self, offset: usize) -> TunWriter {
        TunWriter {
            dev: self.dev.clone(),
            gro: GROTable::default(),
            bufs: (0..IDEAL_BATCH_SIZE)
                .map(|_| Vec::with_capacity(WRITE_CAPACITY))
                .collect(),
            count: 0,
            offset,
        }
    }
}

/// Reads batches of IP packets (super-packets are split into MTU-sized ones).
/// The device is non-blocking: [`TunWaiter::wait`] sleeps until it is readable.
pub struct TunReader {
    dev: Arc<SyncDevice>,
    original: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    count: usize,
}

impl TunReader {
    /// Reads the next batch if the device holds one; returns how many
    /// packets it holds (0: nothing to read now).
    pub fn try_recv(&mut self) -> io::Result<usize> {
        self.count = 0;
        match self
            .dev
            .recv_multiple(&mut self.original, &mut self.bufs, &mut self.sizes, 0)
        {
            Ok(n) => self.count = n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(self.count)
    }

    /// Packet `i` of the last batch.
    pub fn packet(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.sizes[i]]
    }
}

/// Sleeps until the TUN device has packets to read.
pub struct TunWaiter {
    dev: Arc<SyncDevice>,
}

impl TunWaiter {
    /// Sleeps until the device has packets to read.
    pub fn wait(&self) {
        use std::os::fd::AsRawFd;
        crate::wait_fd(self.dev.as_raw_fd(), libc::POLLIN, -1);
    }
}

/// Collects packets and writes them in one batch, coalescing TCP segments
/// into super-packets (GRO) when offloads are on.
pub struct TunWriter {
    dev: Arc<SyncDevice>,
    gro: GROTable,
    bufs: Vec<Vec<u8>>,
    count: usize,
    offset: usize,
}

impl TunWriter {
    /// The next free buffer (length `len`) for the caller to fill; the packet
    /// must start at the writer's offset. `None` if the batch is full.
    pub fn next_buffer(&mut self, len: usize) -> Option<&mut [u8]> {
        let buf = self.bufs.get_mut(self.count)?;
        buf.clear();
        buf.resize(len, 0);
        Some(buf)
    }

    /// Keeps the packet of `len` bytes at the offset of the last buffer
    /// returned by `next_buffer`.
    pub fn commit(&mut self, len: usize) {
        if let Some(buf) = self.bufs.get_mut(self.count) {
            buf.truncate(self.offset + len);
            self.count += 1;
        }
    }

    /// Gives back the pages a burst filled (coalesced super-packets reach
    /// 64 KiB each) and reserves fresh, untouched room in their place: GRO
    /// coalesces only into a buffer with room for the merged packet.
    pub fn release(&mut self) {
        self.bufs.iter_mut().for_each(|b| *b = Vec::new());
        crate::trim_heap();
        self.bufs
            .iter_mut()
            .for_each(|b| b.reserve_exact(WRITE_CAPACITY));
        self.count = 0;
    }

    /// True if no more packets fit before a flush.
    pub fn is_full(&self) -> bool {
        self.count == self.bufs.len()
    }

    /// Writes every committed packet.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let n = std::mem::take(&mut self.count);
        self.dev
            .send_multiple(&mut self.gro, &mut self.bufs[..n], self.offset)
            .map(|_| ())
    }
}
