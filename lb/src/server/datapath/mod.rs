//! One data-path thread's work: decide, emit and a batched send, whatever the intake.

pub(crate) mod fastpath;
pub mod mailbox;

use crate::server::settings::ServerSettings;
use crate::sys::markroute::backend_mark;
use crate::sys::netlink::IfAddr;
use crate::sys::now;
use crate::sys::sock::{PacketSocket, RawIpSocket, SendBatch, set_sndbuf};
use crate::sys::wake::wait_or_wake;
use anyhow::{Context, Result};
use lb_core::emit::{complete_l4_checksum, ip_packet};
use lb_core::forward::{ENCAP_PORT, max_mss};
use lb_core::{
    Action, BackendSpec, Config, ForwardConfig, ForwardMode, Framing, State, decide_batch,
};
use mailbox::{Mailbox, PathMsg};
use std::collections::BTreeMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Per-thread totals besides the core's counters.
#[derive(Debug, Default, Clone, Copy)]
struct PathStats {
    received: u64,
    batches: u64,
    sent: u64,
    send_failed: u64,
    icmp_sent: u64,
}

/// Where forwarded packets go out.
enum Out {
    /// UDP datagrams to backend:1337 whose payload is the whole packet.
    Udp(UdpSocket),
    /// Ethernet frames to the backend's MAC.
    Frames(PacketSocket),
    /// Nothing: the kernel forwards the packet, routed by the mark of its ACCEPT verdict.
    Kernel,
}

/// What the kernel does with the original packet after [`DataPath::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Drop it: `lb` sent what had to be sent (or nothing, for a dropped packet).
    Consumed,
    /// Accept it with this mark (`dsr-kernel`): policy routing sends it to the backend.
    Accept {
        /// [`backend_mark`] of the backend.
        mark: u32,
    },
}

/// Decide + emit + batched send for one thread.
pub struct DataPath {
    pub(crate) state: State,
    fwd: ForwardConfig,
    framing: Framing,
    out: Out,
    icmp: RawIpSocket,
    batch: SendBatch,
    scratch: Vec<u8>,
    /// `decide_batch`'s output, kept for its memory.
    actions: Vec<Action>,
    stats: PathStats,
    ctl: Mailbox,
    /// When idle flows were last expired.
    last_expire: lb_core::Nanos,
    /// `--fast-path`: the kernel forwards the flows this thread hands it.
    fast: Option<fastpath::FastPath>,
}

impl DataPath {
    /// Waits up to `timeout` for `fd` to be readable, applying control messages that arrive
    /// meanwhile and expiring idle flows when nothing happens; returns whether `fd` is readable.
    pub(crate) fn wait(&mut self, fd: RawFd, timeout: Duration) -> std::io::Result<bool> {
        let (readable, woken) = wait_or_wake(fd, &self.ctl.waker, timeout)?;
        if woken {
            self.control();
        }
        // Not only when nothing at all happened: `lb ctl` asking every 100 ms must not stop
        // the connection table's aging or the fast path's look at the kernel.
        if !readable {
            self.age(now());
        }
        Ok(readable)
    }

    /// Ages at most every 100 ms while busy (`wait` does it when idle), so a balancer that is
    /// never idle still ages its connection table and looks at its fast flows.
    pub(crate) fn expire_if_due(&mut self, t: lb_core::Nanos) {
        if t.since(self.last_expire) >= lb_core::Nanos::from_millis(100) {
            self.last_expire = t;
            self.age(t);
        }
    }

    /// Expires idle flows, and looks at the fast path's flows whose look is due.
    fn age(&mut self, t: lb_core::Nanos) {
        self.state.expire(t, 4096);
        if let Some(f) = &mut self.fast {
            f.check_due(&mut self.state, t);
        }
    }

    /// Hands the flows of the batch to the kernel (`--fast-path`) if they may go before its
    /// verdicts are sent (see `FastPath::flush_before_verdicts`).
    pub(crate) fn before_verdicts(&mut self) {
        if let Some(f) = &mut self.fast {
            f.flush_before_verdicts(&mut self.state, now());
        }
    }

