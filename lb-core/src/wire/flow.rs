//! The 5-tuple of a TCP/UDP over IPv4 packet, from an IP packet or an Ethernet frame.

use super::{
    ETHERTYPE_IPV4, EthernetFrame, Ipv4Packet, ParseError, TcpFlags, TcpPacket, UdpPacket,
};
use std::fmt;
use std::net::Ipv4Addr;

/// Transport protocol of a flow (and of the rules `lb server` installs: `tcp`, `udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)] // and `Tcp` = 0: the connection table relies on it (lb-core/src/select/conntable.rs)
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The lower-case name (`tcp`, `udp`), as in configuration files and iptables rules.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A flow's 5-tuple, as seen in a client → VIP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Client address.
    pub src: Ipv4Addr,
    /// Destination (VIP) address.
    pub dst: Ipv4Addr,
    /// Client port.
    pub src_port: u16,
    /// Destination (service) port.
    pub dst_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}:{} > {}:{}",
            self.protocol.name(),
            self.src,
            self.src_port,
            self.dst,
            self.dst_port
        )
    }
}

/// What the balancer needs to know about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// The flow.
    pub key: FlowKey,
    /// TCP flags (empty for UDP).
    pub tcp_flags: TcpFlags,
    /// Where the IP header starts in the buffer (0 for an IP packet, 14 for a frame).
    pub ip_offset: usize,
    /// IPv4 total length.
    pub ip_len: u16,
    /// The DF flag.
    pub dont_frag: bool,
}

/// Parses an IPv4 packet that starts at its header (as NFQUEUE delivers it).
pub fn parse_ipv4(buf: &[u8]) -> Result<Parsed, ParseError> {
    let ip = Ipv4Packet::new_checked(buf)?;
    if ip.version() != 4 {
        return Err(ParseError::NotIpv4);
    }
    parse_l4(&ip)
}

/// Parses an Ethernet II frame carrying IPv4 (as an AF_PACKET socket delivers it).
pub fn parse_ethernet(buf: &[u8]) -> Result<Parsed, ParseError> {
    let frame = EthernetFrame::new_checked(buf)?;
    if frame.ethertype() != ETHERTYPE_IPV4 {
        return Err(ParseError::NotIpv4);
    }
    let mut parsed = parse_ipv4(frame.payload())?;
    parsed.ip_offset = EthernetFrame::<&[u8]>::HEADER_LEN;
    Ok(parsed)
}

/// Parses the transport header of a checked IPv4 packet (version not re-checked).
pub fn parse_l4<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> Result<Parsed, ParseError> {
    if ip.is_fragment() {
        return Err(ParseError::Fragment);
    }
    let (protocol, src_port, dst_port, tcp_flags) = match ip.protocol() {
        6 => {
            let tcp = TcpPacket::new_checked(ip.payload())?;
            (Protocol::Tcp, tcp.src_port(), tcp.dst_port(), tcp.flags())
        }
        17 => {
            let udp = UdpPacket::new_checked(ip.payload())?;
            (
                Protocol::Udp,
                udp.src_port(),
                udp.dst_port(),
                TcpFlags::default(),
            )
        }
        _ => return Err(ParseError::NotTcpUdp),
    };
    Ok(Parsed {
        key: FlowKey {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            src_port,
            dst_port,
            protocol,
        },
        tcp_flags,
        ip_offset: 0,
        ip_len: ip.total_len(),
        dont_frag: ip.dont_frag(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_syn() -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 50], 64)
            .tcp(40000, 80, 1, 64240)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    fn udp_frame() -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 1])
            .ipv4([10, 0, 0, 3], [10, 0, 0, 50], 64)
            .udp(5353, 53);
        let mut out = Vec::new();
        b.write(&mut out, b"hello").unwrap();
        out
    }

    #[test]
    fn parse() {
        let p = parse_ipv4(&tcp_syn()).unwrap();
        assert_eq!(p.key.to_string(), "tcp 10.0.0.2:40000 > 10.0.0.50:80");
        assert!(p.tcp_flags.is_syn_only());
        assert_eq!((p.ip_offset, p.ip_len), (0, 40));

        let p = parse_ethernet(&udp_frame()).unwrap();
        assert_eq!(p.key.to_string(), "udp 10.0.0.3:5353 > 10.0.0.50:53");
        assert_eq!((p.ip_offset, p.ip_len), (14, 33));
    }

    #[test]
    fn truncated() {
        let syn = tcp_syn();
        // Lower the total length too, so the IP layer is consistent and TCP is what's short.
        let mut short = syn[..30].to_vec();
        short[3] = 30;
        assert_eq!(parse_ipv4(&short), Err(ParseError::TcpTruncated));
        assert_eq!(parse_ipv4(&syn[..30]), Err(ParseError::Ipv4BadTotalLen));
        assert_eq!(parse_ipv4(&[]), Err(ParseError::Ipv4Truncated));
        assert_eq!(
            parse_ethernet(&udp_frame()[..10]),
            Err(ParseError::EthernetTruncated)
        );
    }

    #[test]
    fn rejects() {
        let mut v6 = tcp_syn();
        v6[0] = 0x65;
        assert_eq!(parse_ipv4(&v6), Err(ParseError::NotIpv4));
        let mut arp = udp_frame();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse_ethernet(&arp), Err(ParseError::NotIpv4));
        let mut icmp = tcp_syn();
        icmp[9] = 1;
        assert_eq!(parse_ipv4(&icmp), Err(ParseError::NotTcpUdp));
        let mut frag = tcp_syn();
        frag[6] = 0x20;
        assert_eq!(parse_ipv4(&frag), Err(ParseError::Fragment));
    }
}
