//! [`EventQueue`]: pending events ordered by (virtual time, seeded tie-break, insertion order).
//!
//! Simultaneous events are ordered by a number drawn from the queue's seeded generator when
//! the event is scheduled: the same seed gives the same order, another seed may interleave
//! simultaneous events differently (as two runs of a real kernel may), and the insertion
//! sequence settles the (improbable) equal draws so the order is always total.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::rng::SimRng;
use crate::time::SimTime;

/// A priority queue of events of type `E` in virtual time.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    rng: SimRng,
    seq: u64,
}

#[derive(Debug)]
struct Entry<E> {
    at: SimTime,
    tie: u64,
    seq: u64,
    event: E,
}

impl<E> Entry<E> {
    fn key(&self) -> (SimTime, u64, u64) {
        (self.at, self.tie, self.seq)
    }
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest key must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

impl<E> EventQueue<E> {
    /// An empty queue whose tie-breaks are drawn from a generator seeded with `seed`.
    pub fn new(seed: u64) -> EventQueue<E> {
        EventQueue {
            heap: BinaryHeap::new(),
            rng: SimRng::new(seed),
            seq: 0,
        }
    }

    /// Schedules `event` at `at`, drawing its tie-break now.
    pub fn push(&mut self, at: SimTime, event: E) {
        let tie = self.rng.next_u64();
        let seq = self.seq;
        self.seq += 1;
        self.heap.push(Entry {
            at,
            tie,
            seq,
            event,
        });
    }

    /// Schedules `event` at `at` ahead of every event already due then that was pushed with
    /// [`EventQueue::push`] (no tie-break drawn, so the generator's sequence is unchanged).
    pub fn push_first(&mut self, at: SimTime, event: E) {
        let seq = self.seq;
        self.seq += 1;
        self.heap.push(Entry {
            at,
            tie: 0,
            seq,
            event,
        });
    }

    /// Removes and returns the first event and its time.
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        self.heap.pop().map(|e| (e.at, e.event))
    }

    /// Removes the first instant's events, lets `choose` pick one of them (given in queue
    /// order: index 0 is the one [`EventQueue::pop`] would return), puts the others back with
    /// their places kept, and returns the chosen one and its time.
    pub fn pop_with(&mut self, choose: impl FnOnce(&[&E]) -> usize) -> Option<(SimTime, E)> {
        let first = self.heap.pop()?;
        let mut same = vec![first];
        while self.heap.peek().is_some_and(|e| e.at == same[0].at) {
            same.extend(self.heap.pop());
        }
        let k = {
            let events: Vec<&E> = same.iter().map(|e| &e.event).collect();
            choose(&events).min(same.len() - 1)
        };
        let chosen = same.swap_remove(k);
        for e in same {
            self.heap.push(e);
        }
        Some((chosen.at, chosen.event))
    }

    /// The time of the first event, if any.
    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|e| e.at)
    }

    /// The number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(seed: u64) -> Vec<(u64, char)> {
        let mut q = EventQueue::new(seed);
        q.push(SimTime::from_nanos(5), 'c');
        for name in ['a', 'b', 'x', 'y'] {
            q.push(SimTime::from_nanos(1), name);
        }
        q.push(SimTime::ZERO, 'z');
        std::iter::from_fn(|| q.pop())
            .map(|(t, e)| (t.as_nanos(), e))
            .collect()
    }

    #[test]
    fn time_orders_first() {
        let got = drain(3);
        assert_eq!(got.first(), Some(&(0, 'z')));
        assert_eq!(got.last(), Some(&(5, 'c')));
        let times: Vec<u64> = got.iter().map(|(t, _)| *t).collect();
        assert!(times.is_sorted());
    }

    #[test]
    fn same_seed_same_order() {
        for seed in 0..20 {
            assert_eq!(drain(seed), drain(seed), "seed {seed}");
        }
    }

    #[test]
    fn different_seeds_can_order_simultaneous_events_differently() {
        let orders: std::collections::BTreeSet<Vec<(u64, char)>> = (0..20).map(drain).collect();
        assert!(orders.len() > 1, "20 seeds gave one order: {orders:?}");
    }

    #[test]
    fn len_and_peek() {
        let mut q = EventQueue::new(0);
        assert!(q.is_empty());
        q.push(SimTime::from_nanos(9), ());
        q.push(SimTime::from_nanos(4), ());
        assert_eq!((q.len(), q.peek_time()), (2, Some(SimTime::from_nanos(4))));
    }
}
