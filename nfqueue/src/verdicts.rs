//! [`Verdicts`]: the verdicts of one received batch, sent in a single `sendmsg`.
//!
//! Netlink handles every message of a datagram in order, so a batch whose packets need
//! different verdicts (accept with one mark, accept with another, drop) still costs one system
//! call. Consecutive packets with the same verdict and mark collapse into one
//! `NFQNL_MSG_VERDICT_BATCH` up to the last of them: the kernel keeps pending packets in id
//! order, and every earlier run was answered by an earlier message of the same datagram, so a
//! batch verdict covers exactly its run — provided the ids are consecutive. A packet the
//! program never saw (its message skipped as malformed or truncated) would be covered by the
//! next run's verdict and mark; so when ids skip, the gap gets a DROP batch verdict of its
//! own first. (Ids also skip where the kernel could not deliver a packet, `user_dropped`: that
//! packet is not pending, and the gap's verdict is answered with `ENOENT`, counted in
//! [`Queue::counters`](crate::Queue::counters).)

use crate::Verdict;
use crate::wire;

/// One run of consecutive packets with the same verdict and mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    last_id: u32,
    verdict: u32,
    mark: Option<u32>,
    packets: u32,
    /// The ids of packets that were not pushed: always a batch verdict.
    gap: bool,
}

/// The verdicts of one batch, in packet order; see the module docs.
#[derive(Debug, Default, Clone)]
pub struct Verdicts {
    runs: Vec<Run>,
    buf: Vec<u8>,
    /// The last id pushed, kept across [`clear`](Verdicts::clear): the next batch starts after it.
    last: Option<u32>,
}

impl Verdicts {
    /// An empty set.
    pub fn new() -> Verdicts {
        Verdicts::default()
    }

    /// Adds the verdict of packet `id` (ids must be pushed in the order they were received),
    /// setting its mark when `mark` is given.
    pub fn push(&mut self, id: u32, verdict: Verdict, mark: Option<u32>) {
        let code = verdict.code();
        if let Some(last) = self.last
            && id != last.wrapping_add(1)
        {
            self.runs.push(Run {
                last_id: id.wrapping_sub(1),
                verdict: Verdict::Drop.code(),
                mark: None,
                packets: 0,
                gap: true,
            });
        }
        self.last = Some(id);
        match self.runs.last_mut().filter(|r| !r.gap) {
            Some(r) if r.verdict == code && r.mark == mark => {
                r.last_id = id;
                r.packets += 1;
            }
            _ => self.runs.push(Run {
                last_id: id,
                verdict: code,
                mark,
                packets: 1,
                gap: false,
            }),
        }
    }

    /// Packets with a verdict pushed since the last [`clear`](Verdicts::clear).
    pub fn packets(&self) -> usize {
        self.runs.iter().map(|r| r.packets as usize).sum()
    }

    /// Netlink messages [`encode`](Verdicts::encode) writes: one per run.
    pub fn messages(&self) -> usize {
        self.runs.len()
    }

    /// True if nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Forgets every verdict (keeps the memory and the last id pushed).
    pub fn clear(&mut self) {
        self.runs.clear();
        self.buf.clear();
    }

    /// The datagram for queue `queue`: a single `NFQNL_MSG_VERDICT` for a run of one packet,
    /// an `NFQNL_MSG_VERDICT_BATCH` up to the run's last id otherwise.
    pub fn encode(&mut self, queue: u16) -> &[u8] {
        self.buf.clear();
        for r in &self.runs {
            let batch = r.packets > 1 || r.gap;
            let m = wire::verdict_request(queue, r.last_id, r.verdict, r.mark, batch, 0);
            self.buf.extend_from_slice(m.bytes());
        }
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{NFQNL_MSG_VERDICT, NFQNL_MSG_VERDICT_BATCH};

    /// (message subtype, id, verdict, mark) of every netlink message in a datagram.
    fn decode(mut d: &[u8]) -> Vec<(u8, u32, u32, Option<u32>)> {
        let mut out = Vec::new();
        while !d.is_empty() {
            let len = u32::from_ne_bytes(d[..4].try_into().unwrap()) as usize;
            let m = &d[..len];
            // nlmsghdr (16) + nfgenmsg (4), then NFQA_VERDICT_HDR (4 + 8), then NFQA_MARK.
            let be = |at: usize| u32::from_be_bytes(m[at..at + 4].try_into().unwrap());
            let mark = (len >= 40).then(|| be(36));
            out.push((m[4], be(28), be(24), mark));
            d = &d[len..];
        }
        out
    }

    #[test]
    fn runs_collapse_into_batch_verdicts() {
        let mut v = Verdicts::new();
        for id in 10..14 {
            v.push(id, Verdict::Accept, Some(7));
        }
        v.push(14, Verdict::Drop, None);
        v.push(15, Verdict::Accept, Some(8));
        v.push(16, Verdict::Accept, Some(7));
        v.push(17, Verdict::Accept, Some(7));
        assert_eq!((v.packets(), v.messages()), (8, 4));
        let d = v.encode(3).to_vec();
        assert_eq!(
            decode(&d),
            vec![
                (NFQNL_MSG_VERDICT_BATCH, 13, 1, Some(7)),
                (NFQNL_MSG_VERDICT, 14, 0, None),
                (NFQNL_MSG_VERDICT, 15, 1, Some(8)),
                (NFQNL_MSG_VERDICT_BATCH, 17, 1, Some(7)),
            ]
        );
        // Each message is exactly what the single-verdict calls send.
        let first = wire::verdict_request(3, 13, 1, Some(7), true, 0);
        assert_eq!(&d[..first.bytes().len()], first.bytes());
        v.clear();
        assert!(v.is_empty());
        assert!(v.encode(3).is_empty());
    }

    #[test]
    fn skipped_ids_get_a_drop_of_their_own() {
        let mut v = Verdicts::new();
        v.push(10, Verdict::Accept, Some(7));
        // 11 was never seen (a skipped message): it must not ride on 13's ACCEPT.
        v.push(12, Verdict::Accept, Some(7));
        v.push(13, Verdict::Accept, Some(7));
        assert_eq!(
            decode(v.encode(0)),
            vec![
                (NFQNL_MSG_VERDICT, 10, 1, Some(7)),
                (NFQNL_MSG_VERDICT_BATCH, 11, 0, None),
                (NFQNL_MSG_VERDICT_BATCH, 13, 1, Some(7)),
            ]
        );
        // The next batch continues from 13: 14 follows without a gap, 16 after one.
        v.clear();
        v.push(14, Verdict::Drop, None);
        v.push(16, Verdict::Drop, None);
        assert_eq!(
            decode(v.encode(0)),
            vec![
                (NFQNL_MSG_VERDICT, 14, 0, None),
                (NFQNL_MSG_VERDICT_BATCH, 15, 0, None),
                (NFQNL_MSG_VERDICT, 16, 0, None),
            ]
        );
        // Ids wrap around.
        let mut w = Verdicts::new();
        w.push(u32::MAX, Verdict::Accept, None);
        w.push(0, Verdict::Accept, None);
        assert_eq!(w.messages(), 1);
    }
}
