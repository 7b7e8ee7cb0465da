//! `lb server` and `lb agent` as processes in the simulator. The command line is parsed by
//! `lb` itself ([`lb::parse`]), the data path is `lb-core` (`decide_batch`, Maglev, the
//! connection table, the encapsulation), and what the process does to its host (the VIP, the
//! NFQUEUE rules, dsr-kernel's policy routes and sysctls, the agent's ARP sysctls) is done
//! through the world's calls, in the order `lb` does it. Only the I/O is the simulator's:
//! NFQUEUE, the packet socket (a copy of each frame), UDP sockets, the raw socket.
//!
//! Each trip through user space takes [`USER_SPACE`]: what arrived is handled, as one batch,
//! that long after the first of it arrived, as a process woken by the kernel would.

use lb::{AgentSettings, Invocation, ServerSettings};
use lb_core::config::Intake;
use lb_core::decide::fastpath::MapOp;
use lb_core::forward::{ENCAP_PORT, max_mss};
use lb_core::{Action, BackendSpec, ForwardMode, Framing, Nanos, State, decide_batch};
use sim::spec::{IfScope, Sysctl, Sysctls};
use sim::{Direction, Ipv4Net, NfqId, PolicyRule, SimTime, SocketId, TapId, TapPoint, World};
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

/// How long a packet takes through a user-space program: the wake-up, the read, the work and
/// the send (tens of microseconds on the lab's machines).
pub(super) const USER_SPACE: Duration = Duration::from_micros(50);

/// A simulated `lb` process: its log (stdout and stderr), how it ended, and its work.
pub(super) struct LbProcess {
    pub log: PathBuf,
    pub text: String,
    pub exit: Option<String>,
    host: String,
    role: Role,
    /// When the input taken in so far is handled.
    due: Option<SimTime>,
}

enum Role {
    Server(Box<Server>),
    Agent(Box<Agent>),
    Gone,
}

/// Why a start did not give a running process.
enum Refusal {
    /// `lb` itself refuses (bad input): it exits 2 with this line, as the binary would.
    Exit(String),
    /// The simulator cannot run it: the start step fails.
    NotSimulated(String),
}

fn exit(what: &str) -> impl Fn(String) -> Refusal + '_ {
    move |e| Refusal::Exit(format!("{what}: {e}"))
}

fn world_err(what: &'static str) -> impl Fn(sim::SimError) -> Refusal {
    move |e| Refusal::Exit(format!("{what}: {e}"))
}

/// What `lb server` installed, to undo on a clean stop.
#[derive(Default)]
struct Installed {
    vip_on: Option<String>,
    rules_tag: Option<String>,
    mark_routes: bool,
    sysctls: Option<Sysctls>,
    /// The fast path's table (`--fast-path`), by name.
    fast: Option<String>,
}

struct Server {
    s: ServerSettings,
    state: State,
    framing: Framing,
    intake: Source,
    /// The encapsulation socket (`--forward encap`).
    out: Option<SocketId>,
    pending: Vec<Received>,
    installed: Installed,
}

/// A packet the server read: from a queue (with its packet id, for the verdict) or a copy
/// from the packet socket.
type Received = (Option<(NfqId, u32)>, Vec<u8>);

enum Source {
    Queues(Vec<NfqId>),
    /// A packet socket on the VIP's interface: copies of incoming frames to the VIP.
    Packet {
        tap: TapId,
        seen: usize,
    },
}

struct Agent {
    s: AgentSettings,
    socket: SocketId,
    pending: Vec<(SocketAddrV4, Vec<u8>)>,
    saved: Sysctls,
    vip_added: bool,
}

fn nanos(t: SimTime) -> Nanos {
    Nanos(t.as_nanos())
}

