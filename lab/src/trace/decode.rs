//! Frame bytes → what the trace shows, with raw values; naming happens in `normalize`.
//!
//! Every function here takes untrusted bytes: they go through etherparse's checked slicing or
//! `get`, never indexing, so no input panics (proptested in `trace::tests`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{IpNumber, Ipv4HeaderSlice, LinkSlice, NetSlice, SlicedPacket, TransportSlice};

use crate::capture::{Frame, LinkType};

/// Nesting limit for encapsulated packets, so crafted input cannot recurse deeply.
const MAX_ENCAP_DEPTH: usize = 3;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Packet {
    /// IPv4 or IPv6.
    Ip(IpPacket),
    /// ARP request or reply.
    Arp {
        op: u16,
        sender_mac: [u8; 6],
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
    /// Another EtherType, not decoded.
    OtherEther { ethertype: u16, len: usize },
    /// Bytes that do not parse; `error` is etherparse's message.
    Malformed { error: String, len: usize },
}

/// An IP packet with its transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IpPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 identification (0 for IPv6).
    pub id: u16,
    pub l4: L4,
}

/// TCP header fields the trace uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// Raw flag bits, FIN = 0x01 … CWR = 0x80.
    pub flags: u8,
    pub window: u16,
    /// Option kinds in order, named as tcpdump names them.
    pub options: Vec<&'static str>,
    pub payload_len: usize,
    pub payload_hash: u64,
}

/// The transport part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum L4 {
    Tcp(Tcp),
    Udp {
        sport: u16,
        dport: u16,
        payload_len: usize,
        payload_hash: u64,
        encap: Option<Box<Packet>>,
    },
    Icmp(Icmp),
    /// IGMP: multicast group membership, timer-driven (filtered by default).
    Igmp(Igmp),
    /// A non-first fragment, or a first one whose transport header is not complete.
    Fragment {
        proto: u8,
        len: usize,
    },
    Other {
        proto: u8,
        len: usize,
    },
}

/// IGMP messages, with what tcpdump prints of them (print-igmp.c, without `-v`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Igmp {
    /// Membership query: version 1, 2 or 3 (told apart by length and max response code); the
    /// group, unless it is a general query (0.0.0.0).
    Query {
        version: u8,
        group: Option<Ipv4Addr>,
    },
    /// Version 1 or 2 report of one group.
    Report { version: u8, group: Ipv4Addr },
    /// Version 3 report: the number of group records.
    ReportV3 { records: u16 },
    /// Version 2 leave.
    Leave { group: Ipv4Addr },
    /// Another type, or a message too short for its type.
    Other { kind: u8 },
}

/// ICMP and ICMPv6 messages, with what tcpdump prints of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Icmp {
    Echo {
        reply: bool,
        seq: u16,
        len: usize,
    },
    /// Destination unreachable; the quoted packet's destination and transport.
    Unreachable {
        code: u8,
        dst: Option<IpAddr>,
        proto: u8,
        dport: Option<u16>,
        len: usize,
    },
    TimeExceeded {
        len: usize,
    },
    NeighborSolicitation {
        target: Option<Ipv6Addr>,
    },
    NeighborAdvertisement {
        target: Option<Ipv6Addr>,
    },
    RouterSolicitation,
    RouterAdvertisement,
    MulticastListenerReport,
    Other {
        v6: bool,
        kind: u8,
        code: u8,
        len: usize,
    },
}

/// Decodes a captured frame.
pub(crate) fn decode_frame(frame: &Frame, encap_ports: &[u16]) -> Packet {
    let sliced = match frame.link {
        LinkType::Ethernet => SlicedPacket::from_ethernet(&frame.data),
        LinkType::RawIp => SlicedPacket::from_ip(&frame.data),
        LinkType::Other(t) => {
            return Packet::Malformed {
                error: format!("link type {t} not decoded"),
                len: frame.data.len(),
            };
        }
    };
    let len = frame.orig_len as usize;
    match sliced {
        Ok(p) => from_sliced(&p, len, encap_ports, 0),
        Err(e) => Packet::Malformed {
            error: e.to_string(),
            len,
        },
    }
}

