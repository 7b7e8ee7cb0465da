//! Drop reasons and the balancer-wide counters.

use crate::wire::ParseError;
use std::fmt;

/// Why a packet was dropped; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The packet did not parse.
    Parse(ParseError),
    /// The destination is not a VIP.
    NotVip,
    /// No backend can take the flow (none active with a weight above 0).
    NoBackend,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 13] = [
        DropReason::Parse(ParseError::EthernetTruncated),
        DropReason::Parse(ParseError::NotIpv4),
        DropReason::Parse(ParseError::Ipv4Truncated),
        DropReason::Parse(ParseError::Ipv4BadHeaderLen),
        DropReason::Parse(ParseError::Ipv4BadTotalLen),
        DropReason::Parse(ParseError::Fragment),
        DropReason::Parse(ParseError::NotTcpUdp),
        DropReason::Parse(ParseError::TcpTruncated),
        DropReason::Parse(ParseError::TcpBadDataOffset),
        DropReason::Parse(ParseError::UdpTruncated),
        DropReason::Parse(ParseError::UdpBadLength),
        DropReason::NotVip,
        DropReason::NoBackend,
    ];

    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// Position of this reason's counter.
    pub const fn index(self) -> usize {
        match self {
            DropReason::Parse(p) => match p {
                ParseError::EthernetTruncated => 0,
                ParseError::NotIpv4 => 1,
                ParseError::Ipv4Truncated => 2,
                ParseError::Ipv4BadHeaderLen => 3,
                ParseError::Ipv4BadTotalLen => 4,
                ParseError::Fragment => 5,
                ParseError::NotTcpUdp => 6,
                ParseError::TcpTruncated => 7,
                ParseError::TcpBadDataOffset => 8,
                ParseError::UdpTruncated => 9,
                ParseError::UdpBadLength => 10,
            },
            DropReason::NotVip => 11,
            DropReason::NoBackend => 12,
        }
    }

    /// Stable snake_case name (for metrics and fixture files).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Parse(p) => match p {
                ParseError::EthernetTruncated => "ethernet_truncated",
                ParseError::NotIpv4 => "not_ipv4",
                ParseError::Ipv4Truncated => "ipv4_truncated",
                ParseError::Ipv4BadHeaderLen => "ipv4_bad_header_len",
                ParseError::Ipv4BadTotalLen => "ipv4_bad_total_len",
                ParseError::Fragment => "fragment",
                ParseError::NotTcpUdp => "not_tcp_udp",
                ParseError::TcpTruncated => "tcp_truncated",
                ParseError::TcpBadDataOffset => "tcp_bad_data_offset",
                ParseError::UdpTruncated => "udp_truncated",
                ParseError::UdpBadLength => "udp_bad_length",
            },
            DropReason::NotVip => "not_vip",
            DropReason::NoBackend => "no_backend",
        }
    }

    /// The reason with this name.
    pub fn from_name(name: &str) -> Option<DropReason> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<ParseError> for DropReason {
    fn from(e: ParseError) -> Self {
        DropReason::Parse(e)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_and_names_are_consistent() {
        for (i, r) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(DropReason::from_name(r.name()), Some(r));
        }
    }
}