impl LbProcess {
    /// Starts `lb ARGS` in `host`. `Err` only for what the simulator cannot run; `lb`'s own
    /// refusals end the process with exit status 2 and the line it prints, as the real one.
    pub fn start(
        world: &mut World,
        host: &str,
        args: &[String],
        log: PathBuf,
    ) -> Result<LbProcess, String> {
        let mut p = LbProcess {
            log,
            text: String::new(),
            exit: None,
            host: host.to_string(),
            role: Role::Gone,
            due: None,
        };
        let started = match lb::parse(args) {
            Err(e) => Err(Refusal::Exit(e)),
            Ok(Invocation::Ctl) => Err(Refusal::NotSimulated(
                "`lb ctl` (the simulator has no unix sockets)".into(),
            )),
            Ok(Invocation::Server(s)) => start_server(world, host, *s).map(|(server, ready)| {
                p.say(&ready);
                Role::Server(Box::new(server))
            }),
            Ok(Invocation::Agent(s)) => start_agent(world, host, *s).map(|(agent, ready)| {
                p.say(&ready);
                Role::Agent(Box::new(agent))
            }),
        };
        match started {
            Ok(role) => p.role = role,
            Err(Refusal::Exit(line)) => {
                p.say(&format!("lb: {line}"));
                p.exit = Some("exit status: 2".into());
            }
            Err(Refusal::NotSimulated(what)) => {
                return Err(format!(
                    "{host}: `lb {}`: {what} cannot be simulated yet (see docs/sim.md)",
                    args.join(" ")
                ));
            }
        }
        Ok(p)
    }

    fn say(&mut self, line: &str) {
        let _ = writeln!(self.text, "{line}");
    }

    /// Takes in what arrived and, when its time has come, handles it.
    pub fn poll(&mut self, world: &mut World) {
        let now = world.now();
        let arrived = match &mut self.role {
            Role::Server(s) => s.take(world),
            Role::Agent(a) => a.take(world),
            Role::Gone => false,
        };
        if arrived && self.due.is_none() {
            let due = now.saturating_add(USER_SPACE);
            self.due = Some(due);
            world.wake_at(due);
        }
        if self.due.is_some_and(|d| d <= now) {
            self.due = None;
            let host = self.host.clone();
            match &mut self.role {
                Role::Server(s) => s.handle(world, &host),
                Role::Agent(a) => a.handle(world, &host),
                Role::Gone => {}
            }
        }
    }

    /// A signal: SIGKILL ends it at once (the kernel closes its queues and sockets; its rules,
    /// VIP and routes stay); SIGTERM and SIGINT let it undo what it installed and exit 0.
    pub fn signal(&mut self, world: &mut World, clean: bool) {
        if self.exit.is_some() {
            return;
        }
        let host = self.host.clone();
        let mut lines = Vec::new();
        match std::mem::replace(&mut self.role, Role::Gone) {
            Role::Server(s) => s.stop(world, &host, clean, &mut lines),
            Role::Agent(a) => a.stop(world, &host, clean, &mut lines),
            Role::Gone => {}
        }
        for l in lines {
            self.say(&l);
        }
        self.exit = Some(match clean {
            true => "exit status: 0".into(),
            false => "signal: 9 (SIGKILL)".into(),
        });
    }
}

/// The host's addresses as `lb` reads them from netlink.
/// The interface index of `links[k]` is `k + 1` (`lo` is 1).
fn addresses(links: &[sim::IfInfo]) -> Vec<lb::server::IfAddr> {
    let mut out = Vec::new();
    for (index, i) in links.iter().enumerate() {
        for net in &i.addrs {
            out.push(lb::server::IfAddr {
                ifindex: index as u32 + 1,
                ifname: i.name.clone(),
                addr: net.addr(),
                prefix: net.prefix_len(),
            });
        }
    }
    out
}

