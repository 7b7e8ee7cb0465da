//! [`World`]: the simulated network built from a spec, its clock and queue, and the driver's calls.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::addr::MacAddr;
use crate::bridge::{Bridge, DEFAULT_AGEING};
use crate::error::SimError;
use crate::event::Event;
use crate::frame::{self, MTU, parse_eth};
use crate::hooks::{Holder, Nf};
use crate::host::{Host, LO};
use crate::kernel::KernelProfile;
use crate::link::{Attach, Link};
use crate::queue::EventQueue;
use crate::rng::SimRng;
use crate::spec::{Endpoint, NetSpec};
use crate::tap::{Captured, Direction, Tap, TapId, TapPoint};
use crate::time::SimTime;
use crate::udp::{Datagram, SocketId, SocketTable};

/// The kernel's default ephemeral port range (`ip_local_port_range`).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;

/// Settings of a world: the seed and the network's fixed delays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The seed of every random choice (tie-breaks, ephemeral ports, ICMP IP IDs).
    pub seed: u64,
    /// The time a frame takes from one end of a link to the other (default 0).
    pub link_latency: Duration,
    /// The bridges' FDB ageing time (default 300 s).
    pub bridge_ageing: Duration,
    /// Whose behaviour the hosts' kernels show where Linux changed it.
    pub kernel: KernelProfile,
    /// `Some(prefix)`: explore orderings. At each choice point (simultaneous events of one
    /// host or bridge) the alternative `prefix[i]` is taken (0, the seed's order, past its
    /// end), and [`World::choices`] records the points; `None`: the seed's order throughout.
    pub ordering: Option<Vec<u32>>,
}

/// One choice point of an explored run: how many distinct events of one host or bridge were
/// due at the same instant, and which of them (in the seed's order) went first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The number of alternatives (at least 2).
    pub alternatives: u32,
    /// The one taken.
    pub chosen: u32,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 0,
            link_latency: Duration::ZERO,
            bridge_ageing: DEFAULT_AGEING,
            kernel: KernelProfile::default(),
            ordering: None,
        }
    }
}

impl SimConfig {
    /// The default settings with `seed`.
    pub fn with_seed(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            ..SimConfig::default()
        }
    }
}

/// One impaired direction of a link: the lab's engine and `tbf`, in virtual time.
#[derive(Debug)]
struct Impaired {
    decider: Option<crate::impair::Decider>,
    shaper: Option<crate::impair::Shaper>,
}

impl Impaired {
    fn new(p: &crate::impair::Impairment, stream: u64) -> Impaired {
        Impaired {
            decider: p
                .needs_engine()
                .then(|| crate::impair::Decider::new(p, stream)),
            shaper: p.rate.map(crate::impair::Shaper::new),
        }
    }

    /// A frame of `len` bytes sent at `now`: `None` when it is lost, else how much later it
    /// arrives and in how many copies.
    fn fate(&mut self, now: SimTime, len: usize) -> Option<(Duration, usize)> {
        let mut wait = match self.shaper.as_mut() {
            Some(s) => s.admit(now.as_nanos(), len)?,
            None => Duration::ZERO,
        };
        let mut copies = 1;
        if let Some(d) = self.decider.as_mut() {
            match d.fate() {
                crate::impair::Fate::Drop => return None,
                crate::impair::Fate::Deliver { after, twice } => {
                    wait += after;
                    copies += usize::from(twice);
                }
            }
        }
        Some((wait, copies))
    }
}

/// A simulated network: hosts, bridges, links, sockets and taps in virtual time.
#[derive(Debug)]
pub struct World {
    pub(crate) now: SimTime,
    pub(crate) queue: EventQueue<Event>,
    pub(crate) rng: SimRng,
    pub(crate) hosts: Vec<Host>,
    pub(crate) bridges: Vec<Bridge>,
    links: Vec<Link>,
    wiring: BTreeMap<Attach, usize>,
    /// Frames on their way to each link end, in arrival-time order.
    in_flight: BTreeMap<Attach, VecDeque<(SimTime, Vec<u8>)>>,
    /// Each link's impairment state per direction (`[a→b, b→a]`), by link index.
    impaired: BTreeMap<usize, [Option<Impaired>; 2]>,
    pub(crate) sockets: SocketTable,
    taps: Vec<Tap>,
    config: SimConfig,
    /// Each host's netfilter: rules, conntrack, queues (by host index).
    pub(crate) nf: Vec<Nf>,
    pub(crate) holders: Vec<Holder>,
    pub(crate) tcp: crate::tcp::TcpTable,
    /// Packets on each host's loopback, in the order they were sent (by host index).
    pub(crate) loopback: BTreeMap<usize, VecDeque<Vec<u8>>>,
    /// The choice points met so far, when exploring.
    choices: Vec<Choice>,
    /// Packets parked between two hooks, when exploring, by number.
    pub(crate) parked: BTreeMap<u64, (crate::hooks::Stage, crate::hooks::Skb)>,
    pub(crate) next_parked: u64,
    /// The fast path's ingress table of each host that has one (by host index).
    pub(crate) fast: BTreeMap<usize, crate::flowmap::FastTable>,
}

