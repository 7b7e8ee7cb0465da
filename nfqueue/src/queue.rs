//! [`Queue`]: one `NETLINK_NETFILTER` socket bound to one queue number.

use crate::batch::RecvBatch;
use crate::error::{Error, Op};
use crate::stats::QueueStats;
pub use crate::verdict::Verdict;
use crate::verdicts::Verdicts;
use crate::wire::{self, ConfigParams, Message, cfg};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// How to set up a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// `NFQA_CFG_QUEUE_MAXLEN`: packets waiting for a verdict before the kernel drops (or,
    /// with `fail_open`, accepts) new ones. Kernel default 1024.
    pub queue_len: u32,
    /// Bytes of each packet copied to user space; the kernel caps it at 65531.
    pub copy_range: u32,
    /// `NFQA_CFG_F_FAIL_OPEN`: accept packets when the queue is full instead of dropping them.
    pub fail_open: bool,
    /// `NFQA_CFG_F_GSO`: take GSO super-packets whole (checksums may be left to offload).
    /// Off: the kernel segments them and completes checksums first.
    pub gso: bool,
    /// `NFQA_CFG_F_CONNTRACK`: attach the conntrack entry (needs `nf_conntrack_netlink`).
    pub conntrack: bool,
    /// Receive buffer in bytes, set with `SO_RCVBUFFORCE` (root) or else `SO_RCVBUF`.
    pub rcvbuf: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            queue_len: 1024,
            copy_range: 0xffff,
            fail_open: false,
            gso: false,
            conntrack: false,
            rcvbuf: 8 << 20,
        }
    }
}

impl QueueConfig {
    fn flags(&self) -> u32 {
        let mut f = 0;
        if self.fail_open {
            f |= cfg::F_FAIL_OPEN;
        }
        if self.gso {
            f |= cfg::F_GSO;
        }
        if self.conntrack {
            f |= cfg::F_CONNTRACK;
        }
        f
    }
}

/// Receive-side counters of one queue socket, cumulative since bind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecvCounters {
    /// Datagrams read.
    pub datagrams: u64,
    /// Packets returned.
    pub packets: u64,
    /// Messages skipped because they did not parse.
    pub malformed: u64,
    /// Datagrams skipped because they did not fit a receive slot.
    pub truncated: u64,
    /// `NLMSG_ERROR` replies to requests sent without acknowledgement (verdicts), e.g.
    /// `ENOENT` for an id that is not pending.
    pub kernel_errors: u64,
    /// The errno of the last such reply.
    pub last_kernel_error: Option<i32>,
}

/// One `NETLINK_NETFILTER` socket bound to one queue number, in the network namespace of the
/// thread that called [`Queue::bind`]. Dropping it closes the socket; the kernel then unbinds
/// the queue and drops the packets still waiting for a verdict.
///
/// Verdicts take `&self` and may be sent from any thread while another receives.
#[derive(Debug)]
pub struct Queue {
    fd: OwnedFd,
    num: u16,
    portid: u32,
    nonblocking: AtomicBool,
    /// Datagrams that arrived while bind waited for its acknowledgement.
    pending: Vec<Vec<u8>>,
    counters: RecvCounters,
}

fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; zero is pid 0 (the kernel), no groups.
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Queue {
    /// Opens a socket in the calling thread's network namespace and binds queue `num` with
    /// `cfg`, in one acknowledged `NFQNL_MSG_CONFIG` request (bind, copy mode PACKET, copy
    /// range, queue length, flags with their mask). `NETLINK_NO_ENOBUFS` is set so a full
    /// receive buffer shows up as `user_dropped` in [`QueueStats`], not as a receive error.
    ///
    /// A queue held by another socket fails with [`Error::QueueBusy`].
    pub fn bind(num: u16, cfg: &QueueConfig) -> Result<Queue, Error> {
        let os = |call: &'static str| {
            move |source: io::Error| Error::Os {
                op: Op::Bind,
                queue: num,
                call,
                source,
            }
        };
        // SAFETY: plain socket(2).
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(os("socket(AF_NETLINK, NETLINK_NETFILTER)")(
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let rcvbuf = i32::try_from(cfg.rcvbuf).unwrap_or(i32::MAX);
        if let Err(e) = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf) {
            // Without CAP_NET_ADMIN, SO_RCVBUF (capped by net.core.rmem_max) is the best we get.
            tracing::debug!(queue = num, error = %e, "SO_RCVBUFFORCE refused; using SO_RCVBUF");
            setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf)
                .map_err(os("setsockopt(SO_RCVBUF)"))?;
        }
        setsockopt_int(raw, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1)
            .map_err(os("setsockopt(NETLINK_NO_ENOBUFS)"))?;
        let addr = kernel_addr();
        // SAFETY: binds to a valid sockaddr_nl of the right size (pid 0: kernel assigns one).
        let r = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(os("bind(AF_NETLINK)")(io::Error::last_os_error()));
        }
        let mut local = kernel_addr();
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: getsockname writes at most `len` bytes into `local`.
        let r = unsafe {
            libc::getsockname(raw, (&mut local as *mut libc::sockaddr_nl).cast(), &mut len)
        };
        if r != 0 {
            return Err(os("getsockname")(io::Error::last_os_error()));
        }
        let mut q = Queue {
            fd,
            num,
            portid: local.nl_pid,
            nonblocking: AtomicBool::new(false),
            pending: vec![],
            counters: RecvCounters::default(),
        };
        let params = ConfigParams {
            bind: true,
            copy_range: cfg.copy_range,
            queue_len: cfg.queue_len,
            flags: cfg.flags(),
            mask: cfg::F_FAIL_OPEN | cfg::F_GSO | cfg::F_CONNTRACK,
        };
        let mut result = q.config(&params, 1);
        if let Err(Error::Netlink {
            errno: libc::EAGAIN,
            ..
        }) = result
        {
            // The kernel loaded nf_conntrack_netlink for NFQA_CFG_F_CONNTRACK and asks us to
            // try again (nfqnl_recv_config); nothing was bound.
            result = q.config(&params, 2);
        }
        match result {
            Ok(()) => {
                tracing::debug!(queue = num, portid = q.portid, "queue bound");
                Ok(q)
            }
            Err(Error::Netlink { errno, .. }) if errno == libc::EBUSY || errno == libc::EPERM => {
                // EPERM is also "no CAP_NET_ADMIN": it means busy only if someone holds it.
                let owner = QueueStats::read(num)
                    .ok()
                    .flatten()
                    .map(|s| s.portid)
                    .filter(|&p| p != q.portid);
                if errno == libc::EBUSY || owner.is_some() {
                    Err(Error::QueueBusy {
                        queue: num,
                        errno,
                        owner,
                    })
                } else {
                    Err(Error::Netlink {
                        op: Op::Bind,
                        queue: num,
                        errno,
                    })
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a config request with `NLM_F_ACK` and reads up to its acknowledgement. The kernel
    /// handles the request inside `sendmsg`, so the answer is already queued when it returns;
    /// packets queued before it are kept for the next [`recv`](Queue::recv).
    fn config(&mut self, p: &ConfigParams, seq: u32) -> Result<(), Error> {
        let req = wire::config_request(self.num, p, seq);
        self.send(Op::Bind, &[req.bytes()])?;
        let mut buf = vec![0u8; crate::batch::DEFAULT_SLOT_SIZE];
        loop {
            // SAFETY: reads at most buf.len() bytes into buf.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    return Err(Error::Protocol {
                        op: Op::Bind,
                        queue: self.num,
                        message: "the kernel sent no acknowledgement".into(),
                    });
                }
                return Err(Error::Os {
                    op: Op::Bind,
                    queue: self.num,
                    call: "recv",
                    source: e,
                });
            }
            let datagram = &buf[..n as usize];
            let mut keep = false;
            for m in wire::messages(datagram) {
                match m {
                    Ok(Message::Ack { seq: s }) if s == seq => return Ok(()),
                    Ok(Message::Error { seq: s, errno, .. }) if s == seq => {
                        return Err(Error::Netlink {
                            op: Op::Bind,
                            queue: self.num,
                            errno,
                        });
                    }
                    Ok(Message::Packet(_)) => keep = true,
                    _ => {}
                }
            }
            if keep {
                self.pending.push(datagram.to_vec());
            }
        }
    }

    fn send(&self, op: Op, parts: &[&[u8]]) -> Result<(), Error> {
        let mut iov: [libc::iovec; 2] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2];
        for (v, p) in iov.iter_mut().zip(parts) {
            v.iov_base = p.as_ptr() as *mut libc::c_void;
            v.iov_len = p.len();
        }
        let mut addr = kernel_addr();
        // SAFETY: msghdr is plain data; the fields set below point at live values.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = parts.len().min(2) as _;
        loop {
            // SAFETY: sendmsg reads the iovecs (borrowed slices) and the address.
            let r = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(Error::Os {
                    op,
                    queue: self.num,
                    call: "sendmsg",
                    source: e,
                });
            }
        }
    }

    /// The queue number.
    pub fn num(&self) -> u16 {
        self.num
    }

    /// The socket's netlink port id, as listed in [`QueueStats::portid`].
    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// Receive-side counters (malformed messages, kernel errors on verdicts, ...).
    pub fn counters(&self) -> RecvCounters {
        self.counters
    }

    /// Sets or clears `O_NONBLOCK`. Non-blocking, [`recv`](Queue::recv) returns `Ok(0)` when
    /// nothing is queued (for use with poll/epoll on [`AsRawFd`]).
    pub fn set_nonblocking(&self, on: bool) -> Result<(), Error> {
        let fd = self.fd.as_raw_fd();
        let err = |source| Error::Os {
            op: Op::SetNonblocking,
            queue: self.num,
            call: "fcntl",
            source,
        };
        // SAFETY: fcntl on our own descriptor.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        let new = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, new) } < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        self.nonblocking.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// Receives a batch: waits for the first packet (unless non-blocking), then takes every
    /// datagram already queued, up to the batch's capacity, in one `recvmmsg`. Returns the
    /// number of packets, readable with [`RecvBatch::packets`]. Malformed messages are
    /// skipped and counted in [`counters`](Queue::counters); so are errors the kernel
    /// reported for earlier verdicts.
    pub fn recv(&mut self, batch: &mut RecvBatch) -> Result<usize, Error> {
        batch.clear();
        loop {
            let n = if self.pending.is_empty() {
                batch
                    .recvmmsg(self.fd.as_raw_fd())
                    .map_err(|source| Error::Os {
                        op: Op::Recv,
                        queue: self.num,
                        call: "recvmmsg",
                        source,
                    })?
            } else {
                batch.fill_from(&mut self.pending)
            };
            if n == 0 {
                // EAGAIN: non-blocking with nothing queued, or a receive timeout.
                return Ok(0);
            }
            let p = batch.parse(n, self.num);
            let c = &mut self.counters;
            c.datagrams += n as u64;
            c.packets += p.packets as u64;
            c.malformed += p.malformed;
            c.truncated += p.truncated;
            c.kernel_errors += p.kernel_errors;
            if p.last_kernel_error.is_some() {
                c.last_kernel_error = p.last_kernel_error;
            }
            if !batch.is_empty() || self.nonblocking.load(Ordering::Relaxed) {
                return Ok(batch.len());
            }
            // Only errors or acknowledgements arrived: a blocking receive waits on.
        }
    }

    /// `NFQNL_MSG_VERDICT` on packet `id`. Not acknowledged: a kernel error (e.g. `ENOENT`,
    /// id not pending) arrives later and is counted in [`counters`](Queue::counters).
    pub fn verdict(&self, id: u32, v: Verdict) -> Result<(), Error> {
        let r = wire::verdict_request(self.num, id, v.code(), None, false, 0);
        self.send(Op::Verdict, &[r.bytes()])
    }

    /// [`verdict`](Queue::verdict) that also sets the packet's mark.
    pub fn verdict_with_mark(&self, id: u32, v: Verdict, mark: u32) -> Result<(), Error> {
        let r = wire::verdict_request(self.num, id, v.code(), Some(mark), false, 0);
        self.send(Op::Verdict, &[r.bytes()])
    }

    /// [`verdict`](Queue::verdict) that replaces the packet with `payload` (from the network
    /// header on; at most 65531 bytes). The kernel marks its checksum as not computed
    /// (`CHECKSUM_NONE`): recompute IP/L4 checksums yourself.
    pub fn verdict_with_payload(
        &self,
        id: u32,
        v: Verdict,
        mark: Option<u32>,
        payload: &[u8],
    ) -> Result<(), Error> {
        let head = wire::verdict_payload_head(self.num, id, v.code(), mark, payload.len(), 0)
            .ok_or_else(|| Error::Protocol {
                op: Op::Verdict,
                queue: self.num,
                message: format!("replacement payload of {} bytes is too long", payload.len()),
            })?;
        self.send(Op::Verdict, &[head.bytes(), payload])
    }

    /// `NFQNL_MSG_VERDICT_BATCH`: the verdict `v` for every packet still pending whose id is
    /// not after `max_id` (serial-number order, so wrap-around is handled). One message answers
    /// a whole [`RecvBatch`]: pass [`RecvBatch::last_id`]. The kernel answers `ENOENT`
    /// (counted, see [`counters`](Queue::counters)) if no packet was pending.
    pub fn verdict_batch(&self, max_id: u32, v: Verdict) -> Result<(), Error> {
        let r = wire::verdict_request(self.num, max_id, v.code(), None, true, 0);
        self.send(Op::VerdictBatch, &[r.bytes()])
    }

    /// Sends every verdict in `v` in one `sendmsg` (see [`Verdicts`]) and clears it.
    pub fn send_verdicts(&self, v: &mut Verdicts) -> Result<(), Error> {
        if v.is_empty() {
            return Ok(());
        }
        let r = self.send(Op::VerdictBatch, &[v.encode(self.num)]);
        v.clear();
        r
    }

    /// One `NFQNL_MSG_VERDICT` per `(id, verdict)`, all in one `sendmsg` (netlink handles a
    /// datagram's messages in order), built in `buf`. For programs that answer packets out of
    /// their arrival order, where a batch verdict would also cover packets still held.
    pub fn verdicts_each(&self, list: &[(u32, Verdict)], buf: &mut Vec<u8>) -> Result<(), Error> {
        // 512 verdicts of 28 bytes stay well inside the socket's send buffer.
        for chunk in list.chunks(512) {
            buf.clear();
            for (id, v) in chunk {
                let r = wire::verdict_request(self.num, *id, v.code(), None, false, 0);
                buf.extend_from_slice(r.bytes());
            }
            self.send(Op::Verdict, &[buf])?;
        }
        Ok(())
    }

    /// [`verdict_batch`](Queue::verdict_batch) that also sets the mark of every packet.
    pub fn verdict_batch_with_mark(&self, max_id: u32, v: Verdict, mark: u32) -> Result<(), Error> {
        let r = wire::verdict_request(self.num, max_id, v.code(), Some(mark), true, 0);
        self.send(Op::VerdictBatch, &[r.bytes()])
    }
}

impl AsRawFd for Queue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config() {
        let c = QueueConfig::default();
        assert_eq!(
            (c.queue_len, c.copy_range, c.rcvbuf),
            (1024, 0xffff, 8 << 20)
        );
        assert_eq!(c.flags(), 0);
        let all = QueueConfig {
            fail_open: true,
            gso: true,
            conntrack: true,
            ..c
        };
        assert_eq!(all.flags(), 7);
    }
}
