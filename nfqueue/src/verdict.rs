//! [`Verdict`]: what to do with a queued packet, and its code on the wire.

/// What to do with a queued packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `NF_DROP`.
    Drop,
    /// `NF_ACCEPT`: continue with the next rule/hook.
    Accept,
    /// `NF_REPEAT`: run the same hook again (the packet meets the queue rule again unless
    /// a mark or other state makes it skip it).
    Repeat,
    /// `NF_QUEUE` to another queue number; with `bypass`, accept when that queue is unbound.
    Queue {
        /// Destination queue.
        num: u16,
        /// `NF_VERDICT_FLAG_QUEUE_BYPASS`.
        bypass: bool,
    },
}
// NF_STOLEN is not offered: the kernel rejects it in verdicts (`verdicthdr_get`, EINVAL).

impl Verdict {
    /// The 32-bit verdict as sent in `nfqnl_msg_verdict_hdr` (before byte-order conversion).
    pub fn code(self) -> u32 {
        match self {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
            Verdict::Repeat => 4,
            Verdict::Queue { num, bypass } => {
                3 | (u32::from(num) << 16) | if bypass { 0x8000 } else { 0 }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_codes() {
        assert_eq!(Verdict::Drop.code(), 0);
        assert_eq!(Verdict::Accept.code(), 1);
        assert_eq!(Verdict::Repeat.code(), 4);
        assert_eq!(
            Verdict::Queue {
                num: 2,
                bypass: true
            }
            .code(),
            0x0002_8003
        );
    }
}
