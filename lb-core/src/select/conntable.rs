//! A bounded connection table: 5-tuple → backend, with idle timeouts that know TCP's FIN/RST.
//!
//! **Layout.** An open-addressing hash table keyed by the caller's 64-bit flow hash: a
//! power-of-two array of 64-byte, cache-line-aligned buckets, each holding two 32-byte entries
//! (the 13-byte 5-tuple, the 8-byte backend id, the state, a full 64-bit last-seen time, and a
//! byte that is 0 for an empty entry and otherwise one more than the entry's displacement; so
//! no coarser timestamp with wrap-around rules is needed, and an all-zero entry is an empty
//! one). A flow's home bucket is `hash & mask`, so its address is known from the hash alone:
//! [`ConnTable::prefetch`] lets a batch path (`decide_batch`) start the cache misses of a whole
//! batch before deciding any of it. Collisions probe linearly, entry by entry, from the home
//! bucket's first entry; a lookup stops at the first empty entry, and most stop within the
//! home bucket, i.e. one cache line. [`ConnTable::new`] reserves one bucket per flow of
//! capacity, rounded up to a power of two, so the load stays ≤ 1/2 (64 MiB of address space
//! for the default capacity of 2^20; a capacity just above a power of two costs twice that, so
//! powers of two use memory best), and nothing grows or rehashes later. The array is an
//! anonymous mapping advised `MADV_HUGEPAGE`: the kernel maps its pages on first touch, so a
//! table takes memory as flows arrive, not at start, in 2 MiB pages where it can. Why 1/2: with random hashes and two entries per line, a lookup of an
//! absent flow (every new flow) reads 1.6 lines on average at load 1/2 but 4.6 at load 3/4,
//! and the longest run in 2^20 buckets is about 20 buckets against 100–140 (a simulation of
//! this layout).
//!
//! **Deletion** shifts the following entries of the probe run back (Knuth's algorithm R for
//! linear probing), so there are no tombstones and no rehashing, and lookups stay short however
//! many flows come and go. Each entry records how many buckets it sits past its home (a `u8`),
//! which is all a shift needs to know. An insert that would sit more than
//! [`MAX_DISPLACEMENT`] buckets past its home is refused like one into a full table; with a
//! uniform hash (SipHash with a key) and load ≤ 1/2 that does not happen in practice (runs
//! that long have a vanishing probability), and it bounds the work a lookup can do even under
//! a known key.
//!
//! [`ConnTable::find`] tells a live entry from an expired one in one probe, so `decide` renews
//! an expired entry in place instead of removing it and inserting anew. Expiry is lazy and
//! incremental: a lookup that finds an expired entry removes it, and [`ConnTable::expire`]
//! sweeps a bounded number of buckets from a moving hand, so no call does unbounded work; the
//! adapter calls it regularly (e.g. a few thousand buckets per tick). A sweep of
//! [`ConnTable::buckets`] buckets visits every entry (a removal only ever shifts entries back
//! onto the position being swept, which is looked at again).
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

use crate::backend::BackendId;
use crate::time::Nanos;
use crate::wire::{FlowKey, TcpFlags};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Buckets an insert into a full table sweeps looking for expired entries.
const RECLAIM_SWEEP: usize = 32;

/// Entries per bucket: two 32-byte entries fill one 64-byte cache line.
const ENTRIES: usize = 2;

/// The most buckets an entry may sit past its home bucket (a `u8` holds it plus one; 0 marks an
/// empty entry).
pub const MAX_DISPLACEMENT: usize = u8::MAX as usize - 1;

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
#[repr(u8)] // and a variant with discriminant 0: see `Buckets`
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

/// One tracked flow (32 bytes: two share a cache line).
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
    /// 0: the entry is empty; otherwise 1 + the buckets between the entry's home bucket and
    /// the one it sits in. Zero bytes are an empty entry, so the table's memory starts as
    /// zero pages the kernel maps on first touch (see `Buckets`).
    link: u8,
}

// Two entries per 64-byte line.
const _: () = assert!(size_of::<Conn>() == 32);
const _: () = assert!(size_of::<Bucket>() == 64);

impl Conn {
    /// An empty entry: all fields zero.
    const EMPTY: Conn = Conn {
        key: FlowKey {
            src: std::net::Ipv4Addr::UNSPECIFIED,
            dst: std::net::Ipv4Addr::UNSPECIFIED,
            src_port: 0,
            dst_port: 0,
            protocol: crate::wire::Protocol::Tcp,
        },
        backend: BackendId::from_raw(0, 0),
        state: ConnState::TcpEstablished,
        last_seen: Nanos(0),
        link: 0,
    };

