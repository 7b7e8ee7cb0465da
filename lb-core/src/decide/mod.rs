//! The balancer's state and its pure decision function [`decide`].

mod counters;
pub mod fastpath;

pub use counters::Counters;

use crate::action::{Action, DropReason, Framing, HEAD_LEN};
use crate::backend::{Backend, BackendCounters, BackendId, BackendSpec, BackendState};
use crate::forward::{ENCAP_OVERHEAD, ForwardConfig, ForwardMode};
use crate::select::conntable::{ConnState, ConnTable, Found, Timeouts};
use crate::select::hash::{HashKey, HashMode, flow_hash, siphash13};
use crate::select::maglev::{DEFAULT_TABLE_SIZE, Maglev, MaglevBackend, MaglevError};
use crate::time::Nanos;
use crate::wire::{
    ETHERTYPE_IPV4, EthernetFrame, FlowKey, Ipv4Packet, ParseError, Protocol, TcpFlags, parse_l4,
};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Everything [`State`] needs besides its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses served; packets to any other destination are dropped.
    pub vips: Vec<Ipv4Addr>,
    /// What packets start with.
    pub framing: Framing,
    /// Which fields choose a new flow's backend.
    pub hash_mode: HashMode,
    /// SipHash key: the same on every balancer that must agree.
    pub hash_key: HashKey,
    /// Maglev table size (prime).
    pub table_size: u32,
    /// Bound on tracked flows; 0 tracks none (pure Maglev, like Caplance).
    pub conn_capacity: usize,
    /// Idle timeouts of tracked flows.
    pub timeouts: Timeouts,
    /// How forwarded packets leave (decides the MTU check).
    pub forward: ForwardConfig,
    /// How long after a backend change a mid-connection TCP packet with no tracked flow is
    /// sent by the table before the change (zero: never). See [`State::previous_choice`].
    pub table_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            vips: Vec::new(),
            framing: Framing::default(),
            hash_mode: HashMode::default(),
            hash_key: HashKey::default(),
            table_size: DEFAULT_TABLE_SIZE,
            conn_capacity: 1 << 20,
            timeouts: Timeouts::default(),
            forward: ForwardConfig::default(),
            table_grace: Duration::from_secs(10),
        }
    }
}

