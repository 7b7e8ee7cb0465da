//! A bounded connection table: 5-tuple → backend, with idle timeouts that know TCP's FIN/RST.
//!
//! Lookups and inserts are O(1) (a SwissTable from `hashbrown`, keyed by the caller's flow
//! hash). [`ConnTable::find`] tells a live entry from an expired one in one probe, so `decide`
//! renews an expired entry in place instead of removing it and inserting anew (a second probe
//! and a tombstone per new life of a 5-tuple). Expiry is lazy and incremental: a lookup that
//! finds an expired entry removes it, and
//! [`ConnTable::expire`] sweeps a bounded number of buckets from a moving hand, so no call does
//! unbounded work; the adapter calls it regularly (e.g. a few thousand buckets per tick).
//!
//! **When full, new flows are refused, not evicted**, and the caller falls back to Maglev for
//! them (counted as `conn_table_full`). Why: the entries that matter are those of long-lived
//! flows across backend changes; evicting the oldest-idle entry would let a flood of new
//! (possibly spoofed) flows push out exactly those, while a refused new flow still gets the
//! same backend from Maglev as long as the backend set does not change during its life. Before
//! refusing, an insert sweeps a few buckets to reclaim expired entries.
//!
//! Direct server return means the balancer sees only the client's half of a TCP connection:
//! the client's FIN or a RST moves an entry to the shorter `tcp_closing` idle timeout (packets
//! still in flight keep reaching the same backend until then); the server's FIN is never seen.

use crate::core::BackendId;
use crate::time::Nanos;
use crate::wire::{FlowKey, TcpFlags};
use hashbrown::HashTable;
use hashbrown::hash_table::OccupiedEntry;
use serde::{Deserialize, Serialize};

/// Buckets an insert into a full table sweeps looking for expired entries.
const RECLAIM_SWEEP: usize = 32;

/// Idle timeouts per connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// A TCP flow with no FIN or RST seen yet.
    pub tcp_established: Nanos,
    /// A TCP flow after the client's FIN or a RST.
    pub tcp_closing: Nanos,
    /// A UDP flow.
    pub udp: Nanos,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_established: Nanos::from_secs(300),
            tcp_closing: Nanos::from_secs(30),
            udp: Nanos::from_secs(30),
        }
    }
}

/// The life stage of a tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// TCP, open (a SYN or any other segment seen, no FIN/RST).
    TcpEstablished,
    /// TCP after the client's FIN or a RST.
    TcpClosing,
    /// UDP.
    Udp,
}

impl ConnState {
    /// The state of a new entry for a TCP segment with `flags`, or UDP when `flags` is `None`.
    pub fn initial(flags: Option<TcpFlags>) -> ConnState {
        match flags {
            None => ConnState::Udp,
            Some(f) if f.fin() || f.rst() => ConnState::TcpClosing,
            Some(_) => ConnState::TcpEstablished,
        }
    }

    /// The state after one more segment with `flags` (UDP is unchanged).
    pub fn next(self, flags: TcpFlags) -> ConnState {
        match self {
            ConnState::TcpEstablished if flags.fin() || flags.rst() => ConnState::TcpClosing,
            s => s,
        }
    }
}

/// One tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    /// The flow.
    pub key: FlowKey,
    /// Where it goes.
    pub backend: BackendId,
    /// Its life stage.
    pub state: ConnState,
    /// When its last packet was seen.
    pub last_seen: Nanos,
    hash: u64,
}

impl Conn {
    /// True if idle for longer than its state's timeout at `now`.
    pub fn is_expired(&self, now: Nanos, timeouts: &Timeouts) -> bool {
        now.since(self.last_seen) > timeout_of(self.state, timeouts)
    }
}

fn timeout_of(state: ConnState, t: &Timeouts) -> Nanos {
    match state {
        ConnState::TcpEstablished => t.tcp_established,
        ConnState::TcpClosing => t.tcp_closing,
        ConnState::Udp => t.udp,
    }
}

/// What [`ConnTable::find`] found for a flow.
#[derive(Debug)]
pub enum Found<'a> {
    /// Its live entry.
    Live(&'a mut Conn),
    /// Its entry, expired: [`Expired::renew`] makes it the entry of the flow's new life in
    /// place (no second probe, no tombstone), or [`Expired::remove`] drops it.
    Expired(Expired<'a>),
    /// No entry.
    Absent,
}

/// An expired entry found by [`ConnTable::find`]; see [`Found::Expired`].
#[derive(Debug)]
pub struct Expired<'a>(OccupiedEntry<'a, Conn>);

impl Expired<'_> {
    /// Reuses the entry for the same flow, now going to `backend` in `state`, seen at `now`.
    pub fn renew(self, backend: BackendId, state: ConnState, now: Nanos) {
        let conn = self.0.into_mut();
        conn.backend = backend;
        conn.state = state;
        conn.last_seen = now;
    }

    /// Removes the entry, returning it.
    pub fn remove(self) -> Conn {
        self.0.remove().0
    }
}

/// The table refused a new entry: it holds `capacity` live entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection table full ({capacity} entries)")]
pub struct TableFull {
    /// The configured bound.
    pub capacity: usize,
}

