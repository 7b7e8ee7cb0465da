//! The impairment engine: one direction of one link, through NFQUEUE.
//!
//! It binds the direction's queue in the receiving end's namespace (where [`super::rules`]
//! sends the direction's packets) and gives each packet its fate from the seeded
//! [`Decider`], in arrival order: a lost packet gets `NF_DROP` at once; the others wait in a
//! timer heap and get `NF_ACCEPT` when their time comes, so delay, jitter and reordering are
//! the order of the verdicts. The kernel keeps the packets; the engine keeps only ids.
//!
//! A duplicate needs a second packet, which a verdict cannot make; a packet socket sends the
//! frame again ([`DuplicatePath`]):
//!
//! - queued where it arrives (into a switch): the engine watches the receiving port, finds the
//!   frame the queued packet came in, and sends it again from the sending end (a packet socket
//!   in the sender's namespace); when the copy comes through the queue it is recognised by its
//!   bytes and released right after the original;
//! - queued on its way out: once the original is released, the engine finds it leaving the
//!   interface and sends the same frame again after it.
//!
//! It runs until `stop` is set (SIGTERM in the `lab impair-engine` process); packets still
//! held then are released at once, not dropped.

use super::{Decider, Fate, Impairment};
use crate::capture::{PacketSocket, PacketType};
use nfqueue::{Queue, QueueConfig, RecvBatch, Verdict};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What one engine does.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The queue to bind (in the calling thread's namespace).
    pub queue: u16,
    /// The direction's impairment.
    pub impairment: Impairment,
    /// The decider's stream ([`super::stream_seed`]).
    pub stream: u64,
    /// Where duplicates come from and go (needed when `duplicate` is set).
    pub duplicates: Option<DuplicatePath>,
}

/// How a duplicate is made.
#[derive(Debug, Clone)]
pub enum DuplicatePath {
    /// Packets are queued on arrival: the copy is sent from the other end, through the queue.
    Requeue {
        /// The receiving interface, in the engine's own namespace (watched).
        receiving: String,
        /// The sending end's namespace.
        sender_netns: PathBuf,
        /// The sending end's interface there (the copy leaves from it).
        sending: String,
    },
    /// Packets are queued on their way out of `iface` (in the engine's namespace): the copy is
    /// the frame sent again once it has left.
    Resend {
        /// The interface.
        iface: String,
    },
}

/// What an engine did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Packets that came through the queue (copies included).
    pub packets: u64,
    /// Lost.
    pub dropped: u64,
    /// Copies sent.
    pub duplicated: u64,
    /// Sent at once, ahead of delayed ones.
    pub reordered: u64,
    /// Copies that could not be made (the frame was not seen) or did not come back.
    pub copies_missing: u64,
    /// The latest a verdict left after its due time, in microseconds.
    pub max_late_us: u64,
}

impl std::fmt::Display for EngineStats {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{} packets, {} dropped, {} duplicated, {} reordered, {} copies missing, latest verdict {} us late",
            self.packets,
            self.dropped,
            self.duplicated,
            self.reordered,
            self.copies_missing,
            self.max_late_us
        )
    }
}

/// An engine that could not run.
#[derive(Debug, thiserror::Error)]
#[error("impairment engine on queue {queue}: {what}: {message}")]
pub struct EngineError {
    /// The queue.
    pub queue: u16,
    /// What it was doing.
    pub what: &'static str,
    /// Why it failed.
    pub message: String,
}

/// How long before a packet's time the engine stops sleeping and spins: a sleeping vCPU
/// wakes late.
const SPIN: Duration = Duration::from_micros(300);
/// The longest sleep, so `stop` is seen.
const TICK: Duration = Duration::from_millis(100);
/// Frames of the receiving interface remembered for duplication.
const SEEN: usize = 1024;
/// How long a copy is awaited.
const COPY_WAIT: Duration = Duration::from_secs(1);

struct Copies {
    watch: PacketSocket,
    /// `None` when `watch` sends the copies itself (resend mode).
    send: Option<PacketSocket>,
    seen: VecDeque<Vec<u8>>,
    /// Requeue mode: copies sent and not yet back: their network-layer bytes, the original's
    /// time, and until when they are awaited.
    awaited: VecDeque<(Vec<u8>, Instant, Instant)>,
    /// Resend mode: released originals whose frame is awaited on the way out: their key and
    /// until when.
    leaving: VecDeque<([u8; 5], Instant)>,
}

