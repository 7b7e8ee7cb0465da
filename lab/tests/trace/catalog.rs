//! One of each kind of line the trace writes; the examples of docs/trace-format.md.

use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, PacketBuilderStep, TcpHeader,
};
use lab::assert_trace;
use lab::capture::{CapturePoint, Frame, PacketType};
use lab::trace::{NameMap, Ordering, Trace, TraceOptions};

use super::seed::{H1, H2, H3, VIP, names};

const M1: [u8; 6] = [2, 0, 0, 0, 0, 1];
const M2: [u8; 6] = [2, 0, 0, 0, 0, 2];
const M3: [u8; 6] = [2, 0, 0, 0, 0, 3];

fn write<T>(b: PacketBuilderStep<T>, payload: &[u8]) -> Vec<u8>
where
    PacketBuilderStep<T>: Writable,
{
    b.write_vec(payload)
}

/// `PacketBuilderStep::write` exists per step type; this trait gives it one name here.
trait Writable {
    fn write_vec(self, payload: &[u8]) -> Vec<u8>;
}

macro_rules! writable {
    ($($t:ty),*) => {$(
        impl Writable for PacketBuilderStep<$t> {
            fn write_vec(self, payload: &[u8]) -> Vec<u8> {
                let mut out = Vec::new();
                self.write(&mut out, payload).expect("build");
                out
            }
        }
    )*};
}
writable!(
    etherparse::UdpHeader,
    etherparse::Icmpv4Header,
    etherparse::Icmpv6Header,
    TcpHeader
);

fn eth4(
    src: ([u8; 6], [u8; 4]),
    dst: ([u8; 6], [u8; 4]),
) -> PacketBuilderStep<etherparse::IpHeaders> {
    PacketBuilder::ethernet2(src.0, dst.0).ipv4(src.1, dst.1, 64)
}

fn tcp(
    src: ([u8; 6], [u8; 4]),
    dst: ([u8; 6], [u8; 4]),
    ports: (u16, u16),
    seq: u32,
    set: &str,
    ack: u32,
    data: &[u8],
) -> Vec<u8> {
    let mut b = eth4(src, dst).tcp(ports.0, ports.1, seq, 502);
    for c in set.chars() {
        b = match c {
            'S' => b.syn(),
            'F' => b.fin(),
            'P' => b.psh(),
            'R' => b.rst(),
            '.' => b.ack(ack),
            _ => unreachable!("flag {c}"),
        };
    }
    write(b, data)
}

fn point(host: &str, iface: &str, frames: Vec<(PacketType, Vec<u8>)>) -> CapturePoint {
    let mut p = CapturePoint::new(host, Some(iface));
    p.frames = frames
        .into_iter()
        .enumerate()
        .map(|(i, (t, d))| Frame::ethernet(Duration::from_millis(i as u64), t, iface, d))
        .collect();
    p
}

