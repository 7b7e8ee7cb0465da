//! [`NeighTable`]: a host's ARP cache, with packets waiting for resolution and its retries.
//!
//! Modelled on the kernel's `neighbour.c` for an `INCOMPLETE` entry: the first packet to an
//! unknown next hop creates the entry and sends a broadcast request; the timer retransmits
//! every `retrans_time` (1 s) until `mcast_solicit` (3) requests went unanswered, then the
//! entry fails and its waiting packets are dropped. While waiting, at most [`UNRES_QLEN`]
//! packets are kept and the oldest is dropped for a newer one, as `__neigh_event_send` does.
//! The kernel bounds that queue in bytes today (`unres_qlen_bytes`, 212992), which holds far
//! more than 3 small packets; 3 is the old `unres_qlen` default, kept small on purpose so a
//! test can see the bound.
//!
//! A resolved entry stays valid: the REACHABLE → STALE → DELAY → PROBE cycle and garbage
//! collection are not modelled.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::addr::MacAddr;

/// Packets kept per unresolved neighbour.
pub const UNRES_QLEN: usize = 3;
/// Broadcast requests before an entry fails (`mcast_solicit`).
pub const MCAST_SOLICIT: u8 = 3;
/// Time between requests (`retrans_time_ms`, 1000).
pub const RETRANS_TIME: Duration = Duration::from_secs(1);

/// A packet waiting for its next hop's MAC: the IPv4 bytes and their source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The IPv4 packet.
    pub packet: Vec<u8>,
    /// Its source address (`arp_announce=0` uses it for the request).
    pub source: Ipv4Addr,
}

#[derive(Debug, Clone)]
enum Entry {
    Incomplete {
        queue: VecDeque<Pending>,
        probes: u8,
        generation: u64,
    },
    Reachable(MacAddr),
}

/// What [`NeighTable::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new entry: send the first request and arm the timer for this generation.
    NewEntry {
        /// The generation the timer must carry.
        generation: u64,
    },
    /// Queued behind a request already sent.
    Waiting,
    /// Queued; the oldest waiting packet was dropped to make room.
    DroppedOldest,
}

/// What an expired retransmission timer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerOutcome {
    /// Send another request (the head packet's source is given) and re-arm.
    Retransmit {
        /// The source of the oldest waiting packet.
        source: Option<Ipv4Addr>,
    },
    /// Resolution failed: the entry is gone and these packets are dropped.
    Failed {
        /// The packets dropped.
        dropped: usize,
    },
    /// The timer is for an entry that was since resolved or replaced: nothing to do.
    Stale,
}

/// One host's neighbour cache, keyed by (interface index, IPv4 address).
#[derive(Debug, Clone, Default)]
pub struct NeighTable {
    entries: BTreeMap<(usize, Ipv4Addr), Entry>,
    generations: u64,
}

impl NeighTable {
    /// The resolved MAC of `ip` on `iface`.
    pub fn lookup(&self, iface: usize, ip: Ipv4Addr) -> Option<MacAddr> {
        match self.entries.get(&(iface, ip)) {
            Some(Entry::Reachable(mac)) => Some(*mac),
            _ => None,
        }
    }

    /// Queues `pending` for `ip` on `iface`, whose MAC is not known.
    pub fn enqueue(&mut self, iface: usize, ip: Ipv4Addr, pending: Pending) -> Enqueued {
        match self.entries.get_mut(&(iface, ip)) {
            Some(Entry::Incomplete { queue, .. }) => {
                let dropped = queue.len() >= UNRES_QLEN;
                if dropped {
                    queue.pop_front();
                }
                queue.push_back(pending);
                if dropped {
                    Enqueued::DroppedOldest
                } else {
                    Enqueued::Waiting
                }
            }
            _ => {
                self.generations += 1;
                let generation = self.generations;
                self.entries.insert(
                    (iface, ip),
                    Entry::Incomplete {
                        queue: VecDeque::from([pending]),
                        probes: 1,
                        generation,
                    },
                );
                Enqueued::NewEntry { generation }
            }
        }
    }

    /// Records `ip` at `mac` on `iface` and returns the packets that were waiting for it.
    /// With `create` false only an existing entry is updated (an ARP message not for us).
    pub fn confirm(
        &mut self,
        iface: usize,
        ip: Ipv4Addr,
        mac: MacAddr,
        create: bool,
    ) -> Vec<Pending> {
        let key = (iface, ip);
        if !create && !self.entries.contains_key(&key) {
            return Vec::new();
        }
        match self.entries.insert(key, Entry::Reachable(mac)) {
            Some(Entry::Incomplete { queue, .. }) => queue.into(),
            _ => Vec::new(),
        }
    }

    /// The retransmission timer of generation `generation` for `ip` on `iface` expired.
    pub fn timer(&mut self, iface: usize, ip: Ipv4Addr, generation: u64) -> TimerOutcome {
        let key = (iface, ip);
        let Some(Entry::Incomplete {
            queue,
            probes,
            generation: g,
        }) = self.entries.get_mut(&key)
        else {
            return TimerOutcome::Stale;
        };
        if *g != generation {
            return TimerOutcome::Stale;
        }
        if *probes >= MCAST_SOLICIT {
            let dropped = queue.len();
            self.entries.remove(&key);
            return TimerOutcome::Failed { dropped };
        }
        *probes += 1;
        TimerOutcome::Retransmit {
            source: queue.front().map(|p| p.source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const MAC: MacAddr = MacAddr([0, 0, 0, 0, 0, 2]);

    fn p(n: u8) -> Pending {
        Pending {
            packet: vec![n],
            source: SRC,
        }
    }

    #[test]
    fn queue_keeps_the_newest_three() {
        let mut t = NeighTable::default();
        assert_eq!(t.enqueue(0, IP, p(1)), Enqueued::NewEntry { generation: 1 });
        assert_eq!(t.enqueue(0, IP, p(2)), Enqueued::Waiting);
        assert_eq!(t.enqueue(0, IP, p(3)), Enqueued::Waiting);
        assert_eq!(t.enqueue(0, IP, p(4)), Enqueued::DroppedOldest);
        let out: Vec<u8> = t
            .confirm(0, IP, MAC, false)
            .iter()
            .map(|p| p.packet[0])
            .collect();
        assert_eq!(out, [2, 3, 4]);
        assert_eq!(t.lookup(0, IP), Some(MAC));
    }

    #[test]
    fn three_requests_then_failure() {
        let mut t = NeighTable::default();
        let Enqueued::NewEntry { generation } = t.enqueue(0, IP, p(1)) else {
            panic!("new entry expected");
        };
        let retry = TimerOutcome::Retransmit { source: Some(SRC) };
        assert_eq!(t.timer(0, IP, generation), retry);
        assert_eq!(t.timer(0, IP, generation), retry);
        assert_eq!(
            t.timer(0, IP, generation),
            TimerOutcome::Failed { dropped: 1 }
        );
        assert_eq!(t.timer(0, IP, generation), TimerOutcome::Stale);
        assert_eq!(t.lookup(0, IP), None);
    }

    #[test]
    fn only_create_when_asked() {
        let mut t = NeighTable::default();
        assert!(t.confirm(1, IP, MAC, false).is_empty());
        assert_eq!(t.lookup(1, IP), None);
        t.confirm(1, IP, MAC, true);
        assert_eq!(t.lookup(1, IP), Some(MAC));
        assert_eq!(t.lookup(0, IP), None);
    }
}