/// A packet's identity that survives NAT: IPv4 total length, identification and protocol.
fn key(l3: &[u8]) -> [u8; 5] {
    match l3 {
        [b0, _, l0, l1, i0, i1, _, _, _, p, ..] if b0 >> 4 == 4 => [*l0, *l1, *i0, *i1, *p],
        _ => {
            let mut k = [0; 5];
            k.iter_mut().zip(l3).for_each(|(k, b)| *k = *b);
            k
        }
    }
}

/// The IPv4 header (or the first 40 bytes of anything else): it names a packet whose
/// transport checksum may still change.
fn ip_header(l3: &[u8]) -> &[u8] {
    let len = match l3.first() {
        Some(b) if b >> 4 == 4 => usize::from(b & 0xf) * 4,
        _ => 40,
    };
    &l3[..len.min(l3.len())]
}

impl Copies {
    fn open(p: &DuplicatePath, queue: u16) -> Result<Copies, EngineError> {
        let err = |what, e: String| EngineError {
            queue,
            what,
            message: e,
        };
        let (watch, send) = match p {
            DuplicatePath::Requeue {
                receiving,
                sender_netns,
                sending,
            } => {
                let watch = PacketSocket::open(Some(receiving))
                    .map_err(|e| err("watching the receiving interface", e.to_string()))?;
                let send = crate::netns::run_in(sender_netns, || PacketSocket::open(Some(sending)))
                    .map_err(|e| err("entering the sending end's namespace", e.to_string()))?
                    .map_err(|e| err("opening the sending interface", e.to_string()))?;
                (watch, Some(send))
            }
            DuplicatePath::Resend { iface } => {
                let watch = PacketSocket::open(Some(iface))
                    .map_err(|e| err("watching the sending interface", e.to_string()))?;
                (watch, None)
            }
        };
        Ok(Copies {
            watch,
            send,
            seen: VecDeque::with_capacity(SEEN),
            awaited: VecDeque::new(),
            leaving: VecDeque::new(),
        })
    }

    /// Reads what the watched interface saw; in resend mode, sends each awaited frame again.
    /// Returns how many copies it sent.
    fn drain(&mut self) -> u64 {
        let mut sent = 0;
        while let Ok(Some(f)) = self.watch.try_recv(65_600) {
            if f.data.len() < 14 {
                continue;
            }
            if self.send.is_none() {
                if f.packet_type != PacketType::Outgoing {
                    continue;
                }
                let k = key(&f.data[14..]);
                if let Some(pos) = self.leaving.iter().position(|(l, _)| *l == k) {
                    self.leaving.remove(pos);
                    sent += u64::from(self.watch.send(&f.data).is_ok());
                }
                continue;
            }
            if f.packet_type == PacketType::Outgoing {
                continue;
            }
            if self.seen.len() == SEEN {
                self.seen.pop_front();
            }
            self.seen.push_back(f.data);
        }
        sent
    }

    /// Requeue mode: sends the frame that carried `l3` again from the sending end.
    fn send_copy(&mut self, l3: &[u8], due: Instant, now: Instant) -> bool {
        self.drain();
        let Some(send) = &self.send else {
            return false;
        };
        // The frame as it came may carry a transport checksum the sender's offload had not
        // filled in yet (the queue's copy has it): find it by its IP header, send its
        // Ethernet header with the queue's bytes.
        let header = ip_header(l3);
        let Some(pos) = self
            .seen
            .iter()
            .rposition(|f| ip_header(&f[14..]) == header)
        else {
            return false;
        };
        let mut frame = self.seen.remove(pos).unwrap_or_default();
        frame.truncate(14);
        frame.extend_from_slice(l3);
        if send.send(&frame).is_err() {
            return false;
        }
        self.awaited.push_back((l3.to_vec(), due, now + COPY_WAIT));
        true
    }

    /// Requeue mode: the time of the original when `l3` is a copy this engine sent.
    fn take_copy(&mut self, l3: &[u8]) -> Option<Instant> {
        let pos = self.awaited.iter().position(|(b, _, _)| b == l3)?;
        self.awaited.remove(pos).map(|(_, due, _)| due)
    }

    /// Forgets copies that never came back or originals never seen leaving; returns how many.
    fn expire(&mut self, now: Instant) -> u64 {
        let before = self.awaited.len() + self.leaving.len();
        self.awaited.retain(|(_, _, until)| *until > now);
        self.leaving.retain(|(_, until)| *until > now);
        (before - self.awaited.len() - self.leaving.len()) as u64
    }
}