/// Why a backend change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Another backend already has this name.
    #[error("a backend named {name:?} already exists")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// No backend has this id (never existed, or removed).
    #[error("no backend with id {id}")]
    UnknownId {
        /// The id.
        id: BackendId,
    },
    /// The new set of backends does not fit the Maglev table.
    #[error("cannot rebuild the Maglev table: {0}")]
    Maglev(#[from] MaglevError),
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `table_size` is unusable.
    #[error("table_size: {0}")]
    TableSize(#[from] MaglevError),
    /// `forward.mtu` leaves no room for the encapsulation of a minimal (68-byte) packet.
    #[error("forward.mtu {mtu} is below {min} (68 + {ENCAP_OVERHEAD} bytes of encapsulation)")]
    MtuTooSmall {
        /// The MTU given.
        mtu: u16,
        /// The smallest accepted.
        min: u16,
    },
}

#[derive(Debug, Clone)]
struct Slot {
    generation: u32,
    backend: Option<Backend>,
}

/// The balancer's whole state: backends, the Maglev table, tracked flows and counters.
#[derive(Debug, Clone)]
pub struct State {
    config: Config,
    slots: Vec<Slot>,
    free: Vec<u32>,
    maglev: Maglev,
    /// Maglev index → backend id.
    maglev_ids: Vec<BackendId>,
    conns: ConnTable,
    counters: Counters,
    /// The table before the last backend change made while serving, for mid-connection packets
    /// of flows no entry tracks (a dead balancer's flows, moved here).
    previous: Option<Previous>,
    /// A packet has been decided: backend changes from now on are made while serving.
    serving: bool,
}

/// The Maglev table before the last backend change, and since when it is the previous one
/// (stamped by the first packet decided after the change).
#[derive(Debug, Clone)]
struct Previous {
    maglev: Maglev,
    ids: Vec<BackendId>,
    since: Option<Nanos>,
}

impl State {
    /// A state with no backends.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let maglev = Maglev::empty(config.table_size)?;
        let min = 68 + ENCAP_OVERHEAD as u16;
        if config.forward.mode == ForwardMode::UdpEncap && config.forward.mtu < min {
            return Err(ConfigError::MtuTooSmall {
                mtu: config.forward.mtu,
                min,
            });
        }
        let conns = ConnTable::new(config.conn_capacity, config.timeouts);
        Ok(Self {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            maglev,
            maglev_ids: Vec::new(),
            conns,
            counters: Counters::default(),
            previous: None,
            serving: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Balancer-wide counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The connection table.
    pub fn conns(&self) -> &ConnTable {
        &self.conns
    }

    /// The current Maglev table (indices map through [`State::maglev_backend`]).
    pub fn maglev(&self) -> &Maglev {
        &self.maglev
    }

    /// The backend owning Maglev index `index`.
    pub fn maglev_backend(&self, index: u32) -> Option<BackendId> {
        self.maglev_ids.get(index as usize).copied()
    }

    /// The fingerprint of what decides a new flow's backend: SipHash-1-3, under the hash key,
    /// of the hash mode, the table size and every slot's backend address (`255.255.255.255`
    /// for an empty slot). Balancers that would send every new flow to the same backend have
    /// the same fingerprint; a different key, hash mode, table size, backend set, weight or
    /// address gives another (the key itself cannot be read from it).
    pub fn table_fingerprint(&self) -> u64 {
        let mut msg = Vec::with_capacity(5 + 4 * self.maglev.size() as usize);
        msg.push(match self.config.hash_mode {
            HashMode::FiveTuple => 5,
            HashMode::SrcIpPort => 2,
        });
        msg.extend_from_slice(&self.maglev.size().to_le_bytes());
        for slot in self.maglev.slots() {
            let addr = slot
                .and_then(|i| self.maglev_backend(i))
                .and_then(|id| self.backend(id))
                .map_or(Ipv4Addr::BROADCAST, |b| b.spec.addr);
            msg.extend_from_slice(&addr.octets());
        }
        siphash13(&self.config.hash_key, &msg)
    }

    /// Every backend, in id order.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> + '_ {
        self.slots.iter().filter_map(|s| s.backend.as_ref())
    }

    /// The backend with this id, if it still exists.
    pub fn backend(&self, id: BackendId) -> Option<&Backend> {
        live(&self.slots, id)
    }

    /// The backend with this name.
    pub fn backend_by_name(&self, name: &str) -> Option<&Backend> {
        self.backends().find(|b| b.spec.name == name)
    }

    /// Adds a backend and rebuilds the Maglev table; on error nothing changes.
    pub fn add_backend(&mut self, spec: BackendSpec) -> Result<BackendId, BackendError> {
        if self.backend_by_name(&spec.name).is_some() {
            return Err(BackendError::DuplicateName { name: spec.name });
        }
        let (slot, generation) = match self.free.last() {
            Some(&s) => (s, self.slots[s as usize].generation.wrapping_add(1)),
            None => (self.slots.len() as u32, 0),
        };
        let id = BackendId::from_raw(slot, generation);
        let backend = Backend {
            id,
            spec,
            counters: BackendCounters::default(),
        };
        let (maglev, ids) = self.build_maglev(Some(&backend), None)?;
        if self.free.pop().is_some() {
            self.slots[slot as usize] = Slot {
                generation,
                backend: Some(backend),
            };
        } else {
            self.slots.push(Slot {
                generation,
                backend: Some(backend),
            });
        }
        self.install(maglev, ids);
        tracing::debug!(%id, "backend added");
        Ok(id)
    }

    /// Removes a backend; its tracked flows move to others on their next packet.
    pub fn remove_backend(&mut self, id: BackendId) -> Result<Backend, BackendError> {
        live(&self.slots, id).ok_or(BackendError::UnknownId { id })?;
        let (maglev, ids) = self.build_maglev(None, Some(id))?;
        let slot = &mut self.slots[id.slot() as usize];
        let removed = slot.backend.take().ok_or(BackendError::UnknownId { id })?;
        self.free.push(id.slot());
        self.install(maglev, ids);
        tracing::debug!(%id, "backend removed");
        Ok(removed)
    }

    /// Replaces a backend's spec (name, address, MAC, weight, state) and rebuilds the table.
    pub fn update_backend(&mut self, id: BackendId, spec: BackendSpec) -> Result<(), BackendError> {
        let current = live(&self.slots, id).ok_or(BackendError::UnknownId { id })?;
        if self
            .backends()
            .any(|b| b.id != id && b.spec.name == spec.name)
        {
            return Err(BackendError::DuplicateName { name: spec.name });
        }
        let updated = Backend {
            id,
            spec,
            counters: current.counters,
        };
        let (maglev, ids) = self.build_maglev(Some(&updated), Some(id))?;
        self.slots[id.slot() as usize].backend = Some(updated);
        self.install(maglev, ids);
        Ok(())
    }

    /// Sets a backend's state (active, draining, down).
    pub fn set_backend_state(
        &mut self,
        id: BackendId,
        state: BackendState,
    ) -> Result<(), BackendError> {
        let b = live(&self.slots, id).ok_or(BackendError::UnknownId { id })?;
        self.update_backend(id, b.spec.clone().with_state(state))
    }

    /// Sets a backend's weight.
    pub fn set_backend_weight(&mut self, id: BackendId, weight: u32) -> Result<(), BackendError> {
        let b = live(&self.slots, id).ok_or(BackendError::UnknownId { id })?;
        self.update_backend(id, b.spec.clone().with_weight(weight))
    }

    /// Removes up to `budget` buckets' worth of expired flows; returns how many.
    pub fn expire(&mut self, now: Nanos, budget: usize) -> usize {
        self.conns.expire(now, budget)
    }

    /// The Maglev table for the current backends, with `extra` added/replacing and `without`
    /// left out. Only active backends take part: draining and down ones get no new flows.
    fn build_maglev(
        &self,
        extra: Option<&Backend>,
        without: Option<BackendId>,
    ) -> Result<(Maglev, Vec<BackendId>), MaglevError> {
        let mut members: Vec<&Backend> = self
            .backends()
            .filter(|b| Some(b.id) != without && extra.is_none_or(|e| e.id != b.id))
            .chain(extra)
            .filter(|b| b.spec.state == BackendState::Active)
            .collect();
        members.sort_by_key(|b| b.id);
        let entries: Vec<MaglevBackend<'_>> = members
            .iter()
            .map(|b| MaglevBackend {
                name: &b.spec.name,
                weight: b.spec.weight,
            })
            .collect();
        let maglev = Maglev::build(self.config.table_size, &entries)?;
        Ok((maglev, members.iter().map(|b| b.id).collect()))
    }

    fn install(&mut self, maglev: Maglev, ids: Vec<BackendId>) {
        let old = std::mem::replace(&mut self.maglev, maglev);
        let old_ids = std::mem::replace(&mut self.maglev_ids, ids);
        // Backends added at start, before any packet, are the table every flow was decided by:
        // there is no earlier one that a flow could have been decided by.
        self.previous = self.serving.then_some(Previous {
            maglev: old,
            ids: old_ids,
            since: None,
        });
    }
}

fn live(slots: &[Slot], id: BackendId) -> Option<&Backend> {
    let slot = slots.get(id.slot() as usize)?;
    slot.backend
        .as_ref()
        .filter(|_| slot.generation == id.generation())
}

fn live_mut(slots: &mut [Slot], id: BackendId) -> Option<&mut Backend> {
    let slot = slots.get_mut(id.slot() as usize)?;
    if slot.generation != id.generation() {
        return None;
    }
    slot.backend.as_mut()
}

/// Most packets [`decide_batch`] looks ahead over: the NFQUEUE receive batch.
pub const BATCH: usize = 64;

/// Decides what to do with one packet, updating flows and counters; no I/O, never panics.
///
/// Order of checks: parse the IP header → destination is a VIP → not a fragment, TCP or UDP,
/// transport header intact → MTU (UDP encapsulation, DF set) → tracked flow → Maglev.
pub fn decide(state: &mut State, now: Nanos, packet: &[u8]) -> Action {
    let action = match classify(&state.config, packet) {
        Ok(flow) => decide_flow(state, now, &flow),
        Err(action) => action,
    };
    state.count(action);
    action
}

/// Decides a batch of packets received together: `out` is cleared, then holds one action per
/// packet, in order, exactly those of calling [`decide`] on each packet in turn (with the same
/// effect on flows and counters).
///
/// What makes it faster: for each group of up to [`BATCH`] packets it first parses and hashes
/// every packet and asks the CPU to prefetch the connection-table bucket and Maglev slot each
/// flow will need, and only then decides them in order, so the cache misses of a whole batch
/// overlap instead of each decision waiting for its own. Allocates nothing once `out` has room.
pub fn decide_batch<P: AsRef<[u8]>>(
    state: &mut State,
    now: Nanos,
    packets: &[P],
    out: &mut Vec<Action>,
) {
    out.clear();
    out.reserve(packets.len());
    // Each group's entries are written before they are read: the initial value is never used.
    let mut flows = [Err(Action::Drop(DropReason::NoBackend)); BATCH];
    for group in packets.chunks(BATCH) {
        for (flow, packet) in flows.iter_mut().zip(group) {
            *flow = classify(&state.config, packet.as_ref());
            if let Ok(f) = flow {
                state.prefetch(f.hash);
            }
        }
        for flow in &flows[..group.len()] {
            let action = match flow {
                Ok(f) => decide_flow(state, now, f),
                Err(action) => *action,
            };
            state.count(action);
            out.push(action);
        }
    }
}

impl State {
    fn count(&mut self, action: Action) {
        match action {
            Action::Forward { .. } => self.counters.forwarded += 1,
            Action::FragNeeded { .. } => self.counters.frag_needed += 1,
            Action::Drop(reason) => self.counters.drops[reason.index()] += 1,
        }
    }

    /// Starts loading what deciding a flow with this five-tuple hash will read.
    #[inline]
    fn prefetch(&self, hash: u64) {
        if self.config.conn_capacity > 0 {
            self.conns.prefetch(hash);
        }
        // A new flow's Maglev pick reuses the hash in this mode; in others it is computed
        // only if the flow turns out to be untracked.
        if self.config.hash_mode == HashMode::FiveTuple {
            self.maglev.prefetch(hash);
        }
    }
}

/// A packet that passed every check needing no flow state: what the rest of the decision uses.
#[derive(Debug, Clone, Copy)]
struct Flow {
    key: FlowKey,
    /// The five-tuple hash (the connection table's key).
    hash: u64,
    /// TCP flags, `None` for UDP.
    flags: Option<TcpFlags>,
    ip_len: u16,
}

/// The checks of [`decide`] up to the tracked-flow lookup: parse, VIP, MTU; then the hash.
/// Reads only the configuration, so a batch can run it ahead of the decisions.
#[inline]
fn classify(config: &Config, packet: &[u8]) -> Result<Flow, Action> {
    // A cut packet (Ipv4Head) is parsed from a copy of its head whose IPv4 total length (and
    // UDP length) say where the copy ends; its real length is kept for the counters and the
    // MTU check.
    let mut head = [0u8; HEAD_LEN];
    let mut real_len = None;
    let l3 = match config.framing {
        Framing::Ipv4 => packet,
        Framing::Ipv4Head => match packet.get(2..4) {
            Some(t) if usize::from(u16::from_be_bytes([t[0], t[1]])) > packet.len() => {
                let n = packet.len().min(HEAD_LEN);
                head[..n].copy_from_slice(&packet[..n]);
                head[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                // A UDP header's length field promises the whole datagram too.
                let ihl = usize::from(head[0] & 0x0f) * 4;
                if head[9] == 17 && ihl + 8 <= n {
                    head[ihl + 4..ihl + 6].copy_from_slice(&((n - ihl) as u16).to_be_bytes());
                }
                real_len = Some(u16::from_be_bytes([t[0], t[1]]));
                &head[..n]
            }
            _ => packet,
        },
        Framing::Ethernet => match EthernetFrame::new_checked(packet) {
            Ok(frame) if frame.ethertype() == ETHERTYPE_IPV4 => {
                &packet[EthernetFrame::<&[u8]>::HEADER_LEN..]
            }
            Ok(_) => return Err(Action::Drop(ParseError::NotIpv4.into())),
            Err(e) => return Err(Action::Drop(e.into())),
        },
    };
    let ip = match Ipv4Packet::new_checked(l3) {
        Ok(ip) if ip.version() == 4 => ip,
        Ok(_) => return Err(Action::Drop(ParseError::NotIpv4.into())),
        Err(e) => return Err(Action::Drop(e.into())),
    };
    if !config.vips.contains(&ip.dst_addr()) {
        return Err(Action::Drop(DropReason::NotVip));
    }
    let mut parsed = parse_l4(&ip).map_err(|e| Action::Drop(e.into()))?;
    if let Some(len) = real_len {
        parsed.ip_len = len;
    }
    let fwd = &config.forward;
    if fwd.mode == ForwardMode::UdpEncap
        && parsed.dont_frag
        && usize::from(parsed.ip_len) + ENCAP_OVERHEAD > usize::from(fwd.mtu)
    {
        return Err(Action::FragNeeded {
            next_hop_mtu: fwd.mtu - ENCAP_OVERHEAD as u16,
        });
    }
    let key = parsed.key;
    Ok(Flow {
        key,
        hash: flow_hash(&config.hash_key, &key, HashMode::FiveTuple),
        flags: (key.protocol == Protocol::Tcp).then_some(parsed.tcp_flags),
        ip_len: parsed.ip_len,
    })
}

/// The rest of [`decide`]: the tracked flow's backend, or a Maglev pick (tracked if room).
#[inline]
fn decide_flow(state: &mut State, now: Nanos, flow: &Flow) -> Action {
    let Flow {
        key,
        hash,
        flags,
        ip_len,
    } = *flow;
    // The grace of the table before a backend change runs from the first packet after it.
    state.serving = true;
    if let Some(p) = &mut state.previous
        && p.since.is_none()
    {
        p.since = Some(now);
    }
    // A tracked flow keeps its backend unless that backend is gone or down, or a new
    // connection (SYN) reuses the 5-tuple of one that is closing. One probe of the table
    // serves the whole decision: the entry found is updated in place.
    let renew = if state.config.conn_capacity > 0 {
        match state.conns.find(hash, &key, now) {
            Found::Live(conn) => {
                let reopened =
                    conn.state == ConnState::TcpClosing && flags.is_some_and(|f| f.is_syn_only());
                if !reopened
                    && let Some(b) = live_mut(&mut state.slots, conn.backend)
                    && b.spec.state != BackendState::Down
                {
                    if let Some(f) = flags {
                        conn.state = conn.state.next(f);
                    }
                    conn.last_seen = now;
                    return forward(b, ip_len, false);
                }
                let Some(id) = pick(&state.config, &state.maglev, &state.maglev_ids, &key, hash)
                else {
                    return Action::Drop(DropReason::NoBackend);
                };
                conn.backend = id;
                conn.state = ConnState::initial(flags);
                conn.last_seen = now;
                if !reopened {
                    state.counters.flows_moved += 1;
                }
                return assign(state, id, ip_len);
            }
            Found::Expired(old) => Some(old),
            Found::Absent => None,
        }
    } else {
        None
    };
    // A new flow, or a tracked one whose entry expired (a new life for the same 5-tuple). A
    // mid-connection TCP packet right after a backend change goes where the earlier table
    // sends it: see `previous_choice`.
    let mid_connection = flags.is_some_and(|f| !f.syn());
    let earlier = match mid_connection {
        true => previous_choice(
            &state.config,
            &mut state.previous,
            &state.slots,
            now,
            &key,
            hash,
        ),
        false => None,
    };
    if earlier.is_some() {
        state.counters.previous_table += 1;
    }
    let Some(id) =
        earlier.or_else(|| pick(&state.config, &state.maglev, &state.maglev_ids, &key, hash))
    else {
        if let Some(old) = renew {
            old.remove();
        }
        return Action::Drop(DropReason::NoBackend);
    };
    // A RST for an untracked flow needs no entry: nothing follows it.
    let rst = flags.is_some_and(|f| f.rst());
    match renew {
        Some(old) if rst => {
            old.remove();
        }
        Some(old) => old.renew(id, ConnState::initial(flags), now),
        None if state.config.conn_capacity > 0 && !rst => {
            let initial = ConnState::initial(flags);
            if state.conns.insert(hash, key, id, initial, now).is_err() {
                state.counters.conn_table_full += 1;
            }
        }
        None => {}
    }
    assign(state, id, ip_len)
}

/// The backend the table before the last backend change gives a flow, if that change was
/// made less than `table_grace` ago and the backend still takes its flows (not removed,
/// not down). For a mid-connection TCP packet that no entry tracks: a flow a dead balancer
/// carried, moved here by the router while the backends changed. Such a flow began before
/// the change (most likely), on a balancer that had the same table, so the earlier table
/// names its backend; the current one may not (issue 17: 1/4 of such flows broke when a
/// fourth backend was added as one of three balancers died).
fn previous_choice(
    config: &Config,
    previous: &mut Option<Previous>,
    slots: &[Slot],
    now: Nanos,
    key: &FlowKey,
    hash: u64,
) -> Option<BackendId> {
    let grace = config.table_grace;
    let p = previous.as_mut()?;
    let since = p.since.unwrap_or(now);
    if grace.is_zero() || now.since(since) >= Nanos::from(grace) {
        *previous = None;
        return None;
    }
    let id = pick(config, &p.maglev, &p.ids, key, hash)?;
    live(slots, id)
        .filter(|b| b.spec.state != BackendState::Down)
        .map(|b| b.id)
}

/// The Maglev choice for a flow (`five_tuple_hash` is reused when the mode hashes the same).
/// Takes the fields it reads, so that an entry of the connection table can stay borrowed.
fn pick(
    config: &Config,
    maglev: &Maglev,
    maglev_ids: &[BackendId],
    key: &FlowKey,
    five_tuple_hash: u64,
) -> Option<BackendId> {
    let hash = match config.hash_mode {
        HashMode::FiveTuple => five_tuple_hash,
        mode => flow_hash(&config.hash_key, key, mode),
    };
    let index = maglev.lookup(hash)?;
    maglev_ids.get(index as usize).copied()
}

fn assign(state: &mut State, id: BackendId, ip_len: u16) -> Action {
    match live_mut(&mut state.slots, id) {
        Some(b) => {
            b.counters.flows += 1;
            forward(b, ip_len, true)
        }
        // The table only names live backends; this is a broken invariant, not bad input.
        None => Action::Drop(DropReason::NoBackend),
    }
}

fn forward(b: &mut Backend, ip_len: u16, new_flow: bool) -> Action {
    b.counters.packets += 1;
    b.counters.bytes += u64::from(ip_len);
    Action::Forward {
        backend: b.id,
        addr: b.spec.addr,
        mac: b.spec.mac,
        new_flow,
    }
}
