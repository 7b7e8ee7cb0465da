//! Forwarding output, pure: Caplance-compatible UDP encapsulation, L2 direct server return,
//! MSS clamping and ICMP "fragmentation needed". See `docs/mtu.md` for the MTU reasoning.
//!
//! - UDP encapsulation: the whole original IPv4 packet, header included, is the payload of a
//!   UDP datagram to `<backend>:1337` (what Caplance's agent listens for). [`write_udp_encap`]
//!   builds the full outer IPv4 + UDP packet; an adapter sending through a UDP socket uses only
//!   the payload (`&out[ENCAP_OVERHEAD..]`).
//! - DSR: the frame goes to the backend's MAC with the balancer's MAC as source; nothing else
//!   changes (the backend holds the VIP on its loopback).

use crate::action::{Action, Framing};
use crate::forward::{ENCAP_OVERHEAD, ENCAP_PORT, ForwardConfig, ForwardMode, max_mss};
use crate::wire::{
    ETHERTYPE_IPV4, EthernetFrame, Ipv4Packet, MacAddr, ParseError, TcpPacket, UdpPacket, checksum,
};
use std::net::Ipv4Addr;

/// TTL of packets we originate.
const TTL: u8 = 64;
/// Bytes of the offending packet's payload quoted in an ICMP error (RFC 792: 64 bits).
const ICMP_QUOTE: usize = 8;

/// Why output could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The input is not the packet `decide` accepted.
    #[error("input packet: {0}")]
    Parse(#[from] ParseError),
    /// The outer packet would exceed 65 535 bytes.
    #[error("encapsulated packet of {len} bytes exceeds the IPv4 maximum")]
    TooLong {
        /// The inner packet's length.
        len: usize,
    },
    /// The action was a drop: there is nothing to send.
    #[error("nothing to emit for a dropped packet")]
    Dropped,
    /// In `dsr-kernel` mode the kernel forwards the packet itself: `lb` emits nothing.
    #[error("nothing to emit in dsr-kernel mode: the kernel forwards the packet")]
    KernelForwards,
}

/// What [`emit`] wrote to `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emitted {
    /// An outer IPv4 + UDP packet (the UDP payload is `out[ENCAP_OVERHEAD..]`), with the MSS
    /// rewrite if one was made.
    Encap {
        /// `(old, new)` MSS if a SYN was clamped.
        mss: Option<(u16, u16)>,
    },
    /// An Ethernet frame for the backend's MAC.
    Dsr,
    /// An ICMP "fragmentation needed" IPv4 packet for the client.
    FragNeeded,
}

/// The IPv4 packet inside `packet` (after the Ethernet header, without trailing padding).
pub fn ip_packet(packet: &[u8], framing: Framing) -> Result<&[u8], ParseError> {
    let l3 = match framing {
        // A cut packet fails the total-length check below: there is nothing whole to emit.
        Framing::Ipv4 | Framing::Ipv4Head => packet,
        Framing::Ethernet => {
            let frame = EthernetFrame::new_checked(packet)?;
            if frame.ethertype() != ETHERTYPE_IPV4 {
                return Err(ParseError::NotIpv4);
            }
            &packet[EthernetFrame::<&[u8]>::HEADER_LEN..]
        }
    };
    let total = usize::from(Ipv4Packet::new_checked(l3)?.total_len());
    Ok(&l3[..total])
}

/// Lowers the MSS option of a TCP SYN in an IPv4 packet to `max`, fixing the TCP checksum
/// incrementally; returns `(old, new)` if rewritten. Other packets are left unchanged.
pub fn clamp_mss(ip_packet: &mut [u8], max: u16) -> Result<Option<(u16, u16)>, ParseError> {
    let mut ip = Ipv4Packet::new_checked(ip_packet)?;
    if ip.protocol() != 6 || ip.is_fragment() {
        return Ok(None);
    }
    let mut tcp = TcpPacket::new_checked(ip.payload_mut())?;
    if !tcp.flags().syn() {
        return Ok(None);
    }
    Ok(tcp.clamp_mss(max))
}