    /// Hands the rest of the batch's flows to the kernel: call after its verdicts are sent.
    pub(crate) fn after_verdicts(&mut self) {
        if let Some(f) = &mut self.fast {
            f.flush(&mut self.state, now());
        }
    }

    /// Applies waiting control messages and answers reports.
    fn control(&mut self) {
        for m in self.ctl.drain() {
            match m {
                PathMsg::Apply(updates) => {
                    for u in &updates {
                        mailbox::apply(&mut self.state, u);
                    }
                    if let Some(f) = &mut self.fast {
                        f.backends_changed();
                    }
                }
                PathMsg::Sync(done) => {
                    let _ = done.send(());
                }
                PathMsg::Report(reply) => {
                    if let Some(f) = &mut self.fast {
                        f.count_now(&mut self.state, now());
                    }
                    let mut r = mailbox::report(&self.state, now());
                    r.received = self.stats.received;
                    r.sent = self.stats.sent;
                    r.send_failed = self.stats.send_failed;
                    r.icmp_frag_needed = self.stats.icmp_sent;
                    r.fast_path = self.fast.as_ref().map(|f| f.counters());
                    let _ = reply.send(r);
                }
            }
        }
    }

    /// Decides a received batch at once (`lb_core::decide_batch`: the connection-table misses of
    /// the whole batch overlap), queues what it sends, and pushes one [`Disposition`] per packet
    /// onto `out`. `csum_not_ready[i]` flags `packets[i]` as CHECKSUM_PARTIAL.
    pub(crate) fn handle_batch(
        &mut self,
        now: lb_core::Nanos,
        packets: &[&[u8]],
        csum_not_ready: &[bool],
        out: &mut Vec<Disposition>,
    ) {
        self.stats.received += packets.len() as u64;
        let mut actions = std::mem::take(&mut self.actions);
        decide_batch(&mut self.state, now, packets, &mut actions);
        if let Some(f) = &mut self.fast {
            // After the whole batch: a later packet's FIN closes its flow before this asks.
            for (action, packet) in actions.iter().zip(packets) {
                if let Some(op) = self.state.map_op(packet, action) {
                    f.queue(&self.state, op, now);
                }
            }
        }
        for ((&action, packet), &csum) in actions.iter().zip(packets).zip(csum_not_ready) {
            out.push(self.act(action, packet, csum));
        }
        self.actions = actions;
    }

    /// Queues what `action` sends for `packet`, and says what becomes of the original.
    fn act(&mut self, action: Action, packet: &[u8], csum_not_ready: bool) -> Disposition {
        match action {
            Action::Forward { addr, .. } => match &self.out {
                Out::Kernel => {
                    self.stats.sent += 1;
                    return Disposition::Accept {
                        mark: backend_mark(addr),
                    };
                }
                Out::Udp(_) => {
                    // The UDP socket adds the outer headers: queue just the inner packet.
                    let Ok(inner) = ip_packet(packet, self.framing) else {
                        return Disposition::Consumed;
                    };
                    let start = self.batch.buf.len();
                    self.batch.buf.extend_from_slice(inner);
                    if csum_not_ready {
                        let _ = complete_l4_checksum(&mut self.batch.buf[start..]);
                    }
                    if self.fwd.clamp_mss {
                        let _ = lb_core::emit::clamp_mss(
                            &mut self.batch.buf[start..],
                            max_mss(self.fwd.mtu),
                        );
                    }
                    self.batch
                        .commit(start, Some(SocketAddrV4::new(addr, ENCAP_PORT)));
                }
                Out::Frames(_) => {
                    let start = self.batch.buf.len();
                    match lb_core::emit(
                        &self.fwd,
                        self.framing,
                        &action,
                        packet,
                        &mut self.batch.buf,
                    ) {
                        Ok(_) => {
                            if csum_not_ready {
                                // The frame's IPv4 packet follows its 14-byte Ethernet header.
                                let _ = complete_l4_checksum(&mut self.batch.buf[start + 14..]);
                            }
                            self.batch.commit(start, None)
                        }
                        Err(e) => tracing::debug!("emit: {e}"),
                    }
                }
            },
            Action::FragNeeded { .. } => {
                self.scratch.clear();
                if lb_core::emit(&self.fwd, self.framing, &action, packet, &mut self.scratch)
                    .is_ok()
                {
                    match self.icmp.send(&self.scratch) {
                        Ok(()) => self.stats.icmp_sent += 1,
                        Err(e) => tracing::debug!("send ICMP frag-needed: {e}"),
                    }
                }
            }
            Action::Drop(_) => {}
        }
        Disposition::Consumed
    }

