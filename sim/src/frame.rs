//! Frames as bytes: building and reading Ethernet, ARP, IPv4, UDP and ICMP with etherparse.
//!
//! Frames are what a veth carries (no FCS, no padding to 60 bytes), so a capture of the
//! simulator reads like an AF_PACKET capture on the lab's veths.

use std::net::Ipv4Addr;

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, ArpPacket, EtherType, Ethernet2Header, Icmpv4Header,
    Icmpv4Type, IpNumber, Ipv4Header, UdpHeader,
};

use crate::addr::MacAddr;

/// The kernel's default TTL (`net.ipv4.ip_default_ttl`).
pub const DEFAULT_TTL: u8 = 64;
/// The MTU of every simulated interface (the veth default).
pub const MTU: usize = 1500;
/// The largest IP packet an ICMP error may be (RFC 1812 4.3.2.3; the kernel's `576`).
pub const ICMP_ERROR_MAX: usize = 576;
/// ICMP errors carry the original's TOS bits (`IPTOS_TOS_MASK`) with precedence
/// "internetwork control" (`IPTOS_PREC_INTERNETCONTROL`), as `icmp_send` sets them.
const IPTOS_TOS_MASK: u8 = 0x1e;
/// See [`IPTOS_TOS_MASK`].
const IPTOS_PREC_INTERNETCONTROL: u8 = 0xc0;

/// An Ethernet frame: header fields and the payload after the 14-byte header.
#[derive(Debug, Clone, Copy)]
pub struct EthView<'a> {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// The EtherType.
    pub ether_type: EtherType,
    /// What follows the header.
    pub payload: &'a [u8],
}

/// Reads an Ethernet II header; `None` when the frame is shorter than 14 bytes.
pub fn parse_eth(frame: &[u8]) -> Option<EthView<'_>> {
    let (h, payload) = Ethernet2Header::from_slice(frame).ok()?;
    Some(EthView {
        dst: MacAddr(h.destination),
        src: MacAddr(h.source),
        ether_type: h.ether_type,
        payload,
    })
}

/// An Ethernet II frame around `payload`.
pub fn eth(dst: MacAddr, src: MacAddr, ether_type: EtherType, payload: &[u8]) -> Vec<u8> {
    let h = Ethernet2Header {
        source: src.0,
        destination: dst.0,
        ether_type,
    };
    let mut out = Vec::with_capacity(Ethernet2Header::LEN + payload.len());
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(payload);
    out
}

/// An ARP (Ethernet/IPv4) message: 28 bytes.
pub fn arp(
    operation: ArpOperation,
    sender: (MacAddr, Ipv4Addr),
    target: (MacAddr, Ipv4Addr),
) -> [u8; ArpEthIpv4Packet::LEN] {
    ArpEthIpv4Packet {
        operation,
        sender_mac: sender.0.0,
        sender_ipv4: sender.1.octets(),
        target_mac: target.0.0,
        target_ipv4: target.1.octets(),
    }
    .to_bytes()
}

/// Reads an Ethernet/IPv4 ARP message; `None` for other hardware or protocol types.
pub fn parse_arp(payload: &[u8]) -> Option<ArpEthIpv4Packet> {
    ArpPacket::from_slice(payload).ok()?.try_eth_ipv4().ok()
}

/// A parsed IPv4 packet: its header and its payload, cut to the header's total length.
#[derive(Debug, Clone)]
pub struct Ipv4View<'a> {
    /// The header.
    pub header: Ipv4Header,
    /// The payload (padding after `total_len` removed).
    pub payload: &'a [u8],
    /// The whole packet: header and payload, padding removed.
    pub packet: &'a [u8],
}

/// Reads an IPv4 packet; `None` when the header is malformed, its checksum is wrong, or the
/// bytes are shorter than its total length (the kernel's `ip_rcv_core` drops all three).
pub fn parse_ipv4(bytes: &[u8]) -> Option<Ipv4View<'_>> {
    let (header, _) = Ipv4Header::from_slice(bytes).ok()?;
    if header.header_checksum != header.calc_header_checksum() {
        return None;
    }
    let total = usize::from(header.total_len);
    let packet = bytes.get(..total)?;
    let payload = packet.get(header.header_len()..)?;
    Some(Ipv4View {
        header,
        payload,
        packet,
    })
}

