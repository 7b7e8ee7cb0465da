//! `lb server`: the VIP, the intake rules, one data-path thread per queue, and a clean stop.
//!
//! Start: the NFQUEUE rules first (stale ones from a crashed run removed), then the VIP as a
//! /32 on the interface whose subnet holds it, so that no packet to the VIP ever reaches a
//! kernel that would answer it. Stop (SIGINT/SIGTERM): the VIP first, then the rules.
//!
//! Each data-path thread owns a [`State`]: with several queues the kernel's `--queue-balance`
//! sends every packet of a flow to the same queue, so threads share nothing and agree on new
//! flows because Maglev over the keyed hash is the same table in each.

use crate::pathctl::{self, PathCtl, PathMsg};
use crate::sys::markroute::{MarkRoutes, backend_mark};
use crate::sys::netlink::{self, IfAddr};
use crate::sys::now;
use crate::sys::rules::{Hook, QueueRules};
use crate::sys::sock::{PacketSocket, RawIpSocket, RecvSlots, SendBatch, set_rcvbuf, set_sndbuf};
use crate::sys::wake::wait_or_wake;
use anyhow::{Context, Result, bail};
use lb::config::{BackendEntry, ControlSection, IntakeKind, ServerSection, VerdictMode};
use lb::control::Secret;
use lb::encap::{ENCAP_PORT, complete_l4_checksum, ip_packet, max_mss};
use lb::{
    Action, BackendSpec, Config, ForwardConfig, ForwardMode, Intake, MacAddr, State, decide_batch,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Everything `lb server` needs, after the file and the flags are merged.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// The `[server]` section with flags applied.
    pub server: ServerSection,
    /// The `[control]` section with flags applied.
    pub control: ControlSection,
    /// The shared secret, loaded from `control.secret_file`.
    pub secret: Option<Secret>,
    /// Whether the ctl socket's path was given (then a busy path is an error, not a warning).
    pub ctl_socket_given: bool,
}

/// What a stop must undo; dropping it undoes what was done, in reverse order.
struct Installed {
    routes: Option<MarkRoutes>,
    rules: Option<QueueRules>,
    vip: Option<(u32, Ipv4Addr)>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some((ifindex, vip)) = self.vip.take() {
            match netlink::del_host_address(ifindex, vip) {
                Ok(()) => tracing::info!(%vip, "removed the VIP"),
                Err(e) => tracing::error!("remove VIP {vip}: {e:#}"),
            }
        }
        if let Some(rules) = self.rules.take() {
            match rules.remove() {
                Ok(n) => tracing::info!(rules = n, "removed the NFQUEUE rules"),
                Err(e) => tracing::error!("remove NFQUEUE rules: {e:#}"),
            }
        }
        if let Some(routes) = self.routes.take() {
            match routes.remove() {
                Ok(true) => {
                    tracing::info!("removed the dsr-kernel rules and routes, restored the sysctls")
                }
                Ok(false) => tracing::info!(
                    "removed the dsr-kernel rules and routes; another balancer's rules remain, so the forwarding sysctls stay"
                ),
                Err(e) => tracing::error!("remove dsr-kernel rules and routes: {e:#}"),
            }
        }
    }
}

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
    intake: Intake,
    out: Out,
    icmp: RawIpSocket,
    batch: SendBatch,
    scratch: Vec<u8>,
    /// `decide_batch`'s output, kept for its memory.
    actions: Vec<Action>,
    stats: PathStats,
    ctl: PathCtl,
    /// When idle flows were last expired.
    last_expire: lb::Nanos,
}

impl DataPath {
    /// Waits up to `timeout` for `fd` to be readable, applying control messages that arrive
    /// meanwhile and expiring idle flows when nothing happens; returns whether `fd` is readable.
    pub(crate) fn wait(&mut self, fd: RawFd, timeout: Duration) -> std::io::Result<bool> {
        let (readable, woken) = wait_or_wake(fd, &self.ctl.waker, timeout)?;
        if woken {
            self.control();
        } else if !readable {
            self.state.expire(now(), 4096);
        }
        Ok(readable)
    }

    /// Expires idle flows at most every 100 ms while busy (`wait` does it when idle), so a
    /// balancer that is never idle still ages its connection table.
    pub(crate) fn expire_if_due(&mut self, t: lb::Nanos) {
        if t.since(self.last_expire) >= lb::Nanos::from_millis(100) {
            self.last_expire = t;
            self.state.expire(t, 4096);
        }
    }

