//! The `sim` backend: a scenario's network built in the simulator (the `sim` crate) from the
//! same resolved [`Plan`], in virtual time, deterministic by seed, without root. Programs are
//! driven from here in virtual time: the UDP listener and burst through the simulator's
//! sockets. What the simulator does not model yet is refused with one line naming the host, the
//! program or the step (`docs/sim.md` lists it), never skipped.

mod balancer;
mod commands;
mod programs;
mod spec;

use balancer::LbProcess;
use programs::{Listener, Sock};

pub use spec::net_spec;

use super::{
    Backend, BurstSpec, CaptureSpec, ConnectionsSpec, ConntrackReading, Counters, ExecResult,
    ExecSpec, HoldVerdict, ListenerStats, Network, Probe, Program, Proto, Started, StopSignal,
    TelnetOutcome, TelnetResult, TelnetSpec,
};
use crate::cancel::cancelled;
use crate::capture::{CapturePoint, CaptureStats, Frame, PacketType};
use crate::kernel::KernelVersion;
use crate::resolve::Plan;
use sim::{
    Choice, Direction, HolderId, KernelProfile, MacAddr, SimConfig, SimTime, TapId, TapPoint,
    TcpState, World,
};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Networks simulated in one process: virtual time, one seed, a chosen kernel's behaviour.
#[derive(Debug, Clone)]
pub struct Sim {
    /// The kernel whose behaviour the simulator shows (scenario `kernel = "…"` ranges are
    /// evaluated against it).
    pub kernel: KernelVersion,
    /// The seed of every random choice (ties between simultaneous events, ports, ISNs).
    pub seed: u64,
    /// Explore: the alternatives to take at the choice points (see [`sim::SimConfig`]);
    /// `None`: the seed's order.
    pub ordering: Option<Vec<u32>>,
    /// The choice points the last network built by this backend met, when exploring.
    pub explored: Arc<Mutex<Vec<Choice>>>,
}

/// An ordering as `lab run --sim --ordering` takes it: the choice points where an alternative
/// other than the seed's order was taken, as `POINT:ALTERNATIVE` pairs (`3:1,7:2`); `0` for
/// the seed's order.
pub fn ordering_id(choices: &[Choice]) -> String {
    let taken: Vec<String> = choices
        .iter()
        .enumerate()
        .filter(|(_, c)| c.chosen != 0)
        .map(|(i, c)| format!("{i}:{}", c.chosen))
        .collect();
    match taken.is_empty() {
        true => "0".into(),
        false => taken.join(","),
    }
}

/// The alternatives an [`ordering_id`] names, by choice point.
pub fn parse_ordering(id: &str) -> Result<Vec<u32>, String> {
    let bad = || {
        format!(
            "--ordering {id:?}: an ordering is written like 0 or 3:1,7:2 (as --explore prints it)"
        )
    };
    let mut out: Vec<u32> = Vec::new();
    if id == "0" {
        return Ok(out);
    }
    for pair in id.split(',') {
        let (point, alt) = pair.split_once(':').ok_or_else(bad)?;
        let (point, alt): (usize, u32) = (
            point.parse().map_err(|_| bad())?,
            alt.parse().map_err(|_| bad())?,
        );
        if point < out.len() || point > 1_000_000 || alt == 0 {
            return Err(bad());
        }
        out.resize(point, 0);
        out.push(alt);
    }
    Ok(out)
}

impl Sim {
    /// A simulator for kernel `kernel` (`3.6`, `6.12`; default: the running kernel's
    /// `major.minor`) with `seed`.
    pub fn new(kernel: Option<&str>, seed: u64) -> Result<Sim, String> {
        let version = match kernel {
            Some(k) => KernelVersion::parse(k)
                .filter(|v| v.number.0 > 0)
                .ok_or_else(|| {
                    format!("--kernel {k:?}: a kernel version is written like 3.6 or 6.12")
                })?,
            None => KernelVersion::running(),
        };
        let short = format!("{}.{}", version.number.0, version.number.1);
        Ok(Sim {
            kernel: KernelVersion {
                number: version.number,
                release: format!("{short} (simulated)"),
            },
            seed,
            ordering: None,
            explored: Arc::default(),
        })
    }

    /// The kernel behaviour the simulator follows for this version.
    pub fn profile(&self) -> KernelProfile {
        KernelProfile::for_release(self.kernel.number.0, self.kernel.number.1)
    }
}