/// Appends to `out` an IPv4 + UDP packet from `src:src_port` to `dst:1337` carrying `inner`.
///
/// The outer header copies the inner TOS, identification and DF bit (so a DF packet stays
/// unfragmented end to end); TTL is 64; both checksums are computed.
pub fn write_udp_encap(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    inner: &[u8],
) -> Result<(), EmitError> {
    let start = out.len();
    out.resize(start + ENCAP_OVERHEAD, 0);
    out.extend_from_slice(inner);
    let done = fill_udp_encap_headers(&mut out[start..], src, dst, src_port);
    if done.is_err() {
        out.truncate(start);
    }
    done
}

/// Fills the first 28 bytes of `buf` (whose rest is the inner packet) with the outer headers.
fn fill_udp_encap_headers(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
) -> Result<(), EmitError> {
    let total = u16::try_from(buf.len()).map_err(|_| EmitError::TooLong {
        len: buf.len().saturating_sub(ENCAP_OVERHEAD),
    })?;
    let (tos, ident, df) = match buf.get(ENCAP_OVERHEAD..).map(Ipv4Packet::new_checked) {
        Some(Ok(p)) => (p.tos(), p.ident(), p.dont_frag()),
        _ => (0, 0, false),
    };
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[..]);
    ip.set_version_and_header_len(Ipv4Packet::<&[u8]>::MIN_HEADER_LEN);
    ip.set_tos(tos);
    ip.set_total_len(total);
    ip.set_ident(ident);
    ip.set_dont_frag(df);
    ip.set_ttl(TTL);
    ip.set_protocol(17);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    let mut udp = UdpPacket::new_unchecked(&mut buf[Ipv4Packet::<&[u8]>::MIN_HEADER_LEN..]);
    udp.set_src_port(src_port);
    udp.set_dst_port(ENCAP_PORT);
    udp.set_len(total - Ipv4Packet::<&[u8]>::MIN_HEADER_LEN as u16);
    udp.fill_checksum(src, dst);
    Ok(())
}

/// Rewrites a frame in place for DSR: destination = backend MAC, source = balancer MAC.
pub fn dsr_rewrite(
    frame: &mut [u8],
    backend_mac: MacAddr,
    local_mac: MacAddr,
) -> Result<(), ParseError> {
    let mut frame = EthernetFrame::new_checked(frame)?;
    frame.set_dst_addr(backend_mac);
    frame.set_src_addr(local_mac);
    Ok(())
}

/// Appends to `out` a DSR frame carrying `ip_packet` from `local_mac` to `backend_mac`.
pub fn write_dsr_frame(
    out: &mut Vec<u8>,
    ip_packet: &[u8],
    backend_mac: MacAddr,
    local_mac: MacAddr,
) {
    let start = out.len();
    out.resize(start + EthernetFrame::<&[u8]>::HEADER_LEN, 0);
    let mut frame = EthernetFrame::new_unchecked(&mut out[start..]);
    frame.set_dst_addr(backend_mac);
    frame.set_src_addr(local_mac);
    frame.set_ethertype(ETHERTYPE_IPV4);
    out.extend_from_slice(ip_packet);
}

/// Appends to `out` an ICMP "fragmentation needed" (type 3 code 4) IPv4 packet from `local_ip`
/// to the sender of `offending` (an IPv4 packet), announcing `next_hop_mtu` (RFC 1191) and
/// quoting the offending header plus the first 8 bytes of its payload (RFC 792).
pub fn write_icmp_frag_needed(
    out: &mut Vec<u8>,
    local_ip: Ipv4Addr,
    offending: &[u8],
    next_hop_mtu: u16,
) -> Result<(), EmitError> {
    let orig = Ipv4Packet::new_checked(offending)?;
    let quote_len = (orig.header_len() + ICMP_QUOTE).min(usize::from(orig.total_len()));
    let icmp_len = 8 + quote_len;
    let total = Ipv4Packet::<&[u8]>::MIN_HEADER_LEN + icmp_len;
    let start = out.len();
    out.resize(start + total, 0);
    let buf = &mut out[start..];
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[..]);
    ip.set_version_and_header_len(Ipv4Packet::<&[u8]>::MIN_HEADER_LEN);
    // Precedence "internetwork control", as routers (and Linux) send ICMP errors.
    ip.set_tos(0xc0);
    ip.set_total_len(total as u16);
    ip.set_ident(0);
    ip.set_dont_frag(false);
    ip.set_ttl(TTL);
    ip.set_protocol(1);
    ip.set_src_addr(local_ip);
    ip.set_dst_addr(orig.src_addr());
    ip.fill_checksum();
    let icmp = &mut buf[Ipv4Packet::<&[u8]>::MIN_HEADER_LEN..];
    icmp[0] = 3; // destination unreachable
    icmp[1] = 4; // fragmentation needed and DF set
    icmp[6..8].copy_from_slice(&next_hop_mtu.to_be_bytes());
    icmp[8..].copy_from_slice(&offending[..quote_len]);
    let check = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    Ok(())
}