/// The connection table.
#[derive(Debug, Clone)]
pub struct ConnTable {
    table: HashTable<Conn>,
    capacity: usize,
    timeouts: Timeouts,
    hand: usize,
}

impl ConnTable {
    /// An empty table holding at most `capacity` flows (memory for them is reserved now).
    pub fn new(capacity: usize, timeouts: Timeouts) -> Self {
        Self {
            table: HashTable::with_capacity(capacity),
            capacity,
            timeouts,
            hand: 0,
        }
    }

    /// The bound on entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held now (some may be expired but not yet swept).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True if no entry is held.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The idle timeouts.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Replaces the idle timeouts (they apply to existing entries too).
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// The live entry for `key` (whose hash is `hash`); an expired one is removed instead.
    #[inline]
    pub fn lookup(&mut self, hash: u64, key: &FlowKey, now: Nanos) -> Option<&mut Conn> {
        match self.find(hash, key, now) {
            Found::Live(conn) => Some(conn),
            Found::Expired(old) => {
                old.remove();
                None
            }
            Found::Absent => None,
        }
    }

    /// The entry for `key` (whose hash is `hash`), live or expired, in one probe.
    #[inline]
    pub fn find(&mut self, hash: u64, key: &FlowKey, now: Nanos) -> Found<'_> {
        let Ok(entry) = self.table.find_entry(hash, |c| c.key == *key) else {
            return Found::Absent;
        };
        if entry.get().is_expired(now, &self.timeouts) {
            Found::Expired(Expired(entry))
        } else {
            Found::Live(entry.into_mut())
        }
    }

    /// Adds an entry for `key`, which must not be present (look it up first).
    pub fn insert(
        &mut self,
        hash: u64,
        key: FlowKey,
        backend: BackendId,
        state: ConnState,
        now: Nanos,
    ) -> Result<(), TableFull> {
        if self.table.len() >= self.capacity {
            self.expire(now, RECLAIM_SWEEP);
            if self.table.len() >= self.capacity {
                return Err(TableFull {
                    capacity: self.capacity,
                });
            }
        }
        let conn = Conn {
            key,
            backend,
            state,
            last_seen: now,
            hash,
        };
        self.table.insert_unique(hash, conn, |c| c.hash);
        Ok(())
    }

    /// Removes the entry for `key`, returning it.
    pub fn remove(&mut self, hash: u64, key: &FlowKey) -> Option<Conn> {
        let entry = self.table.find_entry(hash, |c| c.key == *key).ok()?;
        Some(entry.remove().0)
    }

    /// Sweeps up to `budget` buckets from where the last sweep stopped, removing expired
    /// entries; returns how many were removed. `budget ≥ buckets()` sweeps everything.
    pub fn expire(&mut self, now: Nanos, budget: usize) -> usize {
        let buckets = self.table.num_buckets();
        if buckets == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..budget.min(buckets) {
            self.hand = (self.hand + 1) % buckets;
            if let Ok(entry) = self.table.get_bucket_entry(self.hand)
                && entry.get().is_expired(now, &self.timeouts)
            {
                entry.remove();
                removed += 1;
            }
        }
        removed
    }

    /// Number of buckets a full sweep visits.
    pub fn buckets(&self) -> usize {
        self.table.num_buckets()
    }

    /// Every entry (expired ones not yet swept included), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Conn> + '_ {
        self.table.iter()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.table.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Protocol;
    use std::net::Ipv4Addr;

    fn key(port: u16, protocol: Protocol) -> FlowKey {
        FlowKey {
            src: Ipv4Addr::new(10, 0, 0, 2),
            dst: Ipv4Addr::new(10, 0, 0, 50),
            src_port: port,
            dst_port: 80,
            protocol,
        }
    }

    // The table trusts the caller's hash; a weak one here proves collisions are handled.
    fn h(k: &FlowKey) -> u64 {
        u64::from(k.src_port % 4)
    }

    fn b(n: u32) -> BackendId {
        BackendId::from_raw(n, 0)
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            tcp_established: Nanos::from_secs(100),
            tcp_closing: Nanos::from_secs(10),
            udp: Nanos::from_secs(30),
        }
    }

    #[test]
    fn insert_lookup_remove_with_colliding_hashes() {
        let mut t = ConnTable::new(16, timeouts());
        for p in 0..10 {
            let k = key(p, Protocol::Tcp);
            t.insert(
                h(&k),
                k,
                b(u32::from(p)),
                ConnState::TcpEstablished,
                Nanos::ZERO,
            )
            .unwrap();
        }
        for p in 0..10 {
            let k = key(p, Protocol::Tcp);
            assert_eq!(
                t.lookup(h(&k), &k, Nanos::ZERO).unwrap().backend,
                b(u32::from(p))
            );
        }
        let k = key(3, Protocol::Tcp);
        assert!(t.remove(h(&k), &k).is_some());
        assert!(t.lookup(h(&k), &k, Nanos::ZERO).is_none());
        assert!(
            t.lookup(h(&k), &key(3, Protocol::Udp), Nanos::ZERO)
                .is_none()
        );
        assert_eq!(t.len(), 9);
    }

    #[test]
    fn idle_timeouts_per_state() {
        let mut t = ConnTable::new(16, timeouts());
        let (tcp, udp) = (key(1, Protocol::Tcp), key(1, Protocol::Udp));
        t.insert(1, tcp, b(1), ConnState::TcpEstablished, Nanos::ZERO)
            .unwrap();
        t.insert(2, udp, b(2), ConnState::Udp, Nanos::ZERO).unwrap();
        // Exactly at the timeout the entry still lives; just after, it is gone.
        assert!(t.lookup(2, &udp, Nanos::from_secs(30)).is_some());
        assert!(t.lookup(2, &udp, Nanos::from_secs(61)).is_none());
        assert!(t.lookup(1, &tcp, Nanos::from_secs(100)).is_some());
        assert!(t.lookup(1, &tcp, Nanos::from_secs(201)).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn fin_or_rst_shortens_life() {
        let s = ConnState::TcpEstablished;
        assert_eq!(s.next(TcpFlags(TcpFlags::ACK)), ConnState::TcpEstablished);
        assert_eq!(
            s.next(TcpFlags(TcpFlags::FIN | TcpFlags::ACK)),
            ConnState::TcpClosing
        );
        assert_eq!(s.next(TcpFlags(TcpFlags::RST)), ConnState::TcpClosing);
        assert_eq!(
            ConnState::initial(Some(TcpFlags(TcpFlags::RST))),
            ConnState::TcpClosing
        );
        assert_eq!(ConnState::initial(None), ConnState::Udp);

        let mut t = ConnTable::new(4, timeouts());
        let k = key(9, Protocol::Tcp);
        t.insert(7, k, b(1), ConnState::TcpEstablished, Nanos::ZERO)
            .unwrap();
        let c = t.lookup(7, &k, Nanos::from_secs(50)).unwrap();
        c.state = c.state.next(TcpFlags(TcpFlags::FIN));
        c.last_seen = Nanos::from_secs(50);
        assert!(
            t.lookup(7, &k, Nanos::from_secs(61)).is_none(),
            "closing timeout is 10 s"
        );
    }

    #[test]
    fn find_tells_live_from_expired_and_renews_in_place() {
        let mut t = ConnTable::new(4, timeouts());
        let k = key(5, Protocol::Udp);
        assert!(matches!(t.find(3, &k, Nanos::ZERO), Found::Absent));
        t.insert(3, k, b(1), ConnState::Udp, Nanos::ZERO).unwrap();
        assert!(matches!(
            t.find(3, &k, Nanos::from_secs(30)),
            Found::Live(_)
        ));
        let Found::Expired(old) = t.find(3, &k, Nanos::from_secs(31)) else {
            panic!("idle for 31 s: expired");
        };
        old.renew(b(2), ConnState::Udp, Nanos::from_secs(31));
        assert_eq!(t.len(), 1);
        let c = t
            .lookup(3, &k, Nanos::from_secs(60))
            .expect("renewed at 31 s");
        assert_eq!((c.backend, c.last_seen), (b(2), Nanos::from_secs(31)));
        let Found::Expired(old) = t.find(3, &k, Nanos::from_secs(62)) else {
            panic!("expired again");
        };
        assert_eq!(old.remove().backend, b(2));
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_refuses_then_reclaims_expired() {
        let mut t = ConnTable::new(3, timeouts());
        for p in 0..3 {
            let k = key(p, Protocol::Udp);
            t.insert(
                u64::from(p),
                k,
                b(0),
                ConnState::Udp,
                Nanos::from_secs(u64::from(p)),
            )
            .unwrap();
        }
        let k = key(100, Protocol::Udp);
        assert_eq!(
            t.insert(100, k, b(0), ConnState::Udp, Nanos::from_secs(5)),
            Err(TableFull { capacity: 3 })
        );
        // Live entries were not evicted.
        assert!(
            t.lookup(0, &key(0, Protocol::Udp), Nanos::from_secs(5))
                .is_some()
        );
        // Once entries expire, an insert reclaims room by itself.
        assert!(
            t.insert(100, k, b(0), ConnState::Udp, Nanos::from_secs(40))
                .is_ok()
        );
        assert!(t.len() <= 3);
    }

    #[test]
    fn expire_sweeps_in_bounded_steps() {
        let mut t = ConnTable::new(1000, timeouts());
        for p in 0..1000 {
            let k = key(p, Protocol::Udp);
            t.insert(
                u64::from(p).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                k,
                b(0),
                ConnState::Udp,
                Nanos::ZERO,
            )
            .unwrap();
        }
        let later = Nanos::from_secs(31);
        let first = t.expire(later, 64);
        assert!(first <= 64);
        let mut total = first;
        // A full sweep in 64-bucket steps removes everything.
        for _ in 0..t.buckets().div_ceil(64) {
            total += t.expire(later, 64);
        }
        assert_eq!(total, 1000);
        assert!(t.is_empty());
        assert_eq!(t.expire(later, t.buckets()), 0);
    }
}
