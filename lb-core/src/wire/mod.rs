//! Thin, checked, zero-copy views over Ethernet / IPv4 / TCP / UDP, and the 5-tuple parser.
//!
//! Each view wraps a buffer `T: AsRef<[u8]>` and has one accessor per field; field offsets are
//! named ranges in a private `mod field` of each file, nobody indexes bytes elsewhere.
//!
//! **Guarantee**: a view made with `new_checked` (which runs `check_len`) never panics in any
//! accessor or setter afterwards. `new_unchecked` exists for buffers the caller has just
//! built; untrusted input always goes through `new_checked`.
//!
//! Building whole packets (in tests and fixtures) is etherparse's job; these views are for the
//! hot path, where we read a few fields and rewrite a few bytes in place.

pub mod checksum;
mod ethernet;
mod flow;
mod ipv4;
mod tcp;
mod udp;

pub use ethernet::{ETHERTYPE_IPV4, EthernetFrame, MacAddr, MacParseError};
pub use flow::{FlowKey, Parsed, Protocol, parse_ethernet, parse_ipv4, parse_l4};
pub use ipv4::Ipv4Packet;
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::UdpPacket;

/// Why a buffer is not a packet the balancer can forward; one variant per drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    /// Shorter than an Ethernet header.
    #[error("truncated Ethernet header")]
    EthernetTruncated,
    /// Ethertype is not IPv4, or the IP version field is not 4.
    #[error("not an IPv4 packet")]
    NotIpv4,
    /// Shorter than the fixed 20-byte IPv4 header.
    #[error("truncated IPv4 header")]
    Ipv4Truncated,
    /// IHL below 5 or beyond the buffer.
    #[error("bad IPv4 header length")]
    Ipv4BadHeaderLen,
    /// Total length below the header length or beyond the buffer.
    #[error("bad IPv4 total length")]
    Ipv4BadTotalLen,
    /// A fragment (MF set or offset ≠ 0): no ports to hash on.
    #[error("IPv4 fragment")]
    Fragment,
    /// Neither TCP nor UDP (e.g. ICMP).
    #[error("not TCP or UDP")]
    NotTcpUdp,
    /// Shorter than the 20-byte TCP header.
    #[error("truncated TCP header")]
    TcpTruncated,
    /// TCP data offset below 5 or beyond the IP payload.
    #[error("bad TCP data offset")]
    TcpBadDataOffset,
    /// Shorter than the 8-byte UDP header.
    #[error("truncated UDP header")]
    UdpTruncated,
    /// UDP length field below 8 or beyond the IP payload.
    #[error("bad UDP length")]
    UdpBadLength,
}

/// A byte range inside a header.
type Field = std::ops::Range<usize>;
