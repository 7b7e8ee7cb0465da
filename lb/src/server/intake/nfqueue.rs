//! NFQUEUE intake: one bound queue per thread, batch receive, the verdicts of a batch in one
//! `sendmsg`.
//!
//! In the `encap` and `dsr` modes every packet of the VIP is forwarded by us (or dropped by
//! `decide`), so the kernel must never deliver it locally: the verdict is always DROP, and one
//! `NFQNL_MSG_VERDICT_BATCH` with the batch's last id answers all of them. In `dsr-kernel` mode
//! a forwarded packet is accepted with its backend's mark instead, and runs of packets with the
//! same verdict and mark share one batch verdict ([`nfqueue::Verdicts`]).

use crate::server::datapath::{DataPath, Disposition};
use crate::sys::now;
use anyhow::{Context, Result};
use lb_core::ForwardMode;
use lb_core::config::{ServerSection, VerdictMode};
use nfqueue::{Queue, QueueConfig, RecvBatch, Verdict, Verdicts};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `NFQA_SKB_INFO` flag: the packet's TCP/UDP checksum is not finished (CHECKSUM_PARTIAL).
const NFQA_SKB_CSUMNOTREADY: u32 = 1 << 0;

/// Bytes of each packet copied to user space in `dsr-kernel` mode: the headers `decide` reads
/// (`lb_core::action::HEAD_LEN`), rounded up; the kernel keeps the packet and forwards it whole.
const DSR_KERNEL_COPY: u32 = 128;

/// Binds queue `num` with the server's settings.
pub fn bind_queue(num: u16, s: &ServerSection) -> Result<Queue> {
    let cfg = QueueConfig {
        queue_len: s.queue_len,
        fail_open: s.fail_open,
        gso: true,
        rcvbuf: s.rcvbuf,
        copy_range: match s.forward {
            ForwardMode::DsrKernel => DSR_KERNEL_COPY,
            _ => QueueConfig::default().copy_range,
        },
        ..QueueConfig::default()
    };
    let q = Queue::bind(num, &cfg).with_context(|| format!("NFQUEUE {num}"))?;
    q.set_nonblocking(true)
        .context("set the queue socket non-blocking")?;
    Ok(q)
}

/// Receives, decides, sends and verdicts until `stop`; returns the path for its counters.
///
/// `VerdictMode::PerPacket` receives one packet at a time and answers each with its own
/// verdict message, like Caplance's loop: there only to measure what batching buys.
pub fn nfqueue_loop(
    mut q: Queue,
    mut path: DataPath,
    batch: usize,
    mode: VerdictMode,
    stop: &AtomicBool,
) -> Result<DataPath> {
    let batch = match mode {
        VerdictMode::Batch => batch,
        VerdictMode::PerPacket => 1,
    };
    let mut packets = RecvBatch::new(batch);
    let mut verdicts = Verdicts::new();
    let mut dispositions = Vec::with_capacity(batch);
    let mut csum = Vec::with_capacity(batch);
    let fd = q.as_raw_fd();
    // After a full batch more packets are almost surely waiting: receive again at once, up to
    // BUSY_ROUNDS times, before the next `wait` (a poll syscall that also applies control
    // messages) — under load that saves most of one syscall per batch.
    const BUSY_ROUNDS: u32 = 8;
    let mut busy = 0;
    while !stop.load(Ordering::Relaxed) {
        if busy == 0 && !path.wait(fd, Duration::from_millis(200))? {
            continue;
        }
        let n = q
            .recv(&mut packets)
            .with_context(|| format!("receive from NFQUEUE {}", q.num()))?;
        busy = match n == packets.capacity() && busy < BUSY_ROUNDS {
            true => busy + 1,
            false => 0,
        };
        if n == 0 {
            continue;
        }
        let t = now();
        path.expire_if_due(t);
        // The payloads borrow this batch's buffer, so their list is the one allocation per
        // batch; the others are kept.
        let mut payloads = Vec::with_capacity(n);
        csum.clear();
        for p in packets.packets() {
            payloads.push(p.payload);
            csum.push(p.skb_info & NFQA_SKB_CSUMNOTREADY != 0);
        }
        dispositions.clear();
        path.handle_batch(t, &payloads, &csum, &mut dispositions);
        for (p, d) in packets.packets().zip(&dispositions) {
            match *d {
                Disposition::Consumed => verdicts.push(p.id, Verdict::Drop, None),
                Disposition::Accept { mark } => verdicts.push(p.id, Verdict::Accept, Some(mark)),
            }
        }
        // Send first, then drop the originals: nothing is lost if the process dies between.
        // A TCP flow's map update goes before its SYN leaves (sent here in `dsr`, by the
        // verdict in `dsr-kernel`); a UDP flow's after its first datagram.
        path.before_verdicts();
        path.flush();
        q.send_verdicts(&mut verdicts)
            .with_context(|| format!("verdict on NFQUEUE {}", q.num()))?;
        path.after_verdicts();
    }
    Ok(path)
}

const _: () = assert!(DSR_KERNEL_COPY as usize >= lb_core::action::HEAD_LEN);
