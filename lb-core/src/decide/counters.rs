//! The balancer-wide counters.

use crate::action::DropReason;

/// Balancer-wide counters (per-backend ones live on each backend).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    /// Drops, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// Packets forwarded.
    pub forwarded: u64,
    /// DF packets too big for the encapsulation, answered with ICMP "fragmentation needed".
    pub frag_needed: u64,
    /// New flows forwarded untracked because the connection table was full.
    pub conn_table_full: u64,
    /// Tracked flows moved because their backend was removed or down.
    pub flows_moved: u64,
    /// Untracked mid-connection packets sent by the table before a recent backend change
    /// (`State::previous_choice`).
    pub previous_table: u64,
}

impl Counters {
    /// The drop counter for `reason`.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Every non-zero drop counter with its name.
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .into_iter()
            .map(|r| (r, self.drop_count(r)))
            .filter(|&(_, n)| n > 0)
    }
}