/// Writes the full TCP or UDP checksum of `ip_packet` (an IPv4 packet, not a fragment).
///
/// Packets handed over by the kernel before their checksum was finished (`CHECKSUM_PARTIAL`:
/// sent by a local or virtual device with checksum offload, e.g. a veth peer, and reported as
/// `TP_STATUS_CSUMNOTREADY` by AF_PACKET or `NFQA_SKB_CSUMNOTREADY` by NFQUEUE) carry only the
/// pseudo-header sum in that field. A forwarder that moves such a packet to another host must
/// complete it, or the backend's kernel discards the packet. Other protocols are left alone.
pub fn complete_l4_checksum(ip_packet: &mut [u8]) -> Result<(), ParseError> {
    let ip = Ipv4Packet::new_checked(&*ip_packet)?;
    if ip.is_fragment() {
        return Ok(());
    }
    let (hl, total, proto) = (ip.header_len(), usize::from(ip.total_len()), ip.protocol());
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => return Ok(()),
    };
    let l4 = &mut ip_packet[hl..total];
    if l4.len() < at + 2 {
        return Err(match proto {
            6 => ParseError::TcpTruncated,
            _ => ParseError::UdpTruncated,
        });
    }
    l4[at..at + 2].fill(0);
    let sum = checksum::pseudo_header(src, dst, proto, l4.len() as u16);
    let mut check = checksum::finish(checksum::accumulate(sum, l4));
    if proto == 17 && check == 0 {
        check = 0xffff;
    }
    l4[at..at + 2].copy_from_slice(&check.to_be_bytes());
    Ok(())
}