impl World {
    /// Builds the network `spec` describes, at time zero with nothing queued.
    pub fn new(spec: &NetSpec, config: SimConfig) -> Result<World, SimError> {
        spec.validate()?;
        let hosts: Vec<Host> = spec.hosts().iter().map(Host::from_spec).collect();
        let nf = spec
            .hosts()
            .iter()
            .map(Nf::new)
            .collect::<Result<Vec<Nf>, _>>()?;
        let bridges: Vec<Bridge> = spec
            .bridges()
            .iter()
            .map(|b| Bridge::new(&b.name, b.ports.clone(), config.bridge_ageing))
            .collect();
        let mut world = World {
            now: SimTime::ZERO,
            queue: EventQueue::new(0),
            rng: SimRng::new(0),
            hosts,
            bridges,
            links: Vec::new(),
            wiring: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            impaired: BTreeMap::new(),
            sockets: SocketTable::default(),
            taps: Vec::new(),
            config,
            nf,
            holders: Vec::new(),
            tcp: Default::default(),
            loopback: BTreeMap::new(),
            choices: Vec::new(),
            parked: BTreeMap::new(),
            next_parked: 0,
            fast: BTreeMap::new(),
        };
        let mut root = SimRng::new(world.config.seed);
        world.queue = EventQueue::new(root.next_u64());
        world.rng = root.split();
        for l in spec.links() {
            let link = Link {
                a: world.attach(&l.a)?,
                b: world.attach(&l.b)?,
            };
            if l.impair.iter().any(Option::is_some) {
                let state = l
                    .impair
                    .clone()
                    .map(|w| w.map(|(p, s)| Impaired::new(&p, s)));
                world.impaired.insert(world.links.len(), state);
            }
            world.wiring.insert(link.a, world.links.len());
            world.wiring.insert(link.b, world.links.len());
            world.links.push(link);
        }
        Ok(world)
    }

    /// Changes the impairment of link `link` in the way `way` from now on (a fresh decider on
    /// `stream`, as the lab starts a fresh engine).
    pub fn impair_link(
        &mut self,
        link: usize,
        way: crate::impair::Way,
        imp: &crate::impair::Impairment,
        stream: u64,
    ) -> Result<(), SimError> {
        if link >= self.links.len() {
            return Err(SimError::NoSuchLink { link });
        }
        let slot = usize::from(way == crate::impair::Way::Reverse);
        let state = self.impaired.entry(link).or_insert([None, None]);
        state[slot] = (!imp.is_empty()).then(|| Impaired::new(imp, stream));
        Ok(())
    }

    /// Where an endpoint of the (validated) spec is in this world.
    fn attach(&self, end: &Endpoint) -> Result<Attach, SimError> {
        match end {
            Endpoint::Host { host, interface } => {
                let h = self.host_index(host)?;
                let iface = self.hosts[h].iface_index(interface).ok_or_else(|| {
                    SimError::UnknownInterface {
                        host: host.clone(),
                        interface: interface.clone(),
                    }
                })?;
                Ok(Attach::Host { host: h, iface })
            }
            Endpoint::Bridge { bridge, port } => {
                let unknown = || {
                    SimError::Spec(crate::spec::SpecError::UnknownBridge {
                        bridge: bridge.clone(),
                    })
                };
                let b = self
                    .bridges
                    .iter()
                    .position(|b| b.name() == bridge)
                    .ok_or_else(unknown)?;
                let port = self.bridges[b]
                    .ports()
                    .iter()
                    .position(|p| p == port)
                    .ok_or_else(unknown)?;
                Ok(Attach::Bridge { bridge: b, port })
            }
        }
    }

