//! [`KernelProfile`]: which Linux the simulator behaves like, where Linux changed behaviour.
//!
//! Only the differences a scenario can see are modelled: today the conntrack confirm clash of
//! two packets of one new flow that both waited in NFQUEUE (seed post 2), and how NAT picks a
//! source port for the second. Each profile and the commits behind it:
//!
//! | profile | kernels | when the second packet of a new flow clashes at `__nf_conntrack_confirm` |
//! |---|---|---|
//! | `3.6` | up to 4.17 | NAT already gave it another source port (`nf_nat_used_tuple` counts the first, confirmed, entry as taken); the insert fails and the packet is dropped: `insert_failed` +1, `drop` +1 (seed post 2) |
//! | `4.18` | 4.18 up to the `6.12` profile | commit 368982cd7d1b ("netfilter: nfnetlink_queue: resolve clash for unconfirmed conntracks", 4.18): for UDP the packet is attached to the entry that won (`nf_ct_resolve_clash`) and goes on, counted in `insert_failed`; it keeps the source port its own NAT binding gave it, so it may leave from another port |
//! | `6.12` | current (6.18 measured) | NAT does not count an entry with the same original tuple as taken, so both get the same port; the identical entries are merged and counted in `clash_resolve` (`insert_failed` and `drop` unchanged, one entry); a clash whose reply tuples differ (DNAT to two backends) inserts the loser in the reply direction only (`nf_ct_resolve_clash_harder`, IPS_NAT_CLASH): `entries` +2, `clash_resolve` +1, one entry listed |
//!
//! Measured: only the `6.12` profile, against `scenarios/udp-conntrack-race*.toml` on 6.18.
//! Not verified here: the exact releases between 4.18 and 6.12 in which the same-origin NAT
//! exception, `nf_ct_resolve_clash_harder` and the `clash_resolve` counter arrived (all in the
//! 5.x series, as far as this project could read the history); the `4.18` profile is the
//! behaviour of 368982cd7d1b's own release, not of every release up to 6.11.

use std::fmt;

/// A kernel behaviour the simulator follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum KernelProfile {
    /// Linux 3.6 (seed post 2) and every release before 4.18.
    Linux3_6,
    /// Linux 4.18: NFQUEUE clashes of identical UDP flows resolved.
    Linux4_18,
    /// Linux 6.12 and later: today's clash resolution and NAT port choice.
    #[default]
    Linux6_12,
}

impl KernelProfile {
    /// Every profile, oldest first.
    pub const ALL: [KernelProfile; 3] = [
        KernelProfile::Linux3_6,
        KernelProfile::Linux4_18,
        KernelProfile::Linux6_12,
    ];

    /// The profile that behaves like release `major.minor`.
    pub fn for_release(major: u32, minor: u32) -> KernelProfile {
        match (major, minor) {
            (m, _) if m < 4 => KernelProfile::Linux3_6,
            (4, n) if n < 18 => KernelProfile::Linux3_6,
            (m, n) if m < 6 || (m == 6 && n < 12) => KernelProfile::Linux4_18,
            _ => KernelProfile::Linux6_12,
        }
    }

    /// The profile's name: the release it is named after (`3.6`, `4.18`, `6.12`).
    pub fn name(self) -> &'static str {
        match self {
            KernelProfile::Linux3_6 => "3.6",
            KernelProfile::Linux4_18 => "4.18",
            KernelProfile::Linux6_12 => "6.12",
        }
    }

    /// NAT keeps a port when the only entry using it is the same flow (same original tuple).
    pub(crate) fn nat_same_origin_exception(self) -> bool {
        self == KernelProfile::Linux6_12
    }

    /// A clash at confirm for UDP is resolved instead of dropping the packet.
    pub(crate) fn resolves_clash(self) -> bool {
        self != KernelProfile::Linux3_6
    }

    /// The stat file has a `clash_resolve` column (otherwise a resolved clash counts in
    /// `insert_failed`).
    pub(crate) fn counts_clash_resolve(self) -> bool {
        self == KernelProfile::Linux6_12
    }
}

impl fmt::Display for KernelProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_map_to_profiles() {
        assert_eq!(KernelProfile::for_release(3, 6), KernelProfile::Linux3_6);
        assert_eq!(KernelProfile::for_release(4, 17), KernelProfile::Linux3_6);
        assert_eq!(KernelProfile::for_release(4, 18), KernelProfile::Linux4_18);
        assert_eq!(KernelProfile::for_release(6, 11), KernelProfile::Linux4_18);
        assert_eq!(KernelProfile::for_release(6, 12), KernelProfile::Linux6_12);
        assert_eq!(KernelProfile::for_release(6, 18), KernelProfile::Linux6_12);
        assert_eq!(KernelProfile::for_release(7, 0), KernelProfile::Linux6_12);
    }
}
