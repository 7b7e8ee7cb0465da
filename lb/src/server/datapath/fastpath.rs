//! One data-path thread's share of the fast path: the kernel map's elements it added (each
//! flow belongs to one queue, so to one thread), the changes of a batch, and the periodic
//! look at the kernel's counts ([`FastPath::sync`]) that keeps the connection table and the
//! map in step (see `lb_core::decide::fastpath`).

use crate::sys::flowmap::FlowMap;
use anyhow::Result;
use lb_core::decide::fastpath::{MAP_KEY_LEN, MapOp, flow_of_map_key, map_key};
use lb_core::{Nanos, State};
use std::collections::HashMap;

/// How often a thread reads the kernel's counts: the kernel's traffic renews a flow's entry
/// at most this late, far below any idle timeout.
pub const SYNC_EVERY: Nanos = Nanos::from_millis(1000);

/// Counters of one thread's fast path.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastStats {
    /// Elements added (flows handed to the kernel).
    pub added: u64,
    /// Elements removed (FIN/RST, idle, backend gone or down).
    pub removed: u64,
    /// Packets the kernel forwarded for this thread's flows (counted at each sync).
    pub kernel_packets: u64,
    /// Batches of changes the kernel refused (a full map, say): those flows stay in user space.
    pub refused: u64,
    /// Flows in the kernel now.
    pub flows: u64,
}

/// The map's elements this thread owns, with the kernel's (packets, bytes) at the last sync.
pub(crate) struct FastPath {
    map: FlowMap,
    owned: HashMap<[u8; MAP_KEY_LEN], (u64, u64)>,
    last_sync: Nanos,
    /// A control message changed backends: look at the map at once.
    sync_now: bool,
    /// The pending batch adds a UDP flow (see [`FastPath::flush_before_verdicts`]).
    udp_added: bool,
    pub(crate) stats: FastStats,
}

impl FastPath {
    pub(crate) fn new(map: FlowMap) -> FastPath {
        FastPath {
            map,
            owned: HashMap::new(),
            last_sync: Nanos::ZERO,
            sync_now: false,
            udp_added: false,
            stats: FastStats::default(),
        }
    }

    /// Queues what `op` asks of the map, unless the map has it already.
    pub(crate) fn queue(&mut self, op: MapOp) {
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
                self.udp_added |= key.protocol == lb_core::wire::Protocol::Udp;
                self.owned.insert(k, (0, 0));
                self.stats.added += 1;
            }
            MapOp::Remove { key } => {
                let k = map_key(&key);
                if self.owned.remove(&k).is_some() {
                    self.map.remove(&k);
                    self.stats.removed += 1;
                }
            }
        }
    }

    /// Sends the batch's changes before its verdicts, unless it adds a UDP flow: nothing
    /// follows a SYN before its answer, and the handshake's ACK would otherwise race the map's
    /// update to the queue; a datagram may be followed at once, and must leave before the
    /// kernel forwards the next ([`FastPath::flush`] after the verdicts).
    pub(crate) fn flush_before_verdicts(&mut self) {
        if !self.udp_added {
            self.flush();
        }
    }

    /// Sends the batch's changes.
    pub(crate) fn flush(&mut self) {
        self.udp_added = false;
        if let Err(e) = self.map.flush() {
            tracing::warn!("fast path: {e:#}");
        }
        self.stats.refused = self.map.failed_batches;
    }

    /// Backends changed: the next [`FastPath::sync_if_due`] looks at the map at once.
    pub(crate) fn backends_changed(&mut self) {
        self.sync_now = true;
    }

    /// Reads the kernel's counts if [`SYNC_EVERY`] has passed (or backends changed).
    pub(crate) fn sync_if_due(&mut self, state: &mut State, now: Nanos) {
        if !self.sync_now && now.since(self.last_sync) < SYNC_EVERY {
            return;
        }
        self.sync_now = false;
        self.last_sync = now;
        if let Err(e) = self.sync(state, now) {
            tracing::warn!("fast path: {e:#}");
        }
    }

    /// Renews the entries of flows the kernel forwarded since the last look (and counts their
    /// traffic for their backends); removes the elements of flows that ended or must be
    /// decided again; forgets elements the kernel does not have (a refused batch).
    fn sync(&mut self, state: &mut State, now: Nanos) -> Result<()> {
        let elements = self.map.dump()?;
        let owned_before = self.owned.len();
        let mut seen = 0;
        for e in &elements {
            let Some(prev) = self.owned.get_mut(&e.key) else {
                continue;
            };
            seen += 1;
            let packets = e.packets.saturating_sub(prev.0);
            let bytes = e.bytes.saturating_sub(prev.1);
            *prev = (e.packets, e.bytes);
            self.stats.kernel_packets += packets;
            let keep = flow_of_map_key(&e.key)
                .is_some_and(|flow| state.kernel_flow(&flow, e.addr, packets, bytes, now));
            if !keep {
                self.owned.remove(&e.key);
                self.map.remove(&e.key);
                self.stats.removed += 1;
            }
        }
        if seen < owned_before {
            let present: std::collections::HashSet<&[u8; MAP_KEY_LEN]> =
                elements.iter().map(|e| &e.key).collect();
            self.owned.retain(|k, _| present.contains(k));
        }
        self.stats.flows = self.owned.len() as u64;
        self.flush();
        Ok(())
    }
}
