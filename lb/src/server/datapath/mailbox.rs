//! The mailbox of each data-path thread of `lb server`: what the registrar sends it and what it answers.
//!
//! Each data-path thread owns its `lb_core::State` and takes no lock per packet: backend changes
//! arrive as [`PathMsg`]s on a channel, and an eventfd ([`Waker`]) makes the thread's `poll`
//! return so it applies them at once, between two batches. Counters go back the same way: the
//! control plane asks for a [`PathReport`] and the thread answers from its own state. Changes
//! are sent to every thread in the same order, so every thread builds the same Maglev table.

use crate::sys::wake::Waker;
use lb_core::registry::Update;
use lb_core::{Nanos, State};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// One message to a data-path thread.
pub enum PathMsg {
    /// Apply these backend changes, in order.
    Apply(Vec<Update>),
    /// Answer once every earlier message is applied.
    Sync(oneshot::Sender<()>),
    /// Answer with the thread's counters.
    Report(oneshot::Sender<PathReport>),
}

/// Traffic of one backend as one thread saw it.
#[derive(Debug, Clone, Default)]
pub struct BackendTraffic {
    /// Packets forwarded.
    pub packets: u64,
    /// IP bytes forwarded.
    pub bytes: u64,
    /// Flows assigned.
    pub flows: u64,
    /// Flows tracked now (the connection table's live entries).
    pub tracked: u64,
}

/// A thread's counters.
#[derive(Debug, Clone, Default)]
pub struct PathReport {
    /// Packets taken from the intake.
    pub received: u64,
    /// Packets sent to backends.
    pub sent: u64,
    /// Sends the kernel refused.
    pub send_failed: u64,
    /// ICMP "fragmentation needed" sent.
    pub icmp_frag_needed: u64,
    /// Flows tracked now.
    pub tracked: u64,
    /// Tracked flows moved off removed or down backends.
    pub flows_moved: u64,
    /// New flows not tracked because the table was full.
    pub conn_table_full: u64,
    /// Untracked mid-connection packets sent by the table before a recent backend change.
    pub previous_table: u64,
    /// By backend name.
    pub backends: BTreeMap<String, BackendTraffic>,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
    /// `--fast-path`: the flows handed to the kernel.
    pub fast_path: Option<lb_core::protocol::ctl::FastPathCounters>,
    /// The thread's [`State::table_fingerprint`] (every thread has the same table).
    pub table_fingerprint: Option<u64>,
}

impl PathReport {
    /// Adds another thread's report.
    pub fn add(&mut self, o: &PathReport) {
        self.received += o.received;
        self.sent += o.sent;
        self.send_failed += o.send_failed;
        self.icmp_frag_needed += o.icmp_frag_needed;
        self.tracked += o.tracked;
        self.flows_moved += o.flows_moved;
        self.conn_table_full += o.conn_table_full;
        self.previous_table += o.previous_table;
        if self.table_fingerprint.is_none() {
            self.table_fingerprint = o.table_fingerprint;
        } else if o.table_fingerprint.is_some() && o.table_fingerprint != self.table_fingerprint {
            tracing::error!("data paths disagree on the Maglev table: a backend change was lost");
        }
        if let Some(f) = &o.fast_path {
            let t = self.fast_path.get_or_insert_default();
            t.added += f.added;
            t.removed += f.removed;
            t.kernel_packets += f.kernel_packets;
            t.refused += f.refused;
            t.flows += f.flows;
        }
        for (n, t) in &o.backends {
            let e = self.backends.entry(n.clone()).or_default();
            e.packets += t.packets;
            e.bytes += t.bytes;
            e.flows += t.flows;
            e.tracked += t.tracked;
        }
        for (r, n) in &o.drops {
            *self.drops.entry(r.clone()).or_default() += n;
        }
    }
}

/// The control plane's end: send, then wake.
#[derive(Clone)]
pub struct PathHandle {
    tx: mpsc::Sender<PathMsg>,
    waker: Arc<Waker>,
}

impl PathHandle {
    /// Queues `m` and wakes the thread; false if the thread is gone.
    pub fn send(&self, m: PathMsg) -> bool {
        let ok = self.tx.send(m).is_ok();
        self.waker.wake();
        ok
    }
}

/// The data-path thread's end.
pub struct Mailbox {
    rx: mpsc::Receiver<PathMsg>,
    /// Raised when messages wait.
    pub waker: Arc<Waker>,
}

/// A connected pair.
pub fn channel() -> std::io::Result<(PathHandle, Mailbox)> {
    let (tx, rx) = mpsc::channel();
    let waker = Arc::new(Waker::new()?);
    Ok((
        PathHandle {
            tx,
            waker: Arc::clone(&waker),
        },
        Mailbox { rx, waker },
    ))
}

impl Mailbox {
    /// Takes every waiting message (the thread applies them with [`apply`] and answers).
    pub fn drain(&self) -> impl Iterator<Item = PathMsg> + '_ {
        self.waker.clear();
        self.rx.try_iter()
    }
}

/// Applies one backend change to a thread's state.
pub fn apply(state: &mut State, u: &Update) {
    let r = match u {
        Update::Upsert(spec) => match state.backend_by_name(&spec.name).map(|b| b.id) {
            Some(id) => state.update_backend(id, spec.clone()),
            None => state.add_backend(spec.clone()).map(|_| ()),
        },
        Update::Remove(name) => match state.backend_by_name(name).map(|b| b.id) {
            Some(id) => state.remove_backend(id).map(|_| ()),
            None => Ok(()),
        },
    };
    if let Err(e) = r {
        tracing::error!("apply backend change {u:?}: {e}");
    }
}

/// Per-backend traffic and tracked flows of `state` at `now`.
pub fn report(state: &State, now: Nanos) -> PathReport {
    let mut r = PathReport::default();
    let mut by_id = BTreeMap::new();
    for b in state.backends() {
        by_id.insert(b.id, b.spec.name.clone());
        r.backends.insert(
            b.spec.name.clone(),
            BackendTraffic {
                packets: b.counters.packets,
                bytes: b.counters.bytes,
                flows: b.counters.flows,
                tracked: 0,
            },
        );
    }
    let timeouts = *state.conns().timeouts();
    for c in state.conns().iter() {
        if c.is_expired(now, &timeouts) {
            continue;
        }
        r.tracked += 1;
        if let Some(t) = by_id.get(&c.backend).and_then(|n| r.backends.get_mut(n)) {
            t.tracked += 1;
        }
    }
    r.table_fingerprint = Some(state.table_fingerprint());
    let c = state.counters();
    r.flows_moved = c.flows_moved;
    r.conn_table_full = c.conn_table_full;
    r.previous_table = c.previous_table;
    for (reason, n) in c.nonzero_drops() {
        r.drops.insert(reason.name().to_string(), n);
    }
    r
}