fn from_sliced(p: &SlicedPacket<'_>, len: usize, encap_ports: &[u16], depth: usize) -> Packet {
    let Some(net) = &p.net else {
        let ethertype = match &p.link {
            Some(LinkSlice::Ethernet2(e)) => e.ether_type().0,
            _ => 0,
        };
        return Packet::OtherEther { ethertype, len };
    };
    let (src, dst, id, payload) = match net {
        NetSlice::Ipv4(v4) => {
            let h = v4.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                h.identification(),
                v4.payload(),
            )
        }
        NetSlice::Ipv6(v6) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                0,
                v6.payload(),
            )
        }
        NetSlice::Arp(arp) => {
            let a = arp.to_packet();
            let ipv4 = |b: &[u8]| {
                <[u8; 4]>::try_from(b)
                    .map(Ipv4Addr::from)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED)
            };
            return Packet::Arp {
                op: a.operation.0,
                sender_mac: <[u8; 6]>::try_from(a.sender_hw_addr()).unwrap_or_default(),
                sender: ipv4(a.sender_protocol_addr()),
                target: ipv4(a.target_protocol_addr()),
            };
        }
    };
    let proto = payload.ip_number.0;
    let l4 = match &p.transport {
        Some(TransportSlice::Tcp(t)) => L4::Tcp(Tcp {
            sport: t.source_port(),
            dport: t.destination_port(),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            flags: t.header_slice().get(13).copied().unwrap_or(0),
            window: t.window_size(),
            options: option_kinds(t.options()),
            payload_len: t.payload().len(),
            payload_hash: hash(t.payload()),
        }),
        Some(TransportSlice::Udp(u)) => {
            let encapsulated =
                encap_ports.contains(&u.destination_port()) && depth < MAX_ENCAP_DEPTH;
            let encap = encapsulated.then(|| {
                Box::new(match SlicedPacket::from_ip(u.payload()) {
                    Ok(inner) => from_sliced(&inner, u.payload().len(), encap_ports, depth + 1),
                    Err(e) => Packet::Malformed {
                        error: e.to_string(),
                        len: u.payload().len(),
                    },
                })
            });
            L4::Udp {
                sport: u.source_port(),
                dport: u.destination_port(),
                payload_len: u.payload().len(),
                payload_hash: hash(u.payload()),
                encap,
            }
        }
        Some(TransportSlice::Icmpv4(i)) => {
            L4::Icmp(icmpv4(i.type_u8(), i.code_u8(), i.bytes5to8(), i.payload()))
        }
        Some(TransportSlice::Icmpv6(i)) => {
            L4::Icmp(icmpv6(i.type_u8(), i.code_u8(), i.bytes5to8(), i.payload()))
        }
        _ if payload.fragmented => L4::Fragment {
            proto,
            len: payload.payload.len(),
        },
        _ if payload.ip_number == IpNumber::IGMP => L4::Igmp(igmp(payload.payload)),
        Some(TransportSlice::Igmp(_)) | None => L4::Other {
            proto,
            len: payload.payload.len(),
        },
    };
    Packet::Ip(IpPacket { src, dst, id, l4 })
}