    #[inline(always)]
    fn is_used(&self) -> bool {
        self.link != 0
    }

    /// Buckets between the entry's home bucket and the one it sits in.
    #[inline(always)]
    fn displacement(&self) -> usize {
        usize::from(self.link) - 1
    }
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

/// One cache line of entries.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Bucket([Conn; ENTRIES]);

/// The bucket array, in an anonymous private mapping: the kernel maps its pages as zero pages
/// on first touch, so a table takes memory as flows arrive, not at start (a 2^20-flow table is
/// 64 MiB of address space). The global allocator cannot give that for 64-byte alignment: its
/// zeroed allocation then writes the zeros itself.
struct Buckets {
    ptr: std::ptr::NonNull<Bucket>,
    len: usize,
}

// SAFETY: `Buckets` owns its memory exclusively, like a `Box<[Bucket]>`, and `Bucket` is plain
// data.
unsafe impl Send for Buckets {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for Buckets {}

impl Buckets {
    /// `n` (≥ 1) empty buckets.
    fn zeroed(n: usize) -> Buckets {
        let layout = std::alloc::Layout::array::<Bucket>(n)
            .expect("connection table size overflows the address space");
        // SAFETY: an anonymous private mapping (no file, no fixed address); the result is
        // checked. Page alignment covers Bucket's 64 bytes.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::alloc::handle_alloc_error(layout);
        }
        // Transparent huge pages where the system allows them on request (`madvise` mode): a
        // lookup at a random place then costs no 4 KiB page walk. Only a hint: failure is fine.
        // SAFETY: the mapping just made, with its size.
        unsafe { libc::madvise(p, layout.size(), libc::MADV_HUGEPAGE) };
        match std::ptr::NonNull::new(p.cast::<Bucket>()) {
            Some(ptr) => Buckets { ptr, len: n },
            None => std::alloc::handle_alloc_error(layout),
        }
    }
}

impl std::ops::Deref for Buckets {
    type Target = [Bucket];
    fn deref(&self) -> &[Bucket] {
        // SAFETY: `len` buckets mapped readable and writable, owned by `self`; zero bytes are
        // valid buckets of empty entries: every field of `Conn` is an integer, an `Ipv4Addr`
        // (four bytes), a `BackendId` or `Nanos` (integers), or a `#[repr(u8)]` enum with a
        // variant of discriminant 0 (`Protocol::Tcp`, `ConnState::TcpEstablished`), and
        // `link` 0 means empty; `Conn::EMPTY` is that value (tested).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Buckets {
    fn deref_mut(&mut self) -> &mut [Bucket] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Buckets {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `zeroed`, with its size; not used after this.
        unsafe {
            libc::munmap(
                self.ptr.as_ptr().cast(),
                self.len * std::mem::size_of::<Bucket>(),
            );
        }
    }
}

impl Clone for Buckets {
    fn clone(&self) -> Buckets {
        let mut copy = Buckets::zeroed(self.len);
        copy.copy_from_slice(self);
        copy
    }
}

/// What [`ConnTable::find`] found for a flow.
#[derive(Debug)]
pub enum Found<'a> {
    /// Its live entry.
    Live(&'a mut Conn),
    /// Its entry, expired: [`Expired::renew`] makes it the entry of the flow's new life in
    /// place (no second probe), or [`Expired::remove`] drops it.
    Expired(Expired<'a>),
    /// No entry.
    Absent,
}

/// An expired entry found by [`ConnTable::find`]; see [`Found::Expired`].
#[derive(Debug)]
pub struct Expired<'a> {
    table: &'a mut ConnTable,
    at: usize,
}

impl Expired<'_> {
    /// Reuses the entry for the same flow, now going to `backend` in `state`, seen at `now`.
    pub fn renew(self, backend: BackendId, state: ConnState, now: Nanos) {
        if let Some(conn) = self.table.entry_mut(self.at) {
            conn.backend = backend;
            conn.state = state;
            conn.last_seen = now;
        }
    }