impl Backend for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn kernel(&self) -> KernelVersion {
        self.kernel.clone()
    }

    fn build(&self, plan: &Plan, hint: &str) -> Result<Box<dyn Network>, String> {
        let spec = net_spec(plan)?;
        let macs: HashMap<(String, String), MacAddr> = spec
            .hosts()
            .iter()
            .flat_map(|h| {
                h.interfaces
                    .iter()
                    .map(move |i| ((h.name.clone(), i.name.clone()), i.mac))
            })
            .collect();
        let config = SimConfig {
            kernel: self.profile(),
            ordering: self.ordering.clone(),
            ..SimConfig::with_seed(self.seed)
        };
        let world = World::new(&spec, config).map_err(|e| e.to_string())?;
        let name = network_name(hint);
        let artifact_dir = artifact_root().join(&name);
        std::fs::create_dir_all(&artifact_dir)
            .map_err(|e| format!("cannot create {}: {e}", artifact_dir.display()))?;
        Ok(Box::new(SimNetwork {
            world,
            name,
            artifact_dir,
            macs,
            listeners: BTreeMap::new(),
            processes: BTreeMap::new(),
            holders: HashMap::new(),
            taps: Vec::new(),
            armed_at: SimTime::ZERO,
            explored: Arc::clone(&self.explored),
        }))
    }
}

/// Where the simulator's artifacts go: `LAB_ARTIFACTS`, else `/var/tmp/lab` for root and
/// `/var/tmp/lab-UID` for anyone else, as for rootless labs: no root needed.
fn artifact_root() -> PathBuf {
    if std::env::var_os("LAB_ARTIFACTS").is_some() || crate::lab::is_root() {
        return crate::state::artifact_root();
    }
    crate::rootless::UserDirs::of(nix::unistd::getuid().as_raw()).artifacts
}

/// `sim-<scenario>-<pid>-<n>`: unique among the networks of this machine.
fn network_name(hint: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let stem: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    format!(
        "sim-{stem}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A simulated network and what a scenario started in it.
pub struct SimNetwork {
    world: World,
    name: String,
    artifact_dir: PathBuf,
    macs: HashMap<(String, String), MacAddr>,
    listeners: BTreeMap<String, Listener>,
    processes: BTreeMap<String, LbProcess>,
    holders: HashMap<String, (HolderId, PathBuf)>,
    taps: Vec<(CaptureSpec, TapId)>,
    armed_at: SimTime,
    explored: Arc<Mutex<Vec<Choice>>>,
}

fn duration(t: SimTime) -> Duration {
    Duration::from_nanos(t.as_nanos())
}

impl SimNetwork {
    /// Runs the world to `until` one event at a time, letting the programs react after each
    /// one at the same instant, as a process woken at once would.
    fn run_until(&mut self, until: SimTime) {
        while self.world.next_event_at().is_some_and(|t| t <= until) {
            self.world.step();
            self.drain();
        }
        self.world.run_until(until);
    }

    /// Lets every program take in what arrived and react.
    fn drain(&mut self) {
        for l in self.listeners.values_mut() {
            l.poll(&mut self.world);
        }
        for p in self.processes.values_mut() {
            p.poll(&mut self.world);
        }
    }

    /// Runs the world event by event (programs reacting after each) until `done` holds or
    /// `deadline` passes; whether `done` held.
    fn run_while_not(&mut self, deadline: SimTime, done: impl Fn(&mut Self) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            match self.world.next_event_at() {
                Some(t) if t <= deadline && !cancelled() => {
                    self.world.step();
                    self.drain();
                }
                _ => {
                    self.run_until(deadline);
                    return done(self);
                }
            }
        }
    }

    fn packet_type(&self, host: &str, c: &sim::Captured) -> PacketType {
        if c.direction == Direction::Outgoing {
            return PacketType::Outgoing;
        }
        if c.interface == "lo" {
            return PacketType::Host;
        }
        let dst = c
            .frame
            .get(..6)
            .map(|b| MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]]));
        match dst {
            Some(MacAddr::BROADCAST) => PacketType::Broadcast,
            Some(m) if m.is_multicast() => PacketType::Multicast,
            Some(m) if self.macs.get(&(host.to_string(), c.interface.clone())) == Some(&m) => {
                PacketType::Host
            }
            Some(_) => PacketType::OtherHost,
            None => PacketType::Unknown,
        }
    }
}

impl Network for SimNetwork {
    fn name(&self) -> &str {
        &self.name
    }

    fn artifact_dir(&self) -> &Path {
        &self.artifact_dir
    }

    fn now(&self) -> Duration {
        duration(self.world.now())
    }