    pub(crate) fn host_index(&self, host: &str) -> Result<usize, SimError> {
        self.hosts
            .iter()
            .position(|h| h.name == host)
            .ok_or_else(|| SimError::UnknownHost {
                host: host.to_string(),
            })
    }

    /// The current virtual time.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// The settings the world was built with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The number of events waiting.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// When the next event is due, if any is waiting: a driver that reacts to each event (a
    /// program woken at once) steps up to a deadline with it.
    pub fn next_event_at(&self) -> Option<SimTime> {
        self.queue.peek_time()
    }

    /// Puts a wake-up at `at` (not before now) in the queue: a driver stepping event by
    /// event gets control back at that instant, e.g. when a program's work is due.
    pub fn wake_at(&mut self, at: SimTime) {
        self.queue.push(at.max(self.now), Event::Wake);
    }

    /// The choice points met so far in an explored run ([`SimConfig::ordering`]).
    pub fn choices(&self) -> &[Choice] {
        &self.choices
    }

    /// Processes the next event (advancing the clock to it); `false` if none was waiting.
    pub fn step(&mut self) -> bool {
        let next = match &self.config.ordering {
            None => self.queue.pop(),
            Some(prefix) => {
                let (tcp, holders, choices) = (&self.tcp, &self.holders, &mut self.choices);
                self.queue.pop_with(|events| {
                    // Who an event happens to: events of different hosts or bridges at one
                    // instant commute; those of one are the orderings worth trying.
                    let who = |e: &Event| match e {
                        Event::Arrive {
                            at: Attach::Host { host, .. },
                        }
                        | Event::NeighTimer { host, .. }
                        | Event::Loopback { host }
                        | Event::Resume { host, .. } => Some((0, *host)),
                        Event::Arrive {
                            at: Attach::Bridge { bridge, .. },
                        } => Some((1, *bridge)),
                        Event::Tcp { conn, .. } => tcp.conns.get(*conn).map(|t| (0, t.host)),
                        Event::HolderRelease { holder } => {
                            holders.get(*holder).map(|h| (0, h.host))
                        }
                        Event::Wake => None,
                    };
                    let Some(first) = who(events[0]) else {
                        return 0;
                    };
                    // A packet parked between hooks may be overtaken by anything due now (a
                    // bridge delivering the packet that then races it on another CPU); any
                    // other event only by events of its own host or bridge (the rest
                    // commute). Distinct events only: two arrivals at one link end are one
                    // FIFO.
                    let preemptible = matches!(events[0], Event::Resume { .. });
                    let mut alternatives: Vec<usize> = Vec::new();
                    for (i, e) in events.iter().enumerate() {
                        let related = match who(e) {
                            Some(w) => preemptible || w == first,
                            None => false,
                        };
                        if related && !alternatives.iter().any(|&j| events[j] == *e) {
                            alternatives.push(i);
                        }
                    }
                    if alternatives.len() < 2 {
                        return 0;
                    }
                    let n = alternatives.len() as u32;
                    let chosen = prefix.get(choices.len()).copied().unwrap_or(0).min(n - 1);
                    choices.push(Choice {
                        alternatives: n,
                        chosen,
                    });
                    alternatives[chosen as usize]
                })
            }
        };
        let Some((at, event)) = next else {
            return false;
        };
        self.now = self.now.max(at);
        self.dispatch(event);
        true
    }

    /// Processes every event due at or before `t`, then sets the clock to `t` (if later).
    pub fn run_until(&mut self, t: SimTime) {
        while self.queue.peek_time().is_some_and(|at| at <= t) {
            self.step();
        }
        self.now = self.now.max(t);
    }