    /// Removes the entry, returning it.
    pub fn remove(self) -> Conn {
        self.table
            .remove_at(self.at)
            .expect("an Expired names an occupied entry")
    }
}

/// The table refused a new entry: it holds `capacity` live entries (or, never seen with a
/// keyed hash, the flow's probe run is [`MAX_DISPLACEMENT`] buckets long).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection table full ({capacity} entries)")]
pub struct TableFull {
    /// The configured bound.
    pub capacity: usize,
}

/// The connection table.
#[derive(Clone)]
pub struct ConnTable {
    buckets: Buckets,
    /// `buckets.len() - 1` (the length is a power of two).
    mask: usize,
    len: usize,
    capacity: usize,
    timeouts: Timeouts,
    /// The bucket the last sweep stopped at.
    hand: usize,
}

impl fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("buckets", &self.buckets.len())
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// Buckets for `capacity` flows: a power of two of two entries each, at least two entries per
/// flow (load ≤ 1/2 when full).
fn bucket_count(capacity: usize) -> usize {
    capacity
        .max(1)
        .checked_next_power_of_two()
        .expect("connection table capacity overflows the address space")
}

impl ConnTable {
    /// An empty table holding at most `capacity` flows (address space for them is reserved
    /// now; memory is taken as entries are written).
    pub fn new(capacity: usize, timeouts: Timeouts) -> Self {
        let n = bucket_count(capacity);
        Self {
            buckets: Buckets::zeroed(n),
            mask: n - 1,
            len: 0,
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
        self.len
    }

    /// True if no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The idle timeouts.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Replaces the idle timeouts (they apply to existing entries too).
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// Starts loading the home bucket of a flow whose hash is `hash` into the cache: a hint
    /// that makes a later [`ConnTable::find`] or [`ConnTable::insert`] for it cheaper.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        crate::prefetch::prefetch(&self.buckets[self.home(hash)]);
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

    /// The entry for `key` (whose hash is `hash`), live or expired, without changing anything.
    pub fn get(&self, hash: u64, key: &FlowKey) -> Option<&Conn> {
        self.entry(self.position(hash, key)?)
    }

    /// The entry for `key` (whose hash is `hash`), live or expired, in one probe.
    #[inline]
    pub fn find(&mut self, hash: u64, key: &FlowKey, now: Nanos) -> Found<'_> {
        let Some(at) = self.position(hash, key) else {
            return Found::Absent;
        };
        let timeouts = self.timeouts;
        let expired = self
            .entry_mut(at)
            .is_some_and(|c| c.is_expired(now, &timeouts));
        if expired {
            return Found::Expired(Expired { table: self, at });
        }
        match self.entry_mut(at) {
            Some(conn) => Found::Live(conn),
            None => Found::Absent,
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
        if self.len >= self.capacity {
            self.expire(now, RECLAIM_SWEEP);
            if self.len >= self.capacity {
                return Err(self.full());
            }
        }
        debug_assert!(
            self.position(hash, &key).is_none(),
            "insert of a present key"
        );
        let home = self.home(hash);
        // Load ≤ 1/2 leaves an empty entry somewhere; the bound is what a `u8` displacement
        // can record (with fewer buckets than that, the walk wraps and finds one sooner).
        let mut at = home * ENTRIES;
        for _ in 0..(MAX_DISPLACEMENT + 1) * ENTRIES {
            let link = self.distance(home, at / ENTRIES) as u8 + 1;
            let slot = &mut self.buckets[at / ENTRIES].0[at % ENTRIES];
            if !slot.is_used() {
                *slot = Conn {
                    key,
                    backend,
                    state,
                    last_seen: now,
                    link,
                };
                self.len += 1;
                return Ok(());
            }
            at = self.next(at);
        }
        Err(self.full())
    }

    /// Removes the entry for `key`, returning it.
    pub fn remove(&mut self, hash: u64, key: &FlowKey) -> Option<Conn> {
        let at = self.position(hash, key)?;
        self.remove_at(at)
    }

    /// Sweeps up to `budget` buckets from where the last sweep stopped, removing expired
    /// entries; returns how many were removed. `budget ≥ buckets()` sweeps everything.
    pub fn expire(&mut self, now: Nanos, budget: usize) -> usize {
        let mut removed = 0;
        for _ in 0..budget.min(self.buckets.len()) {
            self.hand = (self.hand + 1) & self.mask;
            let mut at = self.hand * ENTRIES;
            // A removal may shift a later entry back into `at`: look at it again.
            while at < (self.hand + 1) * ENTRIES {
                match self.entry(at) {
                    Some(c) if c.is_expired(now, &self.timeouts) => {
                        self.remove_at(at);
                        removed += 1;
                    }
                    _ => at += 1,
                }
            }
        }
        removed
    }

    /// Number of buckets a full sweep visits.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Every entry (expired ones not yet swept included), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Conn> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.0.iter().filter(|c| c.is_used()))
    }

