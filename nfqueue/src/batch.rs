//! [`RecvBatch`]: reusable receive buffers for up to N packets per `recvmmsg` call.

use crate::wire::{self, Message, Packet, ParseError};
use std::io;
use std::os::fd::RawFd;

/// Bytes per receive slot by default: the largest payload the kernel copies (65531, its
/// `NFQNL_MAX_COPY_RANGE`) plus room for the netlink header and metadata attributes
/// (conntrack included).
pub const DEFAULT_SLOT_SIZE: usize = 0x10000 + 4096;

/// Reusable buffers for a batch of received packets, capacity fixed at construction.
///
/// Each slot receives one netlink datagram; the kernel sends one packet per datagram, so the
/// capacity is the number of packets one [`Queue::recv`](crate::Queue::recv) can return.
pub struct RecvBatch {
    slot: usize,
    data: Vec<u8>,
    /// Kept alive for `hdrs`, which point into it.
    _iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    recs: Vec<Rec>,
}

// SAFETY: the raw pointers in `_iov` and `hdrs` point only into `data` and `_iov`, heap buffers
// owned by this value that are never reallocated; they are dereferenced only by the kernel
// during `recvmmsg` under `&mut self`.
unsafe impl Send for RecvBatch {}
// SAFETY: `&RecvBatch` gives read-only access to parsed records and `data`; the pointers are
// not used through a shared reference.
unsafe impl Sync for RecvBatch {}

/// A parsed packet whose payload is a range of `data`.
#[derive(Clone, Copy)]
struct Rec {
    meta: Packet<'static>,
    start: usize,
    len: usize,
}

/// What one batch of datagrams held besides packets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub packets: usize,
    pub malformed: u64,
    pub truncated: u64,
    pub kernel_errors: u64,
    pub last_kernel_error: Option<i32>,
}

impl RecvBatch {
    /// Buffers for up to `packets` packets of any size (at least 1).
    pub fn new(packets: usize) -> RecvBatch {
        RecvBatch::with_slot_size(packets, DEFAULT_SLOT_SIZE)
    }

    /// Buffers for up to `packets` datagrams of `slot_size` bytes each (at least 256). A
    /// smaller slot suits a small copy range; a datagram that does not fit is counted as
    /// truncated and skipped (a later [`Queue::verdict_batch`](crate::Queue::verdict_batch)
    /// still covers its id).
    pub fn with_slot_size(packets: usize, slot_size: usize) -> RecvBatch {
        let n = packets.max(1);
        let slot = wire_align(slot_size.max(256));
        let mut data = vec![0u8; n * slot];
        let base = data.as_mut_ptr();
        let mut iov: Vec<libc::iovec> = (0..n)
            .map(|i| libc::iovec {
                // SAFETY: i * slot < data.len().
                iov_base: unsafe { base.add(i * slot) }.cast(),
                iov_len: slot,
            })
            .collect();
        let iov_base = iov.as_mut_ptr();
        let hdrs = (0..n)
            .map(|i| {
                // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                // SAFETY: i < iov.len().
                h.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        RecvBatch {
            slot,
            data,
            _iov: iov,
            hdrs,
            recs: Vec::with_capacity(n),
        }
    }

    /// Number of datagram slots (packets per receive).
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Bytes per slot.
    pub fn slot_size(&self) -> usize {
        self.slot
    }

    /// Number of packets received by the last [`Queue::recv`](crate::Queue::recv).
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// True when the last receive returned no packet.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// The packets of the last receive, in arrival (id) order.
    pub fn packets(&self) -> impl Iterator<Item = Packet<'_>> {
        self.recs.iter().map(|r| Packet {
            payload: &self.data[r.start..r.start + r.len],
            ..r.meta
        })
    }

    /// The id of the newest packet of the last receive: the argument for
    /// [`Queue::verdict_batch`](crate::Queue::verdict_batch) to answer the whole batch.
    pub fn last_id(&self) -> Option<u32> {
        self.recs.last().map(|r| r.meta.id)
    }

    pub(crate) fn clear(&mut self) {
        self.recs.clear();
    }

    /// `recvmmsg` with `MSG_WAITFORONE`: waits for the first datagram (unless the socket is
    /// non-blocking), then takes what is already queued, up to capacity. Returns the number of
    /// datagrams; `Ok(0)` when nothing is there (`EAGAIN`).
    pub(crate) fn recvmmsg(&mut self, fd: RawFd) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        loop {
            // SAFETY: every header points at one iovec of `self._iov`, which points at a
            // distinct `slot`-byte range of `self.data`; all live for the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    self.hdrs.len() as libc::c_uint,
                    libc::MSG_WAITFORONE as _,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(0),
                // NETLINK_NO_ENOBUFS is set, but an overrun report is no reason to fail.
                Some(libc::ENOBUFS) => continue,
                _ => return Err(e),
            }
        }
    }

    /// Copies datagrams received earlier (during bind) into the slots; returns how many.
    pub(crate) fn fill_from(&mut self, pending: &mut Vec<Vec<u8>>) -> usize {
        let n = pending.len().min(self.capacity());
        for (i, d) in pending.drain(..n).enumerate() {
            let len = d.len().min(self.slot);
            self.data[i * self.slot..i * self.slot + len].copy_from_slice(&d[..len]);
            self.hdrs[i].msg_len = len as libc::c_uint;
            self.hdrs[i].msg_hdr.msg_flags = if d.len() > self.slot {
                libc::MSG_TRUNC
            } else {
                0
            };
        }
        n
    }

    /// Parses the first `n` slots, appending their packets.
    pub(crate) fn parse(&mut self, n: usize, queue: u16) -> Parsed {
        let mut out = Parsed::default();
        for i in 0..n.min(self.capacity()) {
            let start = i * self.slot;
            let len = (self.hdrs[i].msg_len as usize).min(self.slot);
            if self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                out.truncated += 1;
                tracing::warn!(
                    queue,
                    slot = self.slot,
                    "datagram larger than the receive slot: skipped"
                );
                continue;
            }
            let datagram = &self.data[start..start + len];
            for m in wire::messages(datagram) {
                match m {
                    Ok(Message::Packet(p)) => {
                        let off = p.payload.as_ptr() as usize - datagram.as_ptr() as usize;
                        self.recs.push(Rec {
                            meta: Packet { payload: &[], ..p },
                            start: start + off,
                            len: p.payload.len(),
                        });
                        out.packets += 1;
                    }
                    Ok(Message::Error { errno, seq, .. }) => {
                        out.kernel_errors += 1;
                        out.last_kernel_error = Some(errno);
                        tracing::debug!(
                            queue,
                            seq,
                            error = %crate::error::strerror(errno),
                            "kernel rejected a request"
                        );
                    }
                    Ok(Message::Ack { .. } | Message::Other { .. }) => {}
                    Err(e) => {
                        out.malformed += 1;
                        log_malformed(queue, &e);
                    }
                }
            }
        }
        out
    }
}

fn log_malformed(queue: u16, e: &ParseError) {
    tracing::warn!(queue, error = %e, "malformed netlink message skipped");
}

const fn wire_align(n: usize) -> usize {
    (n + 7) & !7
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("slot", &self.slot)
            .field("len", &self.len())
            .finish()
    }
}
