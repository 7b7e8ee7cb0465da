//! One data-path thread's share of the fast path: the kernel map's elements it added (each
//! flow belongs to one queue, so to one thread), the changes of a batch, and the look at what
//! the kernel counted for a flow, due a little before its connection-table entry would expire
//! ([`FastPath::check_due`]): traffic since the last look renews the entry and counts for the
//! backend, no traffic ends the flow in the kernel (see `lb_core::decide::fastpath`).

use crate::sys::flowmap::{Event, FlowMap};
use lb_core::decide::fastpath::{MAP_KEY_LEN, MapOp, flow_of_map_key, map_key};
use lb_core::protocol::ctl::FastPathCounters;
use lb_core::wire::Protocol;
use lb_core::{Nanos, State};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::Ipv4Addr;

/// Queries of the kernel per call of [`FastPath::check_due`] (one `sendmsg`).
const CHECKS_PER_CALL: usize = 256;

/// Most flows [`FastPath::count_now`] asks about at once.
const COUNT_AT_ONCE: usize = 4096;

/// A flow this thread handed to the kernel.
#[derive(Debug, Clone, Copy)]
struct Owned {
    addr: Ipv4Addr,
    /// The kernel's counts at the last look.
    packets: u64,
    bytes: u64,
}

/// The map's elements this thread owns.
pub(crate) struct FastPath {
    map: FlowMap,
    owned: HashMap<[u8; MAP_KEY_LEN], Owned>,
    /// When to look at each flow (a flow may be listed more than once: the first look that
    /// finds it gone from `owned` is a no-op).
    checks: BinaryHeap<Reverse<(Nanos, [u8; MAP_KEY_LEN])>>,
    /// Flows asked about because their look was due (the others were asked for a count).
    due: HashSet<[u8; MAP_KEY_LEN]>,
    /// Keys added by the batch being built (taken back if the kernel refuses it).
    batch: Vec<[u8; MAP_KEY_LEN]>,
    /// The sequence numbers of the batch last sent, and its keys.
    sent: ((u32, u32), Vec<[u8; MAP_KEY_LEN]>),
    /// A control message changed backends: flows of backends now down or gone leave.
    backends_changed: bool,
    /// The pending batch holds a change that must follow the verdicts (`MapOp::after_verdict`).
    after_verdicts: bool,
    /// This thread's counters, but `flows`, which [`FastPath::counters`] takes from `owned`.
    stats: FastPathCounters,
}

impl FastPath {
    pub(crate) fn new(map: FlowMap) -> FastPath {
        FastPath {
            map,
            owned: HashMap::new(),
            checks: BinaryHeap::new(),
            due: HashSet::new(),
            batch: Vec::new(),
            sent: ((0, 0), Vec::new()),
            backends_changed: false,
            after_verdicts: false,
            stats: FastPathCounters::default(),
        }
    }

    /// This thread's counters, for `lb ctl` and the totals at stop.
    pub(crate) fn counters(&self) -> FastPathCounters {
        FastPathCounters {
            flows: self.owned.len() as u64,
            ..self.stats.clone()
        }
    }

    /// When to look at a flow of `protocol` next: at three quarters of its idle timeout, so
    /// that kernel traffic renews its entry before the connection table would expire it.
    fn next_check(state: &State, protocol: Protocol, now: Nanos) -> Nanos {
        let t = state.conns().timeouts();
        let timeout = match protocol {
            Protocol::Tcp => t.tcp_established,
            Protocol::Udp => t.udp,
        };
        Nanos(now.0 + timeout.0 / 4 * 3)
    }

    /// Queues what `op` asks of the map, unless the map has it already.
    pub(crate) fn queue(&mut self, state: &State, op: MapOp, now: Nanos) {
        match op {
            MapOp::Add { key, addr, replace } => {
                let k = map_key(&key);
                if self.owned.contains_key(&k) {
                    if !replace {
                        return;
                    }
                    self.map.remove(&k);
                }
                self.map.add(&k, addr);
                self.after_verdicts |= op.after_verdict();
                self.owned.insert(
                    k,
                    Owned {
                        addr,
                        packets: 0,
                        bytes: 0,
                    },
                );
                self.checks
                    .push(Reverse((Self::next_check(state, key.protocol, now), k)));
                self.batch.push(k);
                self.stats.added += 1;
            }
            MapOp::Remove { key } => self.remove(&map_key(&key)),
        }
    }

    fn remove(&mut self, k: &[u8; MAP_KEY_LEN]) {
        if self.owned.remove(k).is_some() {
            self.map.remove(k);
            self.stats.removed += 1;
        }
    }