    fn sleep(&mut self, d: Duration) -> bool {
        let until = self.world.now().saturating_add(d);
        self.run_until(until);
        !cancelled()
    }

    fn arm_captures(&mut self, points: &[CaptureSpec]) -> Result<(), String> {
        for c in points {
            let point = match &c.interface {
                Some(i) => TapPoint::Interface(i.clone()),
                None => TapPoint::Any,
            };
            let tap = self
                .world
                .tap(&c.host, point)
                .map_err(|e| format!("cannot capture on {}: {e}", c.host))?;
            self.taps.push((c.clone(), tap));
        }
        self.armed_at = self.world.now();
        Ok(())
    }

    fn captures_quiet(&self) -> Duration {
        let last = self
            .taps
            .iter()
            .filter_map(|(_, t)| self.world.captured(*t).ok()?.last().map(|c| c.time))
            .max()
            .unwrap_or(self.armed_at)
            .max(self.armed_at);
        self.world.now().saturating_duration_since(last)
    }

    fn collect_captures(&mut self) -> Result<Vec<CapturePoint>, String> {
        let mut points = Vec::new();
        for (spec, tap) in std::mem::take(&mut self.taps) {
            let captured = self.world.captured(tap).map_err(|e| e.to_string())?;
            let frames: Vec<Frame> = captured
                .iter()
                .map(|c| {
                    Frame::ethernet(
                        duration(c.time),
                        self.packet_type(&spec.host, c),
                        &c.interface,
                        c.frame.clone(),
                    )
                })
                .collect();
            let n = frames.len() as u64;
            points.push(CapturePoint {
                host: spec.host.clone(),
                interface: spec.interface.clone(),
                frames,
                stats: CaptureStats {
                    kernel_packets: n,
                    captured: n,
                    ..CaptureStats::default()
                },
            });
        }
        Ok(points)
    }

    fn start(&mut self, host: &str, name: &str, program: &Program) -> Result<Started, String> {
        match program {
            Program::UdpListener { addr } => {
                let socket = self
                    .world
                    .udp_bind(host, *addr)
                    .map_err(|e| format!("cannot bind {addr} in {host}: {e}"))?;
                let log = self.artifact_dir.join(format!("{host}-{name}.log"));
                self.listeners.insert(
                    name.to_string(),
                    Listener::new(
                        Sock::Udp(socket),
                        log.clone(),
                        format!("listening on udp {addr}"),
                    ),
                );
                Ok(Started {
                    detail: format!("bound to {addr}"),
                    log: Some(log),
                })
            }
            Program::TcpListener { addr, reply } => {
                let listener = self
                    .world
                    .tcp_listen(host, *addr)
                    .map_err(|e| format!("cannot listen on {addr} in {host}: {e}"))?;
                let log = self.artifact_dir.join(format!("{host}-{name}.log"));
                let sock = Sock::Tcp {
                    listener,
                    reply: reply.clone(),
                    conns: Vec::new(),
                };
                self.listeners.insert(
                    name.to_string(),
                    Listener::new(sock, log.clone(), format!("listening on tcp {addr}")),
                );
                Ok(Started {
                    detail: format!("listening on {addr}"),
                    log: Some(log),
                })
            }
            Program::TcpEcho { addr } => Err(format!(
                "{host}: a tcp-echo server on {addr} cannot be simulated yet (see docs/sim.md)"
            )),
            Program::NfqHolder(spec) => {
                let id = self
                    .world
                    .nfq_holder(
                        host,
                        spec.queue,
                        spec.count,
                        spec.delay,
                        spec.verdict == HoldVerdict::Accept,
                    )
                    .map_err(|e| format!("{host}: {e}"))?;
                let log = self.artifact_dir.join(format!("{host}-{name}.log"));
                self.holders.insert(name.to_string(), (id, log.clone()));
                Ok(Started {
                    detail: format!("queue {} bound", spec.queue),
                    log: Some(log),
                })
            }
            Program::Lb { args } => {
                if self.processes.contains_key(name) {
                    return Err(format!("a process named `{name}` runs already"));
                }
                let log = self.artifact_dir.join(format!("{host}-{name}.log"));
                let p = LbProcess::start(&mut self.world, host, args, log.clone())?;
                self.processes.insert(name.to_string(), p);
                Ok(Started {
                    detail: "started".into(),
                    log: Some(log),
                })
            }
            Program::Command { argv } => Err(format!(
                "{host}: `{}` is an arbitrary command: the simulator runs no processes",
                argv.join(" ")
            )),
        }
    }