    /// Applies waiting control messages and answers reports.
    fn control(&mut self) {
        for m in self.ctl.drain() {
            match m {
                PathMsg::Apply(updates) => {
                    for u in &updates {
                        pathctl::apply(&mut self.state, u);
                    }
                }
                PathMsg::Sync(done) => {
                    let _ = done.send(());
                }
                PathMsg::Report(reply) => {
                    let mut r = pathctl::report(&self.state, now());
                    r.received = self.stats.received;
                    r.sent = self.stats.sent;
                    r.send_failed = self.stats.send_failed;
                    r.icmp_frag_needed = self.stats.icmp_sent;
                    let _ = reply.send(r);
                }
            }
        }
    }

    /// Decides a received batch at once (`lb::decide_batch`: the connection-table misses of
    /// the whole batch overlap), queues what it sends, and pushes one [`Disposition`] per packet
    /// onto `out`. `csum_not_ready[i]` flags `packets[i]` as CHECKSUM_PARTIAL.
    pub(crate) fn handle_batch(
        &mut self,
        now: lb::Nanos,
        packets: &[&[u8]],
        csum_not_ready: &[bool],
        out: &mut Vec<Disposition>,
    ) {
        self.stats.received += packets.len() as u64;
        let mut actions = std::mem::take(&mut self.actions);
        decide_batch(&mut self.state, now, packets, &mut actions);
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
                    let Ok(inner) = ip_packet(packet, self.intake) else {
                        return Disposition::Consumed;
                    };
                    let start = self.batch.buf.len();
                    self.batch.buf.extend_from_slice(inner);
                    if csum_not_ready {
                        let _ = complete_l4_checksum(&mut self.batch.buf[start..]);
                    }
                    if self.fwd.clamp_mss {
                        let _ = lb::encap::clamp_mss(
                            &mut self.batch.buf[start..],
                            max_mss(self.fwd.mtu),
                        );
                    }
                    self.batch
                        .commit(start, Some(SocketAddrV4::new(addr, ENCAP_PORT)));
                }
                Out::Frames(_) => {
                    let start = self.batch.buf.len();
                    match lb::emit(&self.fwd, self.intake, &action, packet, &mut self.batch.buf) {
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
                if lb::emit(&self.fwd, self.intake, &action, packet, &mut self.scratch).is_ok() {
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
struct Totals {
    paths: PathStats,
    backends: BTreeMap<String, (u64, u64, u64)>,
    drops: BTreeMap<&'static str, u64>,
}

impl Totals {
    fn add(&mut self, path: &DataPath) {
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

    fn log(&self) {
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

fn backend_specs(s: &ServerSettings, iface: &IfAddr) -> Result<Vec<BackendSpec>> {
    s.server
        .backends
        .iter()
        .map(|b: &BackendEntry| {
            // dsr-kernel routes via the backend, so it must be on the LAN even with a MAC.
            let needs_lan = match s.server.forward {
                ForwardMode::Dsr => b.mac.is_none(),
                ForwardMode::DsrKernel => true,
                ForwardMode::UdpEncap => false,
            };
            if needs_lan && !iface.contains(b.addr) {
                bail!(
                    "backend {} ({}): DSR needs backends on the VIP's LAN ({}/{} on {})",
                    b.name,
                    b.addr,
                    iface.addr,
                    iface.prefix,
                    iface.ifname
                );
            }
            if s.server.forward == ForwardMode::DsrKernel && b.mac.is_some() {
                tracing::warn!(
                    backend = %b.name,
                    "the MAC given is not used with dsr-kernel: the kernel resolves it"
                );
            }
            let mac = match (s.server.forward, b.mac) {
                (ForwardMode::Dsr, Some(mac)) => mac,
                (ForwardMode::Dsr, None) => {
                    let mac = netlink::resolve_mac(iface.ifindex, b.addr, Duration::from_secs(3))
                        .with_context(|| format!("backend {}", b.name))?;
                    tracing::info!(backend = %b.name, addr = %b.addr, %mac, "resolved backend MAC");
                    mac
                }
                // The kernel resolves the MAC itself (the route's gateway is the backend).
                (ForwardMode::UdpEncap | ForwardMode::DsrKernel, _) => MacAddr::default(),
            };
            Ok(BackendSpec::new(b.name.clone(), b.addr, mac).with_weight(b.weight))
        })
        .collect()
}

fn new_path(
    s: &ServerSettings,
    cfg: &Config,
    specs: &[BackendSpec],
    iface: &IfAddr,
    ctl: PathCtl,
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
    Ok(DataPath {
        state,
        fwd: cfg.forward,
        intake: cfg.intake,
        out,
        icmp: RawIpSocket::new().context("raw socket for ICMP errors")?,
        batch: SendBatch::default(),
        scratch: Vec::with_capacity(1600),
        actions: Vec::new(),
        stats: PathStats::default(),
        last_expire: lb::Nanos::ZERO,
        ctl,
    })
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(s: ServerSettings) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("install signal handler")?;
    }
    let iface = netlink::vip_interface(s.vip, s.server.interface.as_deref())?;
    let local_mac = netlink::link_mac(iface.ifindex).unwrap_or_default();
    let specs = backend_specs(&s, &iface)?;
    if specs.is_empty() {
        tracing::warn!("no backends: every packet to the VIP is dropped");
    }
    let cfg = Config {
        vips: vec![s.vip],
        intake: match s.server.intake {
            // dsr-kernel reads only the headers: the kernel keeps and forwards the packet.
            IntakeKind::Nfqueue if s.server.forward == ForwardMode::DsrKernel => Intake::Ipv4Head,
            IntakeKind::Nfqueue => Intake::Ipv4,
            IntakeKind::Packet => Intake::Ethernet,
        },
        hash_mode: s.server.hash,
        table_size: s.server.table_size,
        conn_capacity: s.server.conn_capacity,
        forward: ForwardConfig {
            mode: s.server.forward,
            local_ip: iface.addr,
            local_mac,
            mtu: s.server.mtu,
            clamp_mss: s.server.clamp_mss,
            ..ForwardConfig::default()
        },
        ..Config::default()
    };
    // Checked before anything is installed; without a connection table, which each data path
    // allocates for itself.
    State::new(Config {
        conn_capacity: 0,
        ..cfg.clone()
    })
    .context("balancer configuration")?;

    let mut installed = Installed {
        routes: None,
        rules: None,
        vip: None,
    };
    if s.server.forward == ForwardMode::DsrKernel {
        // Routes before the queue rules: a packet accepted with a mark must find its route.
        let addrs: Vec<Ipv4Addr> = specs.iter().map(|b| b.addr).collect();
        installed.routes = Some(MarkRoutes::install(
            s.vip,
            iface.ifindex,
            &iface.ifname,
            &addrs,
        )?);
    }
    let mut threads = Vec::new();
    let mut handles = Vec::new();
    let intake_desc = match s.server.intake {
        IntakeKind::Nfqueue => {
            let rules = QueueRules {
                vip: s.vip,
                protocols: s
                    .server
                    .protocols
                    .iter()
                    .map(|p| p.name().to_string())
                    .collect(),
                ports: s.server.ports.clone(),
                queue: s.server.queue,
                queues: s.server.queues,
                bypass: s.server.queue_bypass,
                hook: match s.server.forward {
                    ForwardMode::DsrKernel => Hook::Prerouting,
                    _ => Hook::Input,
                },
            };
            // Bind the queues before the rules exist, so no packet meets an unbound queue.
            let mut queues = Vec::new();
            for q in s.server.queue..s.server.queue + s.server.queues {
                queues.push(crate::intake::bind_queue(q, &s.server)?);
            }
            // Recorded first: a failure halfway leaves rules that the stop must remove.
            installed.rules = Some(rules.clone());
            rules.install().context("install NFQUEUE rules")?;
            for queue in queues {
                let (handle, ctl) = pathctl::channel().context("eventfd")?;
                handles.push(handle);
                let path = new_path(&s, &cfg, &specs, &iface, ctl)?;
                let stop = Arc::clone(&stop);
                let (batch, mode) = (s.server.batch, s.server.verdict);
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("queue-{}", queue.num()))
                        .spawn(move || crate::intake::nfqueue_loop(queue, path, batch, mode, &stop))
                        .context("spawn data path thread")?,
                );
            }
            let last = s.server.queue + s.server.queues - 1;
            let verdicts = match s.server.verdict {
                VerdictMode::Batch => "batch verdicts",
                VerdictMode::PerPacket => "per-packet verdicts",
            };
            match s.server.queues {
                1 => format!("nfqueue {} ({verdicts})", s.server.queue),
                _ => format!("nfqueue {}-{last} ({verdicts})", s.server.queue),
            }
        }
        IntakeKind::Packet => {
            let sock = PacketSocket::intake(iface.ifindex, s.vip)
                .with_context(|| format!("packet socket on {}", iface.ifname))?;
            let _ = set_rcvbuf(sock.as_raw_fd(), s.server.rcvbuf);
            let (handle, ctl) = pathctl::channel().context("eventfd")?;
            handles.push(handle);
            let path = new_path(&s, &cfg, &specs, &iface, ctl)?;
            let stop = Arc::clone(&stop);
            let batch = s.server.batch;
            threads.push(
                std::thread::Builder::new()
                    .name("packet".into())
                    .spawn(move || packet_loop(sock, path, batch, &stop))
                    .context("spawn data path thread")?,
            );
            format!(
                "packet socket on {} (no NFQUEUE rule: the kernel answers the VIP itself)",
                iface.ifname
            )
        }
    };
    let control = crate::control_server::ControlSettings {
        vip: s.vip,
        listen: s.server.control.map(|e| e.0),
        timing: s.control.clone(),
        secret: s.secret.clone(),
        max_pending: s.server.max_pending,
        max_agents: s.server.max_agents,
        check: s.server.check.clone(),
        drain_timeout: s.server.drain_timeout.0,
        data_addr: iface.addr,
        encap_port: ENCAP_PORT,
        description: intake_desc.clone(),
    };
    let registry = crate::control_server::registry(&control, &specs)?;
    let mut ctl_socket = crate::ctl::bind(&s.server.ctl_socket, s.ctl_socket_given)?;
    let bound = crate::control_server::bind(&control, ctl_socket.as_mut().and_then(|c| c.take()))?;
    let control_thread =
        crate::control_server::spawn(control, registry, handles, bound, Arc::clone(&stop))?;
    let added = netlink::add_host_address(iface.ifindex, s.vip)?;
    installed.vip = Some((iface.ifindex, s.vip));
    if !added {
        tracing::warn!(vip = %s.vip, "the VIP was already on {}: a stale address, taken over", iface.ifname);
    }
    let names: Vec<String> = specs
        .iter()
        .map(|b| format!("{} {}", b.name, b.addr))
        .collect();
    let mode = s.server.forward.name();
    let mut extra = String::new();
    if let Some(c) = s.server.control {
        extra += &format!(
            ", registration on {}{}",
            c.0,
            if s.secret.is_some() {
                " (shared secret)"
            } else {
                ""
            }
        );
    }
    if let Some(c) = &ctl_socket {
        extra += &format!(", ctl {}", c.path().display());
    }
    println!(
        "ready: vip {} on {}, intake {intake_desc}, forward {mode}, backends [{}]{extra}",
        s.vip,
        iface.ifname,
        names.join(", ")
    );
    let _ = std::io::stdout().flush();

    let mut totals = Totals::default();
    let mut failure = None;
    for t in threads {
        match t.join() {
            Ok(Ok(path)) => totals.add(&path),
            Ok(Err(e)) => {
                stop.store(true, Ordering::Relaxed);
                failure.get_or_insert(e);
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                failure.get_or_insert(anyhow::anyhow!("a data path thread panicked"));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    if control_thread.join().is_err() {
        tracing::error!("the control thread panicked");
    }
    drop(ctl_socket);
    drop(installed);
    totals.log();
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn packet_loop(
    sock: PacketSocket,
    mut path: DataPath,
    batch: usize,
    stop: &AtomicBool,
) -> Result<DataPath> {
    let mut slots = RecvSlots::with_auxdata(batch, 2048);
    let mut dispositions = Vec::with_capacity(batch);
    let fd = sock.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        if !path.wait(fd, Duration::from_millis(200))? {
            continue;
        }
        let n = slots.recv(fd).context("receive from the packet socket")?;
        if n == 0 {
            continue;
        }
        let t = now();
        path.expire_if_due(t);
        let (packets, csum): (Vec<&[u8]>, Vec<bool>) = slots.packets().unzip();
        // The packet socket sees a copy: the kernel has the original whatever we say.
        dispositions.clear();
        path.handle_batch(t, &packets, &csum, &mut dispositions);
        path.flush();
    }
    Ok(path)
}