    /// Sends what the batch produced; call once per received batch.
    pub(crate) fn flush(&mut self) {
        self.stats.batches += 1;
        if self.batch.len() == 0 {
            return;
        }
        let fd = match &self.out {
            Out::Udp(s) => s.as_raw_fd(),
            Out::Frames(s) => s.as_raw_fd(),
            Out::Kernel => return,
        };
        let f = self.batch.flush(fd);
        self.stats.sent += f.sent as u64;
        self.stats.send_failed += f.failed as u64;
    }
}

/// Counters summed over threads, by backend name.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    paths: PathStats,
    backends: BTreeMap<String, (u64, u64, u64)>,
    drops: BTreeMap<&'static str, u64>,
}

impl Totals {
    pub(crate) fn add(&mut self, path: &DataPath) {
        self.paths.received += path.stats.received;
        self.paths.batches += path.stats.batches;
        self.paths.sent += path.stats.sent;
        self.paths.send_failed += path.stats.send_failed;
        self.paths.icmp_sent += path.stats.icmp_sent;
        for b in path.state.backends() {
            let e = self.backends.entry(b.spec.name.clone()).or_default();
            e.0 += b.counters.packets;
            e.1 += b.counters.bytes;
            e.2 += b.counters.flows;
        }
        for (reason, n) in path.state.counters().nonzero_drops() {
            *self.drops.entry(reason.name()).or_default() += n;
        }
    }

    pub(crate) fn log(&self) {
        let p = &self.paths;
        tracing::info!(
            received = p.received,
            mean_batch = format!("{:.1}", p.received as f64 / p.batches.max(1) as f64),
            sent = p.sent,
            send_failed = p.send_failed,
            icmp_frag_needed = p.icmp_sent,
            "data path totals"
        );
        for (name, (packets, bytes, flows)) in &self.backends {
            tracing::info!(backend = %name, packets, bytes, flows, "backend counters");
        }
        for (reason, n) in &self.drops {
            tracing::info!(reason = %reason, packets = n, "dropped");
        }
    }
}

pub(crate) fn new_path(
    s: &ServerSettings,
    cfg: &Config,
    specs: &[BackendSpec],
    iface: &IfAddr,
    ctl: Mailbox,
    fast: Option<&lb_core::rules::FastPathRules>,
) -> Result<DataPath> {
    let mut state = State::new(cfg.clone()).context("balancer configuration")?;
    for spec in specs {
        state
            .add_backend(spec.clone())
            .with_context(|| format!("backend {}", spec.name))?;
    }
    let out = match s.server.forward {
        ForwardMode::UdpEncap => {
            let sock = UdpSocket::bind((iface.addr, 0)).context("bind the encapsulation socket")?;
            let _ = set_sndbuf(sock.as_raw_fd(), 4 << 20);
            Out::Udp(sock)
        }
        ForwardMode::Dsr => {
            let sock = PacketSocket::sender(iface.ifindex)
                .with_context(|| format!("packet socket on {}", iface.ifname))?;
            let _ = set_sndbuf(sock.as_raw_fd(), 4 << 20);
            Out::Frames(sock)
        }
        ForwardMode::DsrKernel => Out::Kernel,
    };
    let fast = match fast {
        Some(rules) => {
            state.populate_conns();
            let map = crate::sys::flowmap::FlowMap::open(&rules.table())?;
            Some(fastpath::FastPath::new(map))
        }
        None => None,
    };
    Ok(DataPath {
        state,
        fwd: cfg.forward,
        framing: cfg.framing,
        out,
        icmp: RawIpSocket::new().context("raw socket for ICMP errors")?,
        batch: SendBatch::default(),
        scratch: Vec::with_capacity(1600),
        actions: Vec::new(),
        stats: PathStats::default(),
        last_expire: lb_core::Nanos::ZERO,
        ctl,
        fast,
    })
}