    fn probe(&mut self, host: &str, probe: &Probe) -> Result<bool, String> {
        match probe {
            Probe::Listening {
                proto: Proto::Udp,
                addr,
            } => self
                .world
                .udp_is_bound(host, *addr)
                .map_err(|e| e.to_string()),
            Probe::Listening {
                proto: Proto::Tcp,
                addr,
            } => self
                .world
                .tcp_is_listening(host, *addr)
                .map_err(|e| e.to_string()),
            Probe::QueueBound { queue } => self
                .world
                .nfq_is_bound(host, *queue)
                .map_err(|e| e.to_string()),
        }
    }

    fn output(&self, name: &str) -> Result<String, String> {
        self.processes
            .get(name)
            .map(|p| p.text.clone())
            .ok_or_else(|| format!("no process named `{name}` was started"))
    }

    fn exit_status(&mut self, name: &str) -> Option<String> {
        self.processes.get(name)?.exit.clone()
    }

    fn signal(&mut self, name: &str, signal: StopSignal) -> Result<(), String> {
        let p = self
            .processes
            .get_mut(name)
            .ok_or_else(|| format!("no process named `{name}` was started"))?;
        p.signal(&mut self.world, signal != StopSignal::Kill);
        Ok(())
    }

    fn listener(&self, name: &str) -> Result<ListenerStats, String> {
        self.listeners
            .get(name)
            .map(|l| l.stats.clone())
            .ok_or_else(|| format!("no listener named `{name}` was started"))
    }

    fn telnet(&mut self, host: &str, spec: &TelnetSpec) -> Result<TelnetResult, String> {
        let addr = spec.addr;
        let deadline = self.world.now().saturating_add(spec.timeout);
        let listener = |net: &Self, l: &str| {
            net.listeners
                .get(l)
                .map(|x| x.stats.clone())
                .ok_or_else(|| format!("no listener named `{l}` was started"))
        };
        let before = match &spec.server {
            Some(l) => Some(listener(self, l)?),
            None => None,
        };
        let c = self
            .world
            .tcp_connect(host, addr)
            .map_err(|e| format!("connect from {host} to {addr}: {e}"))?;
        self.run_while_not(deadline, |n| n.world.tcp_state(c) != Ok(TcpState::SynSent));
        let failed = |outcome, why: &str| TelnetResult {
            outcome,
            message: format!("Unable to connect to remote host: {why}"),
            received: vec![],
            closed_by_peer: false,
        };
        match self.world.tcp_state(c).map_err(|e| e.to_string())? {
            TcpState::Established => {}
            TcpState::Refused => return Ok(failed(TelnetOutcome::Refused, "Connection refused")),
            _ => {
                let _ = self.world.tcp_close(c);
                return Ok(failed(TelnetOutcome::Timeout, "Connection timed out"));
            }
        }
        if let (Some(l), Some(b)) = (&spec.server, &before) {
            let accepted = self.run_while_not(deadline, |n| {
                n.listeners
                    .get(l)
                    .is_some_and(|x| x.stats.connections > b.connections)
            });
            if !accepted {
                return Err(format!(
                    "connected, but `{l}` did not accept the connection"
                ));
            }
        }
        for l in &spec.send {
            self.world
                .tcp_send(c, format!("{l}\n").as_bytes())
                .map_err(|e| format!("send to {addr}: {e}"))?;
        }
        let mut received = Vec::new();
        let gone = |n: &Self| {
            n.world.tcp_peer_closed(c).unwrap_or(true)
                || n.world.tcp_state(c) == Ok(TcpState::Closed)
        };
        let mut replied_and_closed = false;
        if spec.wait_reply {
            loop {
                received.extend(self.world.tcp_recv(c).unwrap_or_default());
                if received.contains(&b'\n') {
                    break;
                }
                if gone(self) {
                    replied_and_closed = true;
                    break;
                }
                let got = self.run_while_not(deadline, |n| {
                    gone(n) || n.world.tcp_state(c).is_err() || {
                        // Data waiting: peek without taking it.
                        !n.world.tcp_recv_peek(c).is_empty()
                    }
                });
                if !got {
                    return Err(format!(
                        "no reply line from {addr} within {} ms",
                        spec.timeout.as_millis()
                    ));
                }
            }
            if let (Some(l), Some(b), false) = (&spec.server, &before, replied_and_closed) {
                let acked = self.run_while_not(deadline, |n| {
                    n.listeners
                        .get(l)
                        .is_some_and(|x| x.stats.replies_acked > b.replies_acked)
                });
                if !acked {
                    return Err(format!("`{l}` did not see its reply acknowledged"));
                }
            }
        }
        self.world
            .tcp_shutdown(c)
            .map_err(|e| format!("close towards {addr}: {e}"))?;
        let closed_by_peer = replied_and_closed || self.run_while_not(deadline, |n| gone(n));
        received.extend(self.world.tcp_recv(c).unwrap_or_default());
        Ok(TelnetResult {
            outcome: TelnetOutcome::Connected,
            message: format!("Connected to {}.", addr.ip()),
            received,
            closed_by_peer,
        })
    }