    /// [`World::run_until`] `d` from now.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now.saturating_add(d));
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Arrive { at } => {
                if let Some((_, frame)) = self.in_flight.get_mut(&at).and_then(VecDeque::pop_front)
                {
                    self.arrive(at, frame);
                }
            }
            Event::NeighTimer {
                host,
                iface,
                ip,
                generation,
            } => self.neigh_timer(host, iface, ip, generation),
            Event::HolderRelease { holder } => self.holder_release(holder),
            Event::Loopback { host } => self.loopback_arrive(host),
            Event::Resume { host, id } => {
                if let Some((stage, skb)) = self.parked.remove(&id) {
                    self.after_hook_now(host, stage, skb);
                }
            }
            Event::Wake => {}
            Event::Tcp {
                conn,
                timer,
                generation,
            } => self.tcp_timer(conn, timer, generation),
        }
    }

    fn arrive(&mut self, at: Attach, frame: Vec<u8>) {
        match at {
            Attach::Host { host, iface } => {
                self.record(host, iface, Direction::Incoming, &frame);
                self.host_input(host, iface, &frame);
            }
            Attach::Bridge { bridge, port } => {
                let Some(eth) = parse_eth(&frame) else {
                    return;
                };
                let (src, dst) = (eth.src, eth.dst);
                let now = self.now;
                let Some(br) = self.bridges.get_mut(bridge) else {
                    return;
                };
                for out in br.forward(port, src, dst, now) {
                    self.transmit(Attach::Bridge { bridge, port: out }, frame.clone());
                }
            }
        }
    }

    /// Puts `frame` on the link at `from`; it arrives at the other end after the latency.
    /// A host interface's taps record it as outgoing first.
    pub(crate) fn transmit(&mut self, from: Attach, frame: Vec<u8>) {
        if let Attach::Host { host, iface } = from {
            self.record(host, iface, Direction::Outgoing, &frame);
        }
        let Some((link, peer)) = self
            .wiring
            .get(&from)
            .and_then(|l| Some((*l, self.links[*l].peer(from)?)))
        else {
            return;
        };
        let way = usize::from(self.links[link].a != from);
        let mut at = self.now.saturating_add(self.config.link_latency);
        let mut copies = 1;
        // Only IPv4 crosses the lab's impairment engine (its rules are iptables'): ARP passes.
        let ip = frame.get(12..14) == Some(&[0x08, 0x00]);
        if let Some(state) = self.impaired.get_mut(&link).and_then(|s| s[way].as_mut())
            && ip
        {
            match state.fate(self.now, frame.len()) {
                None => return,
                Some((after, n)) => {
                    at = at.saturating_add(after);
                    copies = n;
                }
            }
        }
        for copy in 0..copies {
            // The lab's engine sends a copy again from the sending end: a capture there sees
            // it leave too.
            if let (1, Attach::Host { host, iface }) = (copy, from) {
                self.record(host, iface, Direction::Outgoing, &frame);
            }
            let queue = self.in_flight.entry(peer).or_default();
            let pos = queue.partition_point(|(t, _)| *t <= at);
            queue.insert(pos, (at, frame.clone()));
            self.queue.push(at, Event::Arrive { at: peer });
        }
    }

    /// Schedules `event` now, ahead of the events already due now.
    pub(crate) fn schedule_first(&mut self, event: Event) {
        self.queue.push_first(self.now, event);
    }

    /// Schedules `event` `after` from now.
    pub(crate) fn schedule(&mut self, after: Duration, event: Event) {
        let at = self.now.saturating_add(after);
        self.queue.push(at, event);
    }

    pub(crate) fn record(&mut self, host: usize, iface: usize, direction: Direction, frame: &[u8]) {
        let now = self.now;
        let name = if iface == LO {
            "lo".to_string()
        } else {
            let Some(name) = self
                .hosts
                .get(host)
                .and_then(|h| h.ifaces.get(iface))
                .map(|i| i.name.clone())
            else {
                return;
            };
            name
        };
        for tap in self.taps.iter_mut().filter(|t| t.sees(host, iface)) {
            tap.frames.push(Captured {
                time: now,
                interface: name.clone(),
                direction,
                frame: frame.to_vec(),
            });
        }
    }

    /// Starts recording frames at `point` of `host` from now on.
    pub fn tap(&mut self, host: &str, point: TapPoint) -> Result<TapId, SimError> {
        let h = self.host_index(host)?;
        let iface = match point {
            TapPoint::Any => None,
            TapPoint::Interface(name) if name == "lo" => Some(LO),
            TapPoint::Interface(name) => Some(self.hosts[h].iface_index(&name).ok_or(
                SimError::UnknownInterface {
                    host: host.to_string(),
                    interface: name,
                },
            )?),
        };
        self.taps.push(Tap {
            host: h,
            iface,
            frames: Vec::new(),
        });
        Ok(TapId(self.taps.len() - 1))
    }

    /// The frames `tap` recorded, in the order they crossed.
    pub fn captured(&self, tap: TapId) -> Result<&[Captured], SimError> {
        self.taps
            .get(tap.0)
            .map(|t| t.frames.as_slice())
            .ok_or(SimError::UnknownTap { tap: tap.0 })
    }

    /// The MAC `host`'s ARP cache holds for `ip` (on any interface).
    pub fn arp_entry(&self, host: &str, ip: Ipv4Addr) -> Result<Option<MacAddr>, SimError> {
        let h = &self.hosts[self.host_index(host)?];
        Ok((0..h.ifaces.len()).find_map(|i| h.neigh.lookup(i, ip)))
    }

    /// Opens a UDP socket on `host` bound to `local` (port 0 picks a free ephemeral port with
    /// the seeded generator; address 0.0.0.0 receives on every local address).
    pub fn udp_bind(&mut self, host: &str, local: SocketAddrV4) -> Result<SocketId, SimError> {
        let h = self.host_index(host)?;
        if !local.ip().is_unspecified() && !self.hosts[h].is_local(*local.ip()) {
            return Err(SimError::AddressNotAvailable {
                host: host.to_string(),
                addr: local,
            });
        }
        let local = if local.port() == 0 {
            let span = u64::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
            let start = self.rng.below(span);
            let free = (0..span)
                .filter_map(|k| u16::try_from((start + k) % span).ok())
                .map(|off| SocketAddrV4::new(*local.ip(), EPHEMERAL.start() + off))
                .find(|a| !self.sockets.conflicts(h, *a));
            free.ok_or(SimError::NoFreePort {
                host: host.to_string(),
            })?
        } else if self.sockets.conflicts(h, local) {
            return Err(SimError::AddressInUse {
                host: host.to_string(),
                addr: local,
            });
        } else {
            local
        };
        Ok(self.sockets.insert(h, local))
    }

    /// Whether a UDP socket of `host` is bound to `local`'s port (0.0.0.0 on either side
    /// matches any address).
    pub fn udp_is_bound(&self, host: &str, local: SocketAddrV4) -> Result<bool, SimError> {
        let h = self.host_index(host)?;
        Ok(self.sockets.conflicts(h, local))
    }

    /// The address and port `socket` is bound to.
    pub fn udp_local_addr(&self, socket: SocketId) -> Result<SocketAddrV4, SimError> {
        self.sockets
            .get(socket)
            .map(|s| s.local)
            .ok_or(SimError::UnknownSocket { socket: socket.0 })
    }

    /// Closes `socket`; datagrams still queued on it are dropped.
    pub fn udp_close(&mut self, socket: SocketId) -> Result<(), SimError> {
        if self.sockets.close(socket) {
            Ok(())
        } else {
            Err(SimError::UnknownSocket { socket: socket.0 })
        }
    }

    /// Takes the oldest datagram queued on `socket`.
    pub fn udp_recv(&mut self, socket: SocketId) -> Result<Option<Datagram>, SimError> {
        if self.sockets.get(socket).is_none() {
            return Err(SimError::UnknownSocket { socket: socket.0 });
        }
        Ok(self.sockets.recv(socket))
    }

    /// Sends `payload` from `socket` to `dst` now: routed, resolved and put on the wire as the
    /// kernel would, the frames arriving as the world runs.
    pub fn udp_send_to(
        &mut self,
        socket: SocketId,
        dst: SocketAddrV4,
        payload: &[u8],
    ) -> Result<(), SimError> {
        let s = self
            .sockets
            .get(socket)
            .ok_or(SimError::UnknownSocket { socket: socket.0 })?;
        let (h, local) = (s.host, s.local);
        let host = &self.hosts[h];
        let not_modelled = |what| SimError::NotModelled {
            host: host.name.clone(),
            dst,
            what,
        };
        if host.is_broadcast(*dst.ip()) || dst.ip().is_multicast() {
            return Err(not_modelled("broadcast and multicast"));
        }
        if 20 + 8 + payload.len() > MTU {
            return Err(not_modelled(
                "fragmentation (the datagram exceeds the 1500-byte MTU)",
            ));
        }
        // To itself (through lo) from the address it is sent to; else by the route.
        let routed = if host.is_local(*dst.ip()) {
            *dst.ip()
        } else {
            let route = host.routes.lookup(*dst.ip()).ok_or(SimError::NoRoute {
                host: host.name.clone(),
                dst: *dst.ip(),
            })?;
            route.src
        };
        let src = if local.ip().is_unspecified() {
            routed
        } else {
            *local.ip()
        };
        let packet = frame::udp_packet((src, local.port()), (*dst.ip(), dst.port()), payload)
            .ok_or_else(|| not_modelled("a payload that does not fit one IPv4 packet"))?;
        self.ip_output(h, *dst.ip(), src, packet);
        Ok(())
    }
}