/// h3's view of a bit of everything.
fn catalog() -> Vec<CapturePoint> {
    use PacketType::{Broadcast, Host, Outgoing};
    let (h1, h2, h3, vip) = ((M1, H1), (M2, H2), (M3, H3), (M1, VIP));
    let burst: Vec<_> = (0..3)
        .map(|i| (Outgoing, write(eth4(h3, h2).udp(41000, 9000), &[i; 5])))
        .collect();
    let unreachable_quote = {
        let mut q = Vec::new();
        PacketBuilder::ipv4(H3, H2, 64)
            .udp(41002, 9)
            .write(&mut q, b"")
            .expect("quote");
        q
    };
    let inner_udp = {
        let mut q = Vec::new();
        PacketBuilder::ipv4(H3, VIP, 64)
            .udp(41003, 53)
            .write(&mut q, &[0; 12])
            .expect("inner");
        q
    };
    let arp_request = {
        let a = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REQUEST,
            &M3,
            &H3,
            &[0; 6],
            &H2,
        );
        let mut out = Vec::new();
        PacketBuilder::ethernet2(M3, [0xff; 6])
            .arp(a.expect("arp"))
            .write(&mut out)
            .expect("arp");
        out
    };
    let arp_reply = {
        let a = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REPLY,
            &M2,
            &H2,
            &M3,
            &H3,
        );
        let mut out = Vec::new();
        PacketBuilder::ethernet2(M2, M3)
            .arp(a.expect("arp"))
            .write(&mut out)
            .expect("arp");
        out
    };
    let ns = {
        let src = [
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x3c, 0x11, 0xff, 0xfe, 0x22, 0x33, 0x44,
        ];
        let solicited = [
            0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0x55, 0x66, 0x77,
        ];
        let target = [
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x5c, 0x11, 0xff, 0xfe, 0x55, 0x66, 0x77,
        ];
        let b = PacketBuilder::ethernet2(M3, [0x33, 0x33, 0xff, 0x55, 0x66, 0x77])
            .ipv6(src, solicited, 255)
            .icmpv6_raw(135, 0, [0; 4]);
        write(b, &target)
    };
    let fragment = {
        let mut ip =
            etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, H3, H2).expect("ip");
        ip.more_fragments = true;
        let b = PacketBuilder::ethernet2(M3, M2)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()));
        write(b.udp(41005, 9000), &[0; 1472])
    };
    let mut truncated = tcp(h3, vip, (41004, 8080), 1, "S", 0, b"");
    truncated.truncate(40);
    let (c, s) = (1_000_000u32, 3_000_000_000u32);
    let mut frames = burst;
    frames.extend([
        (
            Outgoing,
            write(eth4(h3, h2).icmpv4_echo_request(4711, 1), &[0; 56]),
        ),
        (
            Host,
            write(eth4(h2, h3).icmpv4_echo_reply(4711, 1), &[0; 56]),
        ),
        (Outgoing, write(eth4(h3, h2).udp(41002, 9), b"")),
        (
            Host,
            write(eth4(h2, h3).icmpv4_raw(3, 3, [0; 4]), &unreachable_quote),
        ),
        (Outgoing, tcp(h3, vip, (41001, 8080), c, "S", 0, b"")),
        (Host, tcp(vip, h3, (8080, 41001), s, "S.", c + 1, b"")),
        (
            Outgoing,
            tcp(h3, vip, (41001, 8080), c + 1, ".", s + 1, b""),
        ),
        (
            Outgoing,
            tcp(h3, vip, (41001, 8080), c + 1, "P.", s + 1, b"hello"),
        ),
        (Host, tcp(vip, h3, (8080, 41001), s + 1, "P.", c + 6, b"hi")),
        (
            Outgoing,
            tcp(h3, vip, (41001, 8080), c + 6, "FP.", s + 3, b"bye"),
        ),
        (Host, tcp(vip, h3, (8080, 41001), s + 3, "F.", c + 10, b"")),
        (
            Outgoing,
            tcp(h3, vip, (41001, 8080), c + 10, ".", s + 4, b""),
        ),
        (Outgoing, write(eth4(h1, h2).udp(45000, 1337), &inner_udp)),
        (Outgoing, fragment),
        (Broadcast, arp_request),
        (Host, arp_reply),
        (Outgoing, ns),
        (Host, truncated),
    ]);
    vec![point("h3", "h3-eth0", frames)]
}

#[test]
fn catalog_default_options() {
    assert_trace!(
        "catalog_default_options",
        Trace::build(&catalog(), &names(), &TraceOptions::default())
    );
}

#[test]
fn catalog_with_arp_ipv6_and_direction() {
    let options = TraceOptions {
        arp: true,
        ipv6: true,
        direction: true,
        ..TraceOptions::default()
    };
    assert_trace!(
        "catalog_with_arp_ipv6_and_direction",
        Trace::build(&catalog(), &names(), &options)
    );
}

#[test]
fn sort_arrivals_makes_a_race_between_two_senders_stable() {
    // h2 receives datagrams from h1 and h3 at once: either order may be captured.
    let from = |src: ([u8; 6], [u8; 4]), port| {
        (
            PacketType::Host,
            write(eth4(src, (M2, H2)).udp(port, 9000), b"x"),
        )
    };
    let one = point(
        "h2",
        "h2-eth0",
        vec![from((M1, H1), 50000), from((M3, H3), 40000)],
    );
    let other = point(
        "h2",
        "h2-eth0",
        vec![from((M3, H3), 40001), from((M1, H1), 50001)],
    );
    let sorted = TraceOptions {
        ordering: Ordering::SortArrivals,
        ..TraceOptions::default()
    };
    let (a, b) = (
        Trace::build(&[one], &names(), &sorted),
        Trace::build(&[other], &names(), &sorted),
    );
    assert_eq!(a, b);
    assert_eq!(
        a.sections[0].lines,
        [
            "h1.p1 > h2.9000: UDP, length 1",
            "h3.p1 > h2.9000: UDP, length 1"
        ]
    );
}

#[test]
fn unnamed_addresses_are_numbers() {
    let p = point(
        "h3",
        "h3-eth0",
        vec![(
            PacketType::Outgoing,
            write(eth4((M3, H3), (M1, [192, 168, 7, 7])).udp(40000, 53), b""),
        )],
    );
    let t = Trace::build(
        &[p],
        &NameMap::new().host("h3", Ipv4Addr::from(H3)),
        &TraceOptions::default(),
    );
    assert_eq!(
        t.sections[0].lines,
        ["h3.p1 > 192.168.7.7.53: UDP, length 0"]
    );
}