fn start_server(
    world: &mut World,
    host: &str,
    s: ServerSettings,
) -> Result<(Server, String), Refusal> {
    if s.server.control.is_some() {
        return Err(Refusal::NotSimulated("registration (`--control`)".into()));
    }
    if s.server.forward == ForwardMode::Dsr {
        return Err(Refusal::NotSimulated(
            "`--forward dsr` (frames sent from a packet socket)".into(),
        ));
    }
    let links = world.interfaces(host).map_err(world_err("interfaces"))?;
    let local = addresses(&links);
    let iface = lb::server::vip_interface(&local, s.vip, s.server.interface.as_deref())
        .map_err(exit("lb server"))?;
    let mac = lb_core::MacAddr(links[iface.ifindex as usize - 1].mac.0);
    let mut specs = Vec::new();
    for b in &s.server.backends {
        lb::server::check_backend(&s, b, &iface, &local).map_err(exit("lb server"))?;
        specs.push(
            BackendSpec::new(b.name.clone(), b.addr, lb_core::MacAddr::default())
                .with_weight(b.weight),
        );
    }
    let cfg = lb::server::core_config(&s, iface.addr, mac);
    let framing = cfg.framing;
    let mut state = State::new(cfg)
        .map_err(|e| Refusal::Exit(format!("lb server: balancer configuration: {e}")))?;
    for spec in &specs {
        state
            .add_backend(spec.clone())
            .map_err(|e| Refusal::Exit(format!("lb server: backend {}: {e}", spec.name)))?;
    }
    let out = match s.server.forward {
        ForwardMode::UdpEncap => Some(
            world
                .udp_bind(host, SocketAddrV4::new(iface.addr, 0))
                .map_err(world_err("lb server: bind the encapsulation socket"))?,
        ),
        _ => None,
    };
    let mut installed = Installed::default();
    if s.server.forward == ForwardMode::DsrKernel {
        // Routes before the queue rules: a packet accepted with a mark must find its route.
        installed.sysctls = Some(world.sysctls(host).map_err(world_err("sysctls"))?.clone());
        installed.mark_routes = true;
        let vip32 = Ipv4Net::new(s.vip, 32).expect("a /32 is valid");
        for b in &specs {
            let mark = lb::server::backend_mark(b.addr);
            world
                .set_table_route(host, mark, Ipv4Net::DEFAULT, b.addr)
                .map_err(world_err("lb server: dsr-kernel route"))?;
            world
                .add_policy_rule(
                    host,
                    PolicyRule {
                        to: vip32,
                        fwmark: mark,
                        table: mark,
                    },
                )
                .map_err(world_err("lb server: dsr-kernel rule"))?;
        }
        let on = IfScope::Interface(iface.ifname.clone());
        for sysctl in [
            Sysctl::Forwarding(on.clone(), true),
            Sysctl::SendRedirects(IfScope::All, false),
            Sysctl::SendRedirects(on, false),
        ] {
            world
                .set_sysctl(host, sysctl)
                .map_err(world_err("lb server: forwarding sysctls"))?;
        }
    }
    if let Some(rules) = lb::server::fast_path_rules(&s, &iface.ifname) {
        // Before the queue rules, as `lb` installs it.
        world
            .fast_install(host, &rules.ifname, rules.vip, &rules.protocols)
            .map_err(world_err("lb server: the fast path"))?;
        installed.fast = Some(rules.table());
    }
    let intake = match s.server.intake {
        Intake::Nfqueue => {
            let rules = lb::server::queue_rules(&s).expect("an NFQUEUE intake has rules");
            // Bind the queues before the rules exist, so no packet meets an unbound queue.
            let mut queues = Vec::new();
            for q in s.server.queue..s.server.queue + s.server.queues {
                queues.push(world.nfq_bind(host, q).map_err(world_err("lb server"))?);
            }
            // Stale rules of a crashed run first, as `lb` removes them.
            let tag = rules.tag();
            world
                .iptables_remove_tagged(host, &tag)
                .map_err(world_err("lb server"))?;
            installed.rules_tag = Some(tag);
            for (table, chain, spec) in rules.specs() {
                let line = format!("-w -t {table} -I {chain} {}", spec.join(" "));
                world
                    .iptables(host, &line)
                    .map_err(world_err("lb server: install NFQUEUE rules"))?;
            }
            Source::Queues(queues)
        }
        Intake::Packet => {
            let tap = world
                .tap(host, TapPoint::Interface(iface.ifname.clone()))
                .map_err(world_err("lb server: packet socket"))?;
            Source::Packet { tap, seen: 0 }
        }
    };
    world
        .add_address(host, &iface.ifname, s.vip)
        .map_err(world_err("lb server: add the VIP"))?;
    installed.vip_on = Some(iface.ifname.clone());
    let ready = lb::server::ready_line(&s, &iface.ifname, &specs, None);
    Ok((
        Server {
            s,
            state,
            framing,
            intake,
            out,
            pending: Vec::new(),
            installed,
        },
        ready,
    ))
}

