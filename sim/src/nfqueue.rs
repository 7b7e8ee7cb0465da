//! NFQUEUE: packets a rule sent to queue N wait there, with the place they left, until the
//! program bound to the queue gives a verdict; an accept resumes them at the next step of the
//! same hook. With no program bound, a packet is dropped (or, with `--queue-bypass`,
//! accepted). Programs are a driver calling [`World::nfq_take`] and [`World::nfq_verdict`],
//! or the built-in holder ([`World::nfq_holder`]) that plays the lab's `nfq-holder` step:
//! hold `count` packets, wait `delay`, give all of them one verdict in queue order (the
//! kernel reinjects a batch verdict's packets one after the other).

use std::collections::VecDeque;
use std::time::Duration;

use crate::error::SimError;
use crate::event::Event;
use crate::hooks::{Binder, Holder, Skb, Stage, Waiting, tuple_of};
pub use crate::hooks::{HolderId, HolderStats, NfqId};
use crate::time::SimTime;
use crate::world::World;

impl World {
    fn bind(&mut self, host: &str, queue: u16, binder: Binder) -> Result<usize, SimError> {
        let h = self.host_index(host)?;
        let q = self.nf[h].queues.0.entry(queue).or_default();
        if q.bound.is_some() {
            return Err(SimError::QueueBound {
                host: host.to_string(),
                queue,
            });
        }
        q.bound = Some(binder);
        Ok(h)
    }

    /// Binds NFQUEUE `queue` of `host` for a driver.
    pub fn nfq_bind(&mut self, host: &str, queue: u16) -> Result<NfqId, SimError> {
        let h = self.bind(host, queue, Binder::Driver)?;
        Ok(NfqId { host: h, queue })
    }

    /// Whether a program is bound to `queue` of `host`.
    pub fn nfq_is_bound(&self, host: &str, queue: u16) -> Result<bool, SimError> {
        let h = self.host_index(host)?;
        Ok(self.nf[h]
            .queues
            .0
            .get(&queue)
            .is_some_and(|q| q.bound.is_some()))
    }

    /// Queue `queue` of `host` while a program is bound to it: (packets it has taken, as the
    /// kernel's id sequence counts them; packets waiting for a verdict).
    pub fn nfq_counters(&self, host: &str, queue: u16) -> Result<Option<(u64, u64)>, SimError> {
        let h = self.host_index(host)?;
        Ok(self.nf[h]
            .queues
            .0
            .get(&queue)
            .filter(|q| q.bound.is_some())
            .map(|q| (u64::from(q.next_id), q.waiting.len() as u64)))
    }

    /// The packets that arrived on a driver's queue since the last call: (packet id, the
    /// IPv4 packet).
    pub fn nfq_take(&mut self, id: NfqId) -> Result<Vec<(u32, Vec<u8>)>, SimError> {
        let q = self.nf[id.host]
            .queues
            .0
            .get_mut(&id.queue)
            .filter(|q| q.bound == Some(Binder::Driver))
            .ok_or(SimError::UnknownQueue {
                id: usize::from(id.queue),
            })?;
        let mut out = Vec::new();
        for w in q.waiting.iter_mut().filter(|w| !w.taken) {
            w.taken = true;
            out.push((w.id, w.skb.bytes.clone()));
        }
        Ok(out)
    }

    /// The driver's verdict on packet `packet` (accept: it goes on, with `mark` if given).
    /// An id not waiting is ignored, as the kernel ignores it.
    pub fn nfq_verdict(
        &mut self,
        id: NfqId,
        packet: u32,
        accept: bool,
        mark: Option<u32>,
    ) -> Result<(), SimError> {
        self.reinject(id.host, id.queue, packet, accept, mark);
        Ok(())
    }

    fn reinject(&mut self, host: usize, queue: u16, packet: u32, accept: bool, mark: Option<u32>) {
        let Some(q) = self.nf[host].queues.0.get_mut(&queue) else {
            return;
        };
        let Some(at) = q.waiting.iter().position(|w| w.id == packet) else {
            return;
        };
        let Some(mut w) = q.waiting.remove(at) else {
            return;
        };
        if accept {
            if let Some(m) = mark {
                w.skb.mark = m;
            }
            self.nf_walk(host, w.stage, w.resume, w.skb);
        }
    }