    fn udp_burst(&mut self, host: &str, spec: &BurstSpec) -> Result<usize, String> {
        let socket = self
            .world
            .udp_bind(
                host,
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, spec.source_port),
            )
            .map_err(|e| format!("bind udp port {} in {host}: {e}", spec.source_port))?;
        let mut sent = 0;
        for n in 1..=spec.count {
            if n > 1 && !spec.interval.is_zero() && !self.sleep(spec.interval) {
                break;
            }
            let data = crate::backend::program::burst_payload(&spec.payload, n);
            self.world
                .udp_send_to(socket, spec.to, data.as_bytes())
                .map_err(|e| format!("send datagram {n} to {}: {e}", spec.to))?;
            sent += 1;
        }
        let _ = self.world.udp_close(socket);
        Ok(sent)
    }

    fn exec(&mut self, host: &str, name: &str, spec: &ExecSpec) -> Result<ExecResult, String> {
        let Some(answer) = commands::run(&self.world, host, &spec.argv) else {
            return Err(format!(
                "{host}: `{}` is an arbitrary command: the simulator runs no processes (it answers `iptables -S` only)",
                spec.argv.join(" ")
            ));
        };
        let (code, output) = answer.map_err(|e| format!("{host}: {e}"))?;
        let path = self.artifact_dir.join(format!("{host}-{name}.log"));
        std::fs::write(&path, &output).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ExecResult {
            finished: true,
            code: Some(code),
            ended: format!("exit status: {code}"),
            output,
            log: Some(path),
        })
    }

    fn connections(
        &mut self,
        host: &str,
        _name: &str,
        spec: &ConnectionsSpec,
    ) -> Result<Started, String> {
        Err(format!(
            "{host}: long-lived connections to {} cannot be simulated yet (see docs/sim.md)",
            spec.to
        ))
    }

    fn tally(&mut self, name: &str) -> Result<Counters, String> {
        Err(format!("no connections named `{name}` were opened"))
    }

    fn impair(
        &mut self,
        link: usize,
        way: crate::impair::Way,
        imp: &crate::impair::Impairment,
    ) -> Result<(), String> {
        self.world
            .impair_link(link, way, imp, imp.stream(link, way))
            .map_err(|e| e.to_string())
    }

    fn nfqueue(&mut self, host: &str, queue: u16) -> Result<Counters, String> {
        let (packets, waiting) = self
            .world
            .nfq_counters(host, queue)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{host}: no program is bound to NFQUEUE {queue}"))?;
        // The simulated queue has no length limit: nothing is dropped for want of room.
        Ok(crate::backend::nfqueue_counters(packets, 0, waiting))
    }

    fn conntrack(&mut self, host: &str, filter: &[String]) -> Result<ConntrackReading, String> {
        let counters = self
            .world
            .conntrack_counters(host)
            .map_err(|e| e.to_string())?;
        let (entries, listing) = match self.world.conntrack_list(host, filter) {
            Ok(lines) => (
                Ok(lines.len() as u64),
                lines.iter().map(|l| format!("{l}\n")).collect(),
            ),
            Err(e) => (Err(e.to_string()), String::new()),
        };
        Ok(ConntrackReading {
            counters,
            entries,
            listing,
        })
    }

    fn down(mut self: Box<Self>) -> Result<(), String> {
        self.drain();
        if let Ok(mut e) = self.explored.lock() {
            *e = self.world.choices().to_vec();
        }
        let logs: BTreeMap<PathBuf, String> = self
            .listeners
            .values()
            .map(|l| (l.log.clone(), l.text.clone()))
            .collect();
        let mut logs = logs;
        for p in self.processes.values() {
            logs.insert(p.log.clone(), p.text.clone());
        }
        for (id, path) in self.holders.values() {
            let lines = self.world.holder_log(*id).map_err(|e| e.to_string())?;
            let text: String = lines
                .iter()
                .map(|(t, l)| format!("{:>12.6} {l}\n", duration(*t).as_secs_f64()))
                .collect();
            logs.insert(path.clone(), text);
        }
        for (path, text) in logs {
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }
}
