//! The NFQUEUE holder: binds a queue inside a host, holds packets until `count` have arrived,
//! waits `delay`, then gives them one verdict together (`NFQNL_MSG_VERDICT_BATCH`), like the
//! kernel selftests' `nf_queue` helper delaying its verdicts. It runs as a thread of the
//! scenario (the socket is created inside the host's namespace), so it is ready — bound —
//! when its step returns, and its log is a file beside the processes' logs.

use super::tasks::{Log, Task, poll_readable, update};
use crate::Lab;
use crate::backend::{HoldSpec, HoldVerdict};
use crate::cancel::{cancelled, pause};
use nfqueue::{Queue, QueueConfig, RecvBatch, Verdict};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

/// What the holder did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolderStats {
    /// Packets received from the queue.
    pub held: u64,
    /// Packets given a verdict.
    pub released: u64,
    /// Verdict messages sent (one per group of `count`).
    pub batches: u64,
}

/// A short description of an IPv4 packet: `udp 10.1.0.2:55221 > 10.2.0.2:9000 len 8`.
pub fn describe(payload: &[u8]) -> String {
    if payload.len() < 20 || payload[0] >> 4 != 4 {
        return format!("non-IPv4 packet, {} bytes", payload.len());
    }
    let ihl = usize::from(payload[0] & 0x0f) * 4;
    let src = Ipv4Addr::new(payload[12], payload[13], payload[14], payload[15]);
    let dst = Ipv4Addr::new(payload[16], payload[17], payload[18], payload[19]);
    let ports = payload.get(ihl..ihl + 4).map(|p| {
        (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    });
    match (payload[9], ports) {
        (6, Some((s, d))) => format!("tcp {src}:{s} > {dst}:{d}, {} bytes", payload.len()),
        (17, Some((s, d))) => format!("udp {src}:{s} > {dst}:{d}, {} bytes", payload.len()),
        (p, _) => format!("ip-proto-{p} {src} > {dst}, {} bytes", payload.len()),
    }
}

/// Binds the queue in `host` and starts holding.
pub fn nfq_holder(
    lab: &Lab,
    host: &str,
    name: &str,
    spec: HoldSpec,
    log: Log,
) -> Result<Task<HolderStats>, String> {
    let HoldSpec {
        queue,
        count,
        delay,
        verdict,
    } = spec;
    let q = lab
        .run_in(host, || Queue::bind(queue, &QueueConfig::default()))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{host}: {e}"))?;
    q.set_nonblocking(true).map_err(|e| e.to_string())?;
    log.line(&format!(
        "bound queue {queue}: holding {count} packet(s), then {verdict} together after {} ms",
        delay.as_millis()
    ));
    let v = match verdict {
        HoldVerdict::Accept => Verdict::Accept,
        HoldVerdict::Drop => Verdict::Drop,
    };
    Task::spawn(format!("nfq-{name}"), move |stop, stats| {
        let mut q = q;
        let mut batch = RecvBatch::new(64);
        let mut held: Vec<u32> = Vec::new();
        while !stop.load(Ordering::SeqCst) && !cancelled() {
            if poll_readable(&[q.as_raw_fd()]).is_empty() {
                continue;
            }
            match q.recv(&mut batch) {
                Ok(_) => {}
                Err(e) => {
                    log.line(&format!("receive failed: {e}"));
                    break;
                }
            }
            for p in batch.packets() {
                held.push(p.id);
                log.line(&format!(
                    "held packet {} ({}/{count}): {}",
                    p.id,
                    held.len(),
                    describe(p.payload)
                ));
                update(&stats, |s: &mut HolderStats| s.held += 1);
            }
            while held.len() >= count {
                let group: Vec<u32> = held.drain(..count).collect();
                if !delay.is_zero() && !pause(delay) {
                    return;
                }
                let max = *group.last().unwrap_or(&0);
                // One message for the group: every pending id up to `max`. When more packets
                // arrived than `count`, the group is answered one by one so the rest stay held.
                let sent = if held.is_empty() {
                    q.verdict_batch(max, v)
                } else {
                    group.iter().try_for_each(|id| q.verdict(*id, v))
                };
                match sent {
                    Ok(()) => {
                        log.line(&format!(
                            "released {} packet(s) together: {verdict} (ids {}..={max})",
                            group.len(),
                            group[0]
                        ));
                        update(&stats, |s: &mut HolderStats| {
                            s.released += group.len() as u64;
                            s.batches += 1;
                        });
                    }
                    Err(e) => log.line(&format!("verdict failed: {e}")),
                }
            }
        }
        if !held.is_empty() {
            log.line(&format!(
                "stopping with {} packet(s) held: the kernel drops them when the queue closes",
                held.len()
            ));
        }
        log.line("stopped");
    })
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_packets() {
        let mut udp = vec![
            0x45, 0, 0, 36, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2,
        ];
        udp.extend_from_slice(&[0xd7, 0xb5, 0x23, 0x28, 0, 16, 0, 0]);
        udp.extend_from_slice(b"Packet 1");
        assert_eq!(
            describe(&udp),
            "udp 10.1.0.2:55221 > 10.2.0.2:9000, 36 bytes"
        );
        assert_eq!(describe(&[0x60, 0, 0]), "non-IPv4 packet, 3 bytes");
    }
}