    /// Sends the batch's changes before its verdicts, unless one must follow them
    /// (`MapOp::after_verdict`: a new UDP flow); [`FastPath::flush`] after the verdicts sends
    /// the rest.
    pub(crate) fn flush_before_verdicts(&mut self, state: &mut State, now: Nanos) {
        if !self.after_verdicts {
            self.flush(state, now);
        }
    }

    /// Sends the batch's changes, and reads the answer: a refused batch's flows stay in user
    /// space (and are forgotten here, so a later packet offers them again).
    pub(crate) fn flush(&mut self, state: &mut State, now: Nanos) {
        self.after_verdicts = false;
        match self.map.flush() {
            Ok(Some(seqs)) => {
                self.sent = (seqs, std::mem::take(&mut self.batch));
                // The kernel answered within the send.
                self.poll(state, now);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("fast path: {e:#}");
                for k in std::mem::take(&mut self.batch) {
                    self.owned.remove(&k);
                }
            }
        }
    }

    /// Backends changed: the next [`FastPath::check_due`] takes the flows of backends now down
    /// or gone out of the kernel, for user space to decide again.
    pub(crate) fn backends_changed(&mut self) {
        self.backends_changed = true;
    }

    /// Looks at the flows whose time has come (and, after a backend change, at every flow's
    /// backend); reads the kernel's answers.
    pub(crate) fn check_due(&mut self, state: &mut State, now: Nanos) {
        if std::mem::take(&mut self.backends_changed) {
            let gone: Vec<[u8; MAP_KEY_LEN]> = self
                .owned
                .iter()
                .filter(|(_, o)| !state.takes_flows(o.addr))
                .map(|(k, _)| *k)
                .collect();
            for k in &gone {
                self.remove(k);
            }
        }
        let mut asked = 0;
        while asked < CHECKS_PER_CALL
            && self.map.asking() < 4 * CHECKS_PER_CALL
            && let Some(Reverse((due, k))) = self.checks.peek().copied()
            && due <= now
        {
            self.checks.pop();
            if self.owned.contains_key(&k) && self.due.insert(k) {
                self.map.query(&k);
                asked += 1;
            }
        }
        if asked > 0
            && let Err(e) = self.map.send_queries()
        {
            tracing::warn!("fast path: {e:#}");
        }
        self.poll(state, now);
        // The removals the answers asked for.
        self.flush(state, now);
    }

    /// Brings the kernel's counts up to date for `lb ctl` when the thread owns at most
    /// [`COUNT_AT_ONCE`] flows (asking about more would hold up the queue): asks about every
    /// flow and waits (up to 50 ms) for the answers. Beyond that, the counts are those of each
    /// flow's last look.
    pub(crate) fn count_now(&mut self, state: &mut State, now: Nanos) {
        if self.owned.is_empty() || self.owned.len() > COUNT_AT_ONCE {
            return;
        }
        for k in self.owned.keys() {
            self.map.query(k);
        }
        if let Err(e) = self.map.send_queries() {
            tracing::warn!("fast path: {e:#}");
            return;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while self.map.asking() > 0 && std::time::Instant::now() < deadline {
            self.poll(state, now);
        }
    }

    /// Handles the kernel's answers: what the kernel forwarded since the last look renews the
    /// flow's entry and counts for its backend. At a flow's due look, an idle flow, or one
    /// whose entry or backend is gone, leaves the map, and a busy one is looked at again later.
    /// A refused batch's flows are forgotten.
    fn poll(&mut self, state: &mut State, now: Nanos) {
        let FastPath {
            map,
            owned,
            checks,
            due,
            sent,
            stats,
            ..
        } = self;
        let mut gone = Vec::new();
        map.poll(8, |event| match event {
            Event::Element(e) => {
                let Some(o) = owned.get_mut(&e.key) else {
                    return;
                };
                let packets = e.packets.saturating_sub(o.packets);
                let bytes = e.bytes.saturating_sub(o.bytes);
                (o.packets, o.bytes) = (e.packets, e.bytes);
                stats.kernel_packets += packets;
                let flow = flow_of_map_key(&e.key);
                let live = flow.is_some_and(|f| state.kernel_flow(&f, e.addr, packets, bytes, now));
                if !due.remove(&e.key) {
                    return;
                }
                match flow {
                    Some(f) if live && packets > 0 => {
                        checks.push(Reverse((Self::next_check(state, f.protocol, now), e.key)))
                    }
                    _ => gone.push(e.key),
                }
            }
            Event::Missing(k) => {
                due.remove(&k);
                owned.remove(&k);
            }
            Event::Refused(seq) => {
                stats.refused += 1;
                let ((first, last), keys) = sent;
                if (*first..=*last).contains(&seq) {
                    for k in keys.drain(..) {
                        owned.remove(&k);
                    }
                }
            }
        });
        for k in gone {
            self.remove(&k);
        }
    }
}