impl Server {
    /// Reads the queues or the packet socket; whether anything arrived.
    fn take(&mut self, world: &mut World) -> bool {
        let before = self.pending.len();
        match &mut self.intake {
            Source::Queues(queues) => {
                for q in queues.iter() {
                    for (id, bytes) in world.nfq_take(*q).unwrap_or_default() {
                        self.pending.push((Some((*q, id)), bytes));
                    }
                }
            }
            Source::Packet { tap, seen } => {
                let frames = world.captured(*tap).unwrap_or_default();
                let vip = self.s.vip.octets();
                for c in &frames[*seen..] {
                    // The socket's filter: incoming IPv4 to the VIP (PACKET_IGNORE_OUTGOING).
                    let f = &c.frame;
                    if c.direction == Direction::Incoming
                        && f.len() >= 34
                        && f[12..14] == [0x08, 0x00]
                        && f[30..34] == vip
                    {
                        self.pending.push((None, f.clone()));
                    }
                }
                *seen = frames.len();
            }
        }
        self.pending.len() > before
    }

    /// One receive batch: decide, send, give the verdicts in order.
    fn handle(&mut self, world: &mut World, host: &str) {
        let batch = std::mem::take(&mut self.pending);
        let packets: Vec<&[u8]> = batch.iter().map(|(_, b)| b.as_slice()).collect();
        let mut actions = Vec::new();
        decide_batch(&mut self.state, nanos(world.now()), &packets, &mut actions);
        let fwd = self.state.config().forward;
        // The fast path's map changes go before the verdicts unless one must follow them, as
        // `lb` sends them (`MapOp::after_verdict`).
        let ops: Vec<MapOp> = match self.installed.fast {
            Some(_) => actions
                .iter()
                .zip(&packets)
                .filter_map(|(a, p)| self.state.map_op(p, a))
                .collect(),
            None => Vec::new(),
        };
        let after = ops.iter().any(MapOp::after_verdict);
        if !after {
            apply(world, host, &ops);
        }
        for (action, (queued, packet)) in actions.into_iter().zip(&batch) {
            let mut mark = None;
            match action {
                Action::Forward { addr, .. } => match self.out {
                    Some(sock) => {
                        if let Ok(inner) = lb_core::emit::ip_packet(packet, self.framing) {
                            let mut inner = inner.to_vec();
                            if fwd.clamp_mss {
                                let _ = lb_core::emit::clamp_mss(&mut inner, max_mss(fwd.mtu));
                            }
                            let to = SocketAddrV4::new(addr, ENCAP_PORT);
                            if let Err(e) = world.udp_send_to(sock, to, &inner) {
                                tracing::debug!(%host, "lb server: send to {to}: {e}");
                            }
                        }
                    }
                    None => mark = Some(lb::server::backend_mark(addr)),
                },
                Action::FragNeeded { .. } => {
                    let mut icmp = Vec::new();
                    if lb_core::emit(&fwd, self.framing, &action, packet, &mut icmp).is_ok() {
                        let _ = world.raw_send(host, icmp);
                    }
                }
                Action::Drop(_) => {}
            }
            if let Some((q, id)) = queued {
                let _ = world.nfq_verdict(*q, *id, mark.is_some(), mark);
            }
        }
        if after {
            apply(world, host, &ops);
        }
    }

    fn stop(self, world: &mut World, host: &str, clean: bool, lines: &mut Vec<String>) {
        if let Source::Queues(queues) = &self.intake {
            for q in queues {
                let _ = world.nfq_unbind(*q);
            }
        }
        if let Some(sock) = self.out {
            let _ = world.udp_close(sock);
        }
        if !clean {
            return;
        }
        let i = &self.installed;
        if let Some(ifname) = &i.vip_on {
            if world.del_address(host, ifname, self.s.vip).unwrap_or(false) {
                lines.push(format!(
                    "INFO lb::server: removed the VIP vip={}",
                    self.s.vip
                ));
            }
        }
        if let Some(tag) = &i.rules_tag {
            let n = world.iptables_remove_tagged(host, tag).unwrap_or(0);
            lines.push(format!(
                "INFO lb::server: removed the NFQUEUE rules rules={n}"
            ));
        }
        if let Some(table) = &i.fast {
            let _ = world.fast_remove(host);
            lines.push(format!(
                "INFO lb::server: removed the fast path table={table}"
            ));
        }
        if i.mark_routes {
            let vip32 = Ipv4Net::new(self.s.vip, 32).expect("a /32 is valid");
            let _ = world.del_policy_rules(host, vip32);
            if let Some(saved) = &i.sysctls {
                restore_sysctls(world, host, saved);
            }
            lines.push(
                "INFO lb::server: removed the dsr-kernel rules and routes, restored the sysctls"
                    .into(),
            );
        }
    }
}