fn icmpv4(kind: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Icmp {
    let len = payload.len() + 8;
    match kind {
        0 | 8 => Icmp::Echo {
            reply: kind == 0,
            seq: u16::from_be_bytes([rest[2], rest[3]]),
            len,
        },
        3 => {
            // The quoted packet: its IPv4 header and the first 8 bytes of its transport.
            let quoted = Ipv4HeaderSlice::from_slice(payload).ok();
            let dst = quoted.as_ref().map(|h| IpAddr::V4(h.destination_addr()));
            let proto = quoted.as_ref().map(|h| h.protocol().0).unwrap_or(0);
            let dport = quoted.as_ref().and_then(|h| {
                let t = payload.get(h.slice().len()..)?;
                Some(u16::from_be_bytes([*t.get(2)?, *t.get(3)?]))
            });
            Icmp::Unreachable {
                code,
                dst,
                proto,
                dport,
                len,
            }
        }
        11 => Icmp::TimeExceeded { len },
        _ => Icmp::Other {
            v6: false,
            kind,
            code,
            len,
        },
    }
}

/// Decodes an IGMP message from its bytes (the IP payload, which ends where the message does).
fn igmp(msg: &[u8]) -> Igmp {
    let addr = |at: usize| {
        msg.get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(Ipv4Addr::from)
    };
    let kind = msg.first().copied().unwrap_or(0);
    let other = Igmp::Other { kind };
    match kind {
        0x11 => match addr(4) {
            // RFC 3376 7.1: a query of 12 bytes or more is v3; of 8, v2 unless its max
            // response code is 0 (v1).
            Some(group) => Igmp::Query {
                version: if msg.len() >= 12 {
                    3
                } else if msg.get(1).copied().unwrap_or(0) != 0 {
                    2
                } else {
                    1
                },
                group: (!group.is_unspecified()).then_some(group),
            },
            None => other,
        },
        0x12 | 0x16 => addr(4).map_or(other, |group| Igmp::Report {
            version: if kind == 0x12 { 1 } else { 2 },
            group,
        }),
        0x17 => addr(4).map_or(other, |group| Igmp::Leave { group }),
        0x22 => match msg.get(6..8) {
            Some(n) => Igmp::ReportV3 {
                records: u16::from_be_bytes([n[0], n[1]]),
            },
            None => other,
        },
        _ => other,
    }
}

fn icmpv6(kind: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Icmp {
    let len = payload.len() + 8;
    // NS and NA carry the target right after the 8-byte header.
    let target = || {
        payload
            .get(..16)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(Ipv6Addr::from)
    };
    match kind {
        128 | 129 => Icmp::Echo {
            reply: kind == 129,
            seq: u16::from_be_bytes([rest[2], rest[3]]),
            len,
        },
        133 => Icmp::RouterSolicitation,
        134 => Icmp::RouterAdvertisement,
        135 => Icmp::NeighborSolicitation { target: target() },
        136 => Icmp::NeighborAdvertisement { target: target() },
        131 | 143 => Icmp::MulticastListenerReport,
        _ => Icmp::Other {
            v6: true,
            kind,
            code,
            len,
        },
    }
}

/// TCP option kinds, as tcpdump names them; values are left out on purpose.
fn option_kinds(mut opts: &[u8]) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    while let Some((&kind, rest)) = opts.split_first() {
        kinds.push(match kind {
            0 => "eol",
            1 => "nop",
            2 => "mss",
            3 => "wscale",
            4 => "sackOK",
            5 => "sack",
            8 => "TS",
            30 => "mptcp",
            34 => "tfo",
            _ => "unknown",
        });
        if kind == 0 {
            break;
        }
        if kind == 1 {
            opts = rest;
            continue;
        }
        let len = rest.first().copied().unwrap_or(0) as usize;
        if len < 2 {
            break;
        }
        opts = opts.get(len..).unwrap_or(&[]);
    }
    kinds
}

/// FNV-1a over the first 64 bytes: tells apart packets of one flow with equal headers.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().take(64).fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// True for protocol numbers the trace names (tcp, udp, icmp).
pub(crate) fn proto_name(proto: u8) -> Option<&'static str> {
    match IpNumber(proto) {
        IpNumber::TCP => Some("tcp"),
        IpNumber::UDP => Some("udp"),
        IpNumber::ICMP => Some("icmp"),
        IpNumber::IPV6_ICMP => Some("icmp6"),
        _ => None,
    }
}
