//! What `decide` answers for one packet ([`Action`], [`DropReason`]) and what the packets it
//! takes start with ([`Framing`]): the types that the decision, the connection table and the
//! output side share, kept here below all three.

use crate::backend::BackendId;
use crate::wire::{MacAddr, ParseError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;

/// Where the IPv4 header starts in the packets handed to `decide`: what the intake frames them with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// The IPv4 header (NFQUEUE).
    #[default]
    Ipv4,
    /// An Ethernet II header (AF_PACKET).
    Ethernet,
    /// The IPv4 header, possibly cut after the first [`HEAD_LEN`] bytes (NFQUEUE with a copy
    /// range, in `dsr-kernel` mode where the kernel keeps and forwards the whole packet): the
    /// IPv4 total length is taken as given — the kernel checked it against the packet in
    /// `ip_rcv` before any netfilter hook — and counted in the byte counters. The UDP length
    /// field of a cut datagram cannot be checked against it; the backend's stack does that.
    Ipv4Head,
}

/// Bytes of a packet that [`Framing::Ipv4Head`] needs at most: the longest IPv4 header (60)
/// and the longest TCP header (60). An NFQUEUE copy range of at least this many bytes loses
/// nothing `decide` reads.
pub const HEAD_LEN: usize = 120;

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send it to a backend (see `emit::emit` for the bytes).
    Forward {
        /// The chosen backend.
        backend: BackendId,
        /// Its data-plane address.
        addr: Ipv4Addr,
        /// Its MAC address.
        mac: MacAddr,
        /// True if the flow was (re)assigned by this packet rather than found tracked.
        new_flow: bool,
    },
    /// Drop it and answer the client with ICMP "fragmentation needed" (see
    /// `emit::write_icmp_frag_needed`): DF set, and too big once encapsulated.
    FragNeeded {
        /// The MTU to announce: the path MTU minus the encapsulation.
        next_hop_mtu: u16,
    },
    /// Drop it.
    Drop(DropReason),
}

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
