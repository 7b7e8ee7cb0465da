//! What every header view shares: the byte range of a field, and why a buffer is not a packet.

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
pub(super) type Field = std::ops::Range<usize>;