/// Runs the engine until `stop` is set. `ready` is called once the queue is bound (the rule
/// that feeds it may be installed then).
pub fn run(
    cfg: &EngineConfig,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> Result<EngineStats, EngineError> {
    let err = |what| {
        move |e: nfqueue::Error| EngineError {
            queue: cfg.queue,
            what,
            message: e.to_string(),
        }
    };
    let mut copies = match (&cfg.duplicates, cfg.impairment.duplicate.is_zero()) {
        (Some(p), false) => Some(Copies::open(p, cfg.queue)?),
        _ => None,
    };
    let qcfg = QueueConfig {
        queue_len: 65_536,
        // Copies that come back through the queue are recognised by all their bytes;
        // otherwise the IP header is enough.
        copy_range: if copies.as_ref().is_some_and(|c| c.send.is_some()) {
            0xffff
        } else {
            64
        },
        ..QueueConfig::default()
    };
    let mut q = Queue::bind(cfg.queue, &qcfg).map_err(err("bind"))?;
    q.set_nonblocking(true).map_err(err("set non-blocking"))?;
    ready();

    let mut decider = Decider::new(&cfg.impairment, cfg.stream);
    let mut stats = EngineStats::default();
    let mut held: BinaryHeap<Reverse<(Instant, u64, u32)>> = BinaryHeap::new();
    // Resend mode: held packets (by their heap sequence) whose frame is sent again once out.
    let mut resend: std::collections::HashMap<u64, [u8; 5]> = Default::default();
    let mut seq = 0u64;
    let mut batch = RecvBatch::new(64);
    let mut verdicts: Vec<(u32, Verdict)> = Vec::new();
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while let Some(Reverse((due, n, id))) = held.peek().copied()
            && due <= now
        {
            held.pop();
            if let Some(k) = resend.remove(&n)
                && let Some(c) = copies.as_mut()
            {
                c.leaving.push_back((k, now + COPY_WAIT));
            }
            let late = now.duration_since(due).as_micros() as u64;
            stats.max_late_us = stats.max_late_us.max(late);
            verdicts.push((id, Verdict::Accept));
        }
        if flush(&q, &mut verdicts, &mut buf).map_err(err("verdict"))?
            && let Some(c) = copies.as_mut()
        {
            stats.duplicated += c.drain();
        }
        let wait = held
            .peek()
            .map(|Reverse((due, _, _))| due.saturating_duration_since(now))
            .unwrap_or(TICK)
            .min(TICK);
        if wait > SPIN {
            wait_readable(q.as_raw_fd(), wait - SPIN);
        }
        loop {
            let n = q.recv(&mut batch).map_err(err("receive"))?;
            if n == 0 {
                break;
            }
            let now = Instant::now();
            for p in batch.packets() {
                stats.packets += 1;
                if let Some(c) = copies.as_mut()
                    && let Some(due) = c.take_copy(p.payload)
                {
                    seq += 1;
                    held.push(Reverse((due, seq, p.id)));
                    continue;
                }
                match decider.fate() {
                    Fate::Drop => {
                        stats.dropped += 1;
                        verdicts.push((p.id, Verdict::Drop));
                    }
                    Fate::Deliver { after, twice } => {
                        if after.is_zero() && !cfg.impairment.delay.is_zero() {
                            stats.reordered += 1;
                        }
                        let due = now + after;
                        seq += 1;
                        held.push(Reverse((due, seq, p.id)));
                        match copies.as_mut() {
                            Some(c) if twice && c.send.is_some() => {
                                if c.send_copy(p.payload, due, now) {
                                    stats.duplicated += 1;
                                } else {
                                    stats.copies_missing += 1;
                                }
                            }
                            Some(_) if twice => {
                                resend.insert(seq, key(p.payload));
                            }
                            _ => {}
                        }
                    }
                }
            }
            flush(&q, &mut verdicts, &mut buf).map_err(err("verdict"))?;
        }
        if let Some(c) = copies.as_mut() {
            stats.duplicated += c.drain();
            stats.copies_missing += c.expire(Instant::now());
        }
    }
    while let Some(Reverse((_, _, id))) = held.pop() {
        verdicts.push((id, Verdict::Accept));
    }
    q.verdicts_each(&verdicts, &mut buf)
        .map_err(err("verdict"))?;
    Ok(stats)
}

/// Sends and clears the verdicts gathered; true when there were any.
fn flush(
    q: &Queue,
    verdicts: &mut Vec<(u32, Verdict)>,
    buf: &mut Vec<u8>,
) -> Result<bool, nfqueue::Error> {
    if verdicts.is_empty() {
        return Ok(false);
    }
    q.verdicts_each(verdicts, buf)?;
    verdicts.clear();
    Ok(true)
}

/// Waits until `fd` is readable or `timeout` passes (nanosecond resolution, unlike `poll`).
fn wait_readable(fd: i32, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask.
    unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
}