/// Carries the fast path's map changes into `host`'s table.
fn apply(world: &mut World, host: &str, ops: &[MapOp]) {
    for op in ops {
        let (key, backend) = match *op {
            MapOp::Add { key, addr, .. } => (key, Some(addr)),
            MapOp::Remove { key } => (key, None),
        };
        let k = (
            key.src,
            key.dst,
            key.protocol.number(),
            key.src_port,
            key.dst_port,
        );
        let _ = world.fast_set(host, k, backend);
    }
}

/// Writes back the forwarding and ARP sysctls `saved` held.
fn restore_sysctls(world: &mut World, host: &str, saved: &Sysctls) {
    let mut writes = vec![
        Sysctl::IpForward(saved.ip_forward),
        Sysctl::ArpIgnore(IfScope::All, saved.arp_ignore.all),
        Sysctl::ArpAnnounce(IfScope::All, saved.arp_announce.all),
    ];
    let names: Vec<String> = world
        .interfaces(host)
        .map(|l| l.into_iter().map(|i| i.name).collect())
        .unwrap_or_default();
    for name in names.into_iter().filter(|n| n != "lo") {
        let on = saved.forwarding.interfaces.get(&name).copied().unwrap_or(0);
        writes.push(Sysctl::Forwarding(IfScope::Interface(name), on == 1));
    }
    for w in writes {
        let _ = world.set_sysctl(host, w);
    }
}

const ARP_SYSCTLS: [Sysctl; 2] = [
    Sysctl::ArpIgnore(IfScope::All, 1),
    Sysctl::ArpAnnounce(IfScope::All, 2),
];

fn start_agent(
    world: &mut World,
    host: &str,
    s: AgentSettings,
) -> Result<(Agent, String), Refusal> {
    if s.server.is_some() {
        return Err(Refusal::NotSimulated("registration (`--server`)".into()));
    }
    let socket = world
        .udp_bind(host, SocketAddrV4::new(s.data_ip, s.port))
        .map_err(|e| Refusal::Exit(format!("lb agent: bind UDP {}:{}: {e}", s.data_ip, s.port)))?;
    let saved = world.sysctls(host).map_err(world_err("sysctls"))?.clone();
    for sysctl in ARP_SYSCTLS {
        world
            .set_sysctl(host, sysctl)
            .map_err(world_err("lb agent: ARP sysctls"))?;
    }
    let vip_added = world
        .add_address(host, "lo", s.vip)
        .map_err(world_err("lb agent: add the VIP to lo"))?;
    let ready = lb::agent::ready_line(&s, None);
    Ok((
        Agent {
            s,
            socket,
            pending: Vec::new(),
            saved,
            vip_added,
        },
        ready,
    ))
}

impl Agent {
    fn take(&mut self, world: &mut World) -> bool {
        let before = self.pending.len();
        while let Ok(Some(d)) = world.udp_recv(self.socket) {
            self.pending.push((d.from, d.payload));
        }
        self.pending.len() > before
    }

    /// Re-injects each inner packet from a balancer, to the VIP, through the raw socket.
    fn handle(&mut self, world: &mut World, host: &str) {
        for (from, p) in std::mem::take(&mut self.pending) {
            if lb_core::protocol::agent::parse_sanity(&p).is_some() {
                continue; // a registration's proof: no registration is simulated
            }
            if !self.s.balancers.contains(from.ip()) {
                tracing::debug!(%host, %from, "lb agent: not from a balancer");
                continue;
            }
            match lb_core::decap::check_inner(&p, self.s.vip) {
                Ok(()) => {
                    let _ = world.raw_send(host, p);
                }
                Err(why) => tracing::debug!(%host, "lb agent: not re-injected: {}", why.name()),
            }
        }
    }

    fn stop(self, world: &mut World, host: &str, clean: bool, lines: &mut Vec<String>) {
        let _ = world.udp_close(self.socket);
        if !clean {
            return;
        }
        if self.vip_added && world.del_address(host, "lo", self.s.vip).unwrap_or(false) {
            lines.push(format!(
                "INFO lb::agent: removed the VIP from lo vip={}",
                self.s.vip
            ));
        }
        restore_sysctls(world, host, &self.saved);
    }
}