/// The header of a locally sent IPv4 packet with a correct checksum.
fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpNumber,
    payload_len: usize,
) -> Option<Ipv4Header> {
    let len = u16::try_from(payload_len).ok()?;
    let mut h = Ipv4Header::new(len, DEFAULT_TTL, protocol, src.octets(), dst.octets()).ok()?;
    h.header_checksum = h.calc_header_checksum();
    Some(h)
}

/// A UDP datagram in an IPv4 packet as an unconnected Linux socket sends it: DF set and
/// IP ID 0 (`ip_select_ident_segs` for DF packets of unconnected sockets), TTL 64, the UDP
/// checksum computed. `None` when the payload does not fit in one IPv4 packet.
pub fn udp_packet(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Option<Vec<u8>> {
    let mut ip = ipv4_header(src.0, dst.0, IpNumber::UDP, UdpHeader::LEN + payload.len())?;
    ip.dont_fragment = true;
    ip.identification = 0;
    ip.header_checksum = ip.calc_header_checksum();
    let udp = UdpHeader::with_ipv4_checksum(src.1, dst.1, &ip, payload).ok()?;
    let mut out = Vec::with_capacity(ip.header_len() + UdpHeader::LEN + payload.len());
    out.extend_from_slice(&ip.to_bytes());
    out.extend_from_slice(&udp.to_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// An IPv4/TCP packet: `flags` (etherparse's fin, syn, rst, psh, ack set from the bits
/// FIN 1, SYN 2, RST 4, PSH 8, ACK 16), DF set as Linux sends TCP, an MSS option of 1460 on a
/// SYN, `window` as given.
pub fn tcp_packet(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let mut tcp = etherparse::TcpHeader::new(src.1, dst.1, seq, window);
    tcp.fin = flags & 1 != 0;
    tcp.syn = flags & 2 != 0;
    tcp.rst = flags & 4 != 0;
    tcp.psh = flags & 8 != 0;
    tcp.ack = flags & 16 != 0;
    tcp.acknowledgment_number = if tcp.ack { ack } else { 0 };
    if tcp.syn {
        tcp.set_options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .ok()?;
    }
    let mut ip = ipv4_header(
        src.0,
        dst.0,
        IpNumber::TCP,
        tcp.header_len() + payload.len(),
    )?;
    ip.dont_fragment = true;
    ip.identification = 0;
    ip.header_checksum = ip.calc_header_checksum();
    tcp.checksum = tcp.calc_checksum_ipv4(&ip, payload).ok()?;
    let mut out = Vec::with_capacity(ip.header_len() + tcp.header_len() + payload.len());
    out.extend_from_slice(&ip.to_bytes());
    out.extend_from_slice(&tcp.to_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// A TCP header and its payload (checksum checked).
pub fn parse_tcp<'a>(
    ip: &Ipv4Header,
    payload: &'a [u8],
) -> Option<(etherparse::TcpHeader, &'a [u8])> {
    let (tcp, data) = etherparse::TcpHeader::from_slice(payload).ok()?;
    let want = tcp.calc_checksum_ipv4(ip, data).ok()?;
    (want == tcp.checksum).then_some((tcp, data))
}

/// A UDP header and its payload, checked against the IPv4 header (length and checksum).
pub fn parse_udp<'a>(ip: &Ipv4Header, payload: &'a [u8]) -> Option<(UdpHeader, &'a [u8])> {
    let (udp, _) = UdpHeader::from_slice(payload).ok()?;
    let len = usize::from(udp.length);
    let data = payload.get(UdpHeader::LEN..len)?;
    if udp.checksum != 0 {
        let want = udp.calc_checksum_ipv4(ip, data).ok()?;
        if want != udp.checksum {
            return None;
        }
    }
    Some((udp, data))
}

/// An ICMP error about `original` (the offending IPv4 packet), from `src` back to the
/// original's source: `icmp_send`'s layout, quoting as much of the original as fits in
/// 576 bytes, TOS = (original TOS & 0x1e) | 0xc0, TTL 64, DF clear, the given IP ID.
pub fn icmp_error(
    kind: Icmpv4Type,
    src: Ipv4Addr,
    original: &Ipv4View<'_>,
    ip_id: u16,
) -> Option<Vec<u8>> {
    let dst = Ipv4Addr::from(original.header.source);
    let room = ICMP_ERROR_MAX - Ipv4Header::MIN_LEN - 8;
    let quoted = &original.packet[..original.packet.len().min(room)];
    let icmp = Icmpv4Header::with_checksum(kind, quoted);
    let mut ip = ipv4_header(src, dst, IpNumber::ICMP, icmp.header_len() + quoted.len())?;
    let orig_tos = original.header.dscp.value() << 2 | original.header.ecn.value();
    let tos = (orig_tos & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL;
    ip.dscp = etherparse::IpDscp::try_new(tos >> 2).ok()?;
    ip.ecn = etherparse::IpEcn::try_new(tos & 3).ok()?;
    ip.identification = ip_id;
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = Vec::with_capacity(usize::from(ip.total_len));
    out.extend_from_slice(&ip.to_bytes());
    out.extend_from_slice(&icmp.to_bytes());
    out.extend_from_slice(quoted);
    Some(out)
}

/// Whether an ICMP message (the IPv4 payload) is an error, to which no error may answer
/// (RFC 1122 3.2.2; the kernel's `icmp_pointers[type].error`).
pub fn is_icmp_error(payload: &[u8]) -> bool {
    matches!(payload.first(), Some(3 | 4 | 5 | 11 | 12))
}

/// The packet with TTL decremented and the header checksum updated, as `ip_forward` does;
/// `None` if the bytes do not start with a valid IPv4 header.
pub fn decrement_ttl(packet: &[u8]) -> Option<Vec<u8>> {
    let (mut h, _) = Ipv4Header::from_slice(packet).ok()?;
    h.time_to_live = h.time_to_live.checked_sub(1)?;
    h.header_checksum = h.calc_header_checksum();
    let mut out = packet.to_vec();
    let bytes = h.to_bytes();
    out.get_mut(..bytes.len())?.copy_from_slice(&bytes);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn udp_roundtrip() {
        let p = udp_packet((A, 4000), (B, 53), b"hi").expect("udp");
        let v = parse_ipv4(&p).expect("ipv4");
        assert!(v.header.dont_fragment && v.header.identification == 0);
        let (u, data) = parse_udp(&v.header, v.payload).expect("udp");
        assert_eq!(
            (u.source_port, u.destination_port, data),
            (4000, 53, &b"hi"[..])
        );
    }

    #[test]
    fn truncated_and_bad_checksum_are_refused() {
        let p = udp_packet((A, 1), (B, 2), b"abc").expect("udp");
        assert!(parse_ipv4(&p[..p.len() - 1]).is_none());
        let mut bad = p.clone();
        bad[8] ^= 1; // TTL without a checksum update
        assert!(parse_ipv4(&bad).is_none());
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(parse_ipv4(&padded).expect("padded").packet, &p[..]);
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        let p = udp_packet((A, 1), (B, 2), b"x").expect("udp");
        let q = decrement_ttl(&p).expect("ttl");
        let v = parse_ipv4(&q).expect("valid");
        assert_eq!(v.header.time_to_live, DEFAULT_TTL - 1);
    }

    #[test]
    fn icmp_error_quotes_the_original() {
        let p = udp_packet((A, 1), (B, 2), &[7; 1000]).expect("udp");
        let v = parse_ipv4(&p).expect("ipv4");
        let e = icmp_error(
            Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port),
            B,
            &v,
            9,
        )
        .expect("icmp");
        assert_eq!(e.len(), ICMP_ERROR_MAX);
        let ev = parse_ipv4(&e).expect("ipv4");
        assert_eq!(Ipv4Addr::from(ev.header.destination), A);
        assert_eq!(&ev.payload[..2], &[3, 3]);
        assert_eq!(ev.header.dscp.value() << 2, 0xc0);
        assert!(is_icmp_error(ev.payload));
    }
}