    /// Maps the whole table now (`MADV_POPULATE_WRITE`) instead of page by page as flows
    /// arrive: a flood of new flows then meets no page faults (each zeroing a huge page while
    /// the queue fills). Costs the table's full memory from the start; a hint, like the huge
    /// pages: where the kernel refuses, the pages come on first touch as before.
    pub fn populate(&self) {
        let size = self.buckets.len() * std::mem::size_of::<Bucket>();
        // SAFETY: the table's own mapping, with its size; populating changes no content.
        unsafe {
            libc::madvise(
                self.buckets.ptr.as_ptr().cast(),
                size,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }

    /// Removes every entry (and gives the memory back: the table starts over as zero pages).
    pub fn clear(&mut self) {
        self.buckets = Buckets::zeroed(self.buckets.len());
        self.len = 0;
    }

    fn full(&self) -> TableFull {
        TableFull {
            capacity: self.capacity,
        }
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        // Truncating on 32-bit targets keeps the low bits, which are all the mask uses.
        hash as usize & self.mask
    }

    /// Buckets from `from` forward to `to`, wrapping around.
    #[inline(always)]
    fn distance(&self, from: usize, to: usize) -> usize {
        to.wrapping_sub(from) & self.mask
    }

    /// The entry position after `at` in probe order (entries are numbered bucket × 2 + i).
    #[inline(always)]
    fn next(&self, at: usize) -> usize {
        (at + 1) & self.entry_mask()
    }

    /// Entry positions from `from` forward to `to`, wrapping around.
    #[inline(always)]
    fn entries_between(&self, from: usize, to: usize) -> usize {
        to.wrapping_sub(from) & self.entry_mask()
    }

    #[inline(always)]
    fn entry_mask(&self) -> usize {
        self.mask * ENTRIES + ENTRIES - 1
    }

    #[inline(always)]
    fn entry(&self, at: usize) -> Option<&Conn> {
        let c = &self.buckets[at / ENTRIES].0[at % ENTRIES];
        c.is_used().then_some(c)
    }

    #[inline(always)]
    fn entry_mut(&mut self, at: usize) -> Option<&mut Conn> {
        let c = &mut self.buckets[at / ENTRIES].0[at % ENTRIES];
        c.is_used().then_some(c)
    }

    /// Takes the entry at `at` out, leaving it empty.
    #[inline(always)]
    fn take(&mut self, at: usize) -> Option<Conn> {
        let slot = &mut self.buckets[at / ENTRIES].0[at % ENTRIES];
        slot.is_used().then(|| std::mem::replace(slot, Conn::EMPTY))
    }

    /// Where `key` sits, walking its probe run from the home bucket to the first empty entry.
    #[inline]
    fn position(&self, hash: u64, key: &FlowKey) -> Option<usize> {
        let mut at = self.home(hash) * ENTRIES;
        // An insert never places an entry past an empty one, nor more than MAX_DISPLACEMENT
        // buckets past its home, and removals keep it so: the walk can stop at either.
        for _ in 0..(MAX_DISPLACEMENT + 1) * ENTRIES {
            match self.entry(at) {
                None => return None,
                Some(c) if c.key == *key => return Some(at),
                Some(_) => at = self.next(at),
            }
        }
        None
    }

    /// Empties position `at` and shifts the rest of its probe run back over the hole, so that
    /// every entry stays reachable from its home without crossing an empty entry.
    fn remove_at(&mut self, at: usize) -> Option<Conn> {
        let removed = self.take(at)?;
        self.len -= 1;
        let mut hole = at;
        let mut next = self.next(at);
        while let Some(c) = self.entry(next) {
            let home = (next / ENTRIES).wrapping_sub(c.displacement()) & self.mask;
            // The entry may move back to the hole unless its home lies after the hole, i.e.
            // cyclically in (hole, next]: then the hole is before the start of its run.
            if self.entries_between(home * ENTRIES, next) >= self.entries_between(hole, next) {
                let mut moved = self.take(next).expect("just seen");
                // The hole lies between the home and the old place: no larger than before.
                moved.link = self.distance(home, hole / ENTRIES) as u8 + 1;
                self.buckets[hole / ENTRIES].0[hole % ENTRIES] = moved;
                hole = next;
            }
            next = self.next(next);
        }
        Some(removed)
    }
}

#[cfg(test)]
mod tests;