/// Appends to `out` the bytes to send for `action` taken on `packet` (as given to `decide`).
pub fn emit(
    cfg: &ForwardConfig,
    framing: Framing,
    action: &Action,
    packet: &[u8],
    out: &mut Vec<u8>,
) -> Result<Emitted, EmitError> {
    let inner = ip_packet(packet, framing)?;
    match *action {
        Action::Drop(_) => Err(EmitError::Dropped),
        Action::FragNeeded { next_hop_mtu } => {
            write_icmp_frag_needed(out, cfg.local_ip, inner, next_hop_mtu)?;
            Ok(Emitted::FragNeeded)
        }
        Action::Forward { addr, mac, .. } => match cfg.mode {
            ForwardMode::UdpEncap => {
                let start = out.len();
                out.resize(start + ENCAP_OVERHEAD, 0);
                out.extend_from_slice(inner);
                // Clamp first: the outer UDP checksum covers the inner packet.
                let clamped = match cfg.clamp_mss {
                    true => clamp_mss(&mut out[start + ENCAP_OVERHEAD..], max_mss(cfg.mtu)),
                    false => Ok(None),
                };
                let done = clamped.map_err(EmitError::from).and_then(|mss| {
                    fill_udp_encap_headers(
                        &mut out[start..],
                        cfg.local_ip,
                        addr,
                        cfg.encap_src_port,
                    )
                    .map(|()| mss)
                });
                match done {
                    Ok(mss) => Ok(Emitted::Encap { mss }),
                    Err(e) => {
                        out.truncate(start);
                        Err(e)
                    }
                }
            }
            ForwardMode::Dsr => {
                match framing {
                    Framing::Ethernet => {
                        let start = out.len();
                        out.extend_from_slice(packet);
                        dsr_rewrite(&mut out[start..], mac, cfg.local_mac)?;
                    }
                    Framing::Ipv4 | Framing::Ipv4Head => {
                        write_dsr_frame(out, inner, mac, cfg.local_mac)
                    }
                }
                Ok(Emitted::Dsr)
            }
            ForwardMode::DsrKernel => Err(EmitError::KernelForwards),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        Icmpv4Type, IpNumber, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
        icmpv4::DestUnreachableHeader,
    };

    const CLIENT: [u8; 4] = [10, 0, 0, 9];
    const VIP: [u8; 4] = [10, 0, 0, 50];
    const LB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn syn(mss: u16, payload: usize) -> Vec<u8> {
        let b = PacketBuilder::ipv4(CLIENT, VIP, 64)
            .tcp(40000, 80, 7, 64240)
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(mss)])
            .unwrap();
        let mut out = Vec::new();
        b.write(&mut out, &vec![0xab; payload]).unwrap();
        out
    }

    fn tcp_checksum_ok(ip_packet: &[u8]) -> bool {
        let s = SlicedPacket::from_ip(ip_packet).unwrap();
        let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) = (s.net, s.transport)
        else {
            return false;
        };
        let expected = tcp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
            .unwrap();
        expected == tcp.checksum()
    }

    #[test]
    fn udp_encap_outer_packet() {
        let inner = syn(1460, 0);
        let mut out = vec![0xee]; // appending keeps what was there
        write_udp_encap(&mut out, LB, BACKEND, 40001, &inner).unwrap();
        assert_eq!(out[0], 0xee);
        let outer = &out[1..];
        assert_eq!(outer.len(), inner.len() + ENCAP_OVERHEAD);
        let s = SlicedPacket::from_ip(outer).unwrap();
        let Some(NetSlice::Ipv4(ip)) = s.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(
            (h.source, h.destination, h.protocol),
            (LB.octets(), BACKEND.octets(), IpNumber::UDP)
        );
        assert!(h.dont_fragment, "DF is copied from the inner packet");
        let Some(TransportSlice::Udp(udp)) = s.transport else {
            panic!("not UDP")
        };
        assert_eq!(
            (udp.source_port(), udp.destination_port()),
            (40001, ENCAP_PORT)
        );
        assert_eq!(udp.payload(), &inner[..]);
        let want = udp
            .to_header()
            .calc_checksum_ipv4(&h, udp.payload())
            .unwrap();
        assert_eq!(udp.checksum(), want);
    }

    #[test]
    fn clamp_mss_on_syn_only() {
        let mut p = syn(1460, 0);
        assert_eq!(
            clamp_mss(&mut p, max_mss(1500)).unwrap(),
            Some((1460, 1432))
        );
        assert!(tcp_checksum_ok(&p));
        let mut small = syn(1200, 0);
        assert_eq!(clamp_mss(&mut small, 1432).unwrap(), None);
        let mut ack = PacketBuilder::ipv4(CLIENT, VIP, 64)
            .tcp(40000, 80, 7, 64240)
            .ack(1)
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .map(|b| {
                let mut v = Vec::new();
                b.write(&mut v, &[]).unwrap();
                v
            })
            .unwrap();
        assert_eq!(clamp_mss(&mut ack, 1432).unwrap(), None);
        assert_eq!(
            clamp_mss(&mut [0u8; 10], 1432),
            Err(ParseError::Ipv4Truncated)
        );
    }

    #[test]
    fn icmp_frag_needed_reply() {
        let big = syn(1460, 1456); // 20 + 24 + 1456 = 1500 bytes, DF
        assert_eq!(big.len(), 1500);
        let mut out = Vec::new();
        write_icmp_frag_needed(&mut out, LB, &big, 1472).unwrap();
        assert_eq!(out.len(), 20 + 8 + 20 + 8);
        let s = SlicedPacket::from_ip(&out).unwrap();
        let Some(NetSlice::Ipv4(ip)) = s.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!((h.source, h.destination), (LB.octets(), CLIENT));
        let Some(TransportSlice::Icmpv4(icmp)) = s.transport else {
            panic!("not ICMP")
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1472
            })
        );
        assert_eq!(
            icmp.checksum(),
            icmp.icmp_type().calc_checksum(icmp.payload())
        );
        assert_eq!(icmp.payload(), &big[..28]);
    }

    #[test]
    fn dsr_frame_and_rewrite() {
        let inner = syn(1460, 0);
        let (backend, local) = (MacAddr([2, 0, 0, 0, 0, 2]), MacAddr([2, 0, 0, 0, 0, 1]));
        let mut out = Vec::new();
        write_dsr_frame(&mut out, &inner, backend, local);
        let f = EthernetFrame::new_checked(&out[..]).unwrap();
        assert_eq!(
            (f.dst_addr(), f.src_addr(), f.ethertype()),
            (backend, local, ETHERTYPE_IPV4)
        );
        assert_eq!(f.payload(), &inner[..]);
        let mut frame = out.clone();
        dsr_rewrite(&mut frame, MacAddr([9; 6]), MacAddr([8; 6])).unwrap();
        assert_eq!(&frame[..12], &[9, 9, 9, 9, 9, 9, 8, 8, 8, 8, 8, 8]);
        assert_eq!(&frame[12..], &out[12..]);
        assert_eq!(
            dsr_rewrite(&mut [0u8; 13], backend, local),
            Err(ParseError::EthernetTruncated)
        );
    }

    #[test]
    fn emit_clamps_inside_the_encapsulation() {
        let cfg = ForwardConfig {
            local_ip: LB,
            clamp_mss: true,
            ..ForwardConfig::default()
        };
        let action = Action::Forward {
            backend: crate::backend::BackendId::from_raw(0, 0),
            addr: BACKEND,
            mac: MacAddr::default(),
            new_flow: true,
        };
        let mut out = Vec::new();
        let e = emit(&cfg, Framing::Ipv4, &action, &syn(1460, 0), &mut out).unwrap();
        assert_eq!(
            e,
            Emitted::Encap {
                mss: Some((1460, 1432))
            }
        );
        assert!(tcp_checksum_ok(&out[ENCAP_OVERHEAD..]));
        let s = SlicedPacket::from_ip(&out).unwrap();
        let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(udp))) = (s.net, s.transport)
        else {
            panic!("not IPv4/UDP")
        };
        let want = udp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), udp.payload())
            .unwrap();
        assert_eq!(
            udp.checksum(),
            want,
            "outer checksum covers the clamped inner packet"
        );
        let drop = Action::Drop(crate::action::DropReason::NotVip);
        assert_eq!(
            emit(&cfg, Framing::Ipv4, &drop, &syn(1460, 0), &mut Vec::new()),
            Err(EmitError::Dropped)
        );
    }

    #[test]
    fn completes_partial_checksums() {
        let udp = {
            let b = PacketBuilder::ipv4(CLIENT, VIP, 64).udp(40000, 8080);
            let mut v = Vec::new();
            b.write(&mut v, b"udp hello").unwrap();
            v
        };
        for good in [syn(1460, 0), syn(1460, 333), udp] {
            let at = 20 + if good[9] == 6 { 16 } else { 6 };
            let mut partial = good.clone();
            // What a CHECKSUM_PARTIAL packet carries: the pseudo-header sum, not complemented.
            let ph = checksum::pseudo_header(
                Ipv4Addr::from(CLIENT),
                Ipv4Addr::from(VIP),
                good[9],
                (good.len() - 20) as u16,
            );
            let folded = !checksum::finish(ph);
            partial[at..at + 2].copy_from_slice(&folded.to_be_bytes());
            assert_ne!(partial, good);
            complete_l4_checksum(&mut partial).unwrap();
            assert_eq!(partial, good);
        }
        assert!(complete_l4_checksum(&mut [0x45, 0, 0]).is_err());
    }
}