    /// A rule queued `skb` to `queue`; `resume` is the step after the rule's chain.
    pub(crate) fn nfq_enqueue(
        &mut self,
        host: usize,
        queue: u16,
        bypass: bool,
        stage: Stage,
        resume: usize,
        skb: Skb,
    ) {
        let q = self.nf[host].queues.0.entry(queue).or_default();
        let Some(binder) = q.bound else {
            if bypass {
                self.nf_walk(host, stage, resume, skb);
            }
            return;
        };
        q.next_id += 1;
        let id = q.next_id;
        let what = describe(&skb.bytes);
        q.waiting.push_back(Waiting {
            id,
            stage,
            resume,
            skb,
            taken: false,
        });
        if let Binder::Holder(k) = binder {
            let now = self.now;
            let h = &mut self.holders[k];
            h.held.push(id);
            h.stats.held += 1;
            let line = format!("held packet {id} ({}/{}): {what}", h.held.len(), h.count);
            h.log.push((now, line));
            if h.held.len() >= h.count {
                let batch: Vec<u32> = h.held.drain(..h.count).collect();
                h.due.push_back(batch);
                let delay = h.delay;
                self.schedule(delay, Event::HolderRelease { holder: k });
            }
        }
    }

    /// Binds `queue` of `host` to a holder: `count` packets held, `delay` waited, then one
    /// verdict (accept or drop) for all of them.
    pub fn nfq_holder(
        &mut self,
        host: &str,
        queue: u16,
        count: usize,
        delay: Duration,
        accept: bool,
    ) -> Result<HolderId, SimError> {
        let k = self.holders.len();
        let h = self.bind(host, queue, Binder::Holder(k))?;
        let verdict = if accept { "accept" } else { "drop" };
        let line = format!(
            "bound queue {queue}: holding {count} packet(s), then {verdict} together after {} ms",
            delay.as_millis()
        );
        self.holders.push(Holder {
            host: h,
            queue,
            count: count.max(1),
            delay,
            accept,
            held: Vec::new(),
            due: VecDeque::new(),
            stats: HolderStats::default(),
            log: vec![(self.now, line)],
        });
        Ok(HolderId(k))
    }

    /// What holder `id` has done so far.
    pub fn holder_stats(&self, id: HolderId) -> Result<HolderStats, SimError> {
        self.holders
            .get(id.0)
            .map(|h| h.stats.clone())
            .ok_or(SimError::UnknownQueue { id: id.0 })
    }

    /// Holder `id`'s log: what it held and released, with the virtual time of each line.
    pub fn holder_log(&self, id: HolderId) -> Result<&[(SimTime, String)], SimError> {
        self.holders
            .get(id.0)
            .map(|h| h.log.as_slice())
            .ok_or(SimError::UnknownQueue { id: id.0 })
    }

    /// A holder's delay has passed: its oldest full batch gets the verdict, in queue order.
    pub(crate) fn holder_release(&mut self, k: usize) {
        let Some(batch) = self.holders.get_mut(k).and_then(|h| h.due.pop_front()) else {
            return;
        };
        let (host, queue, accept) = {
            let h = &self.holders[k];
            (h.host, h.queue, h.accept)
        };
        let now = self.now;
        let h = &mut self.holders[k];
        h.stats.released += batch.len() as u64;
        h.stats.batches += 1;
        let verdict = if accept { "accept" } else { "drop" };
        let line = format!(
            "released {} packet(s) together: {verdict} (ids {}..={})",
            batch.len(),
            batch[0],
            batch[batch.len() - 1]
        );
        h.log.push((now, line));
        for id in batch {
            self.reinject(host, queue, id, accept, None);
        }
    }
}

/// `udp 10.0.0.3:4000 > 10.0.0.2:9000, 37 bytes`, as the lab's holder logs a packet.
fn describe(bytes: &[u8]) -> String {
    match tuple_of(bytes) {
        Some(t) => {
            let name = match t.proto {
                6 => "tcp".to_string(),
                17 => "udp".to_string(),
                n => format!("ip-proto-{n}"),
            };
            if matches!(t.proto, 6 | 17) {
                format!(
                    "{name} {}:{} > {}:{}, {} bytes",
                    t.src,
                    t.sport,
                    t.dst,
                    t.dport,
                    bytes.len()
                )
            } else {
                format!("{name} {} > {}, {} bytes", t.src, t.dst, bytes.len())
            }
        }
        None => format!("non-IPv4 packet, {} bytes", bytes.len()),
    }
}
