use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::PacketBuilder;
use proptest::prelude::*;

use super::*;
use crate::capture::{Frame, LinkType};

const H2: [u8; 4] = [10, 0, 0, 2];
const H3: [u8; 4] = [10, 0, 0, 3];

fn names() -> NameMap {
    NameMap::new()
        .host("h2", Ipv4Addr::from(H2))
        .host("h3", Ipv4Addr::from(H3))
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv4(H3, H2, 64)
        .udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("build");
    out
}

fn point(frames: Vec<Vec<u8>>) -> CapturePoint {
    let mut p = CapturePoint::new("h2", Some("h2-eth0"));
    p.frames = frames
        .into_iter()
        .map(|d| Frame::ethernet(Duration::ZERO, PacketType::Host, "h2-eth0", d))
        .collect();
    p
}

fn render(frames: Vec<Vec<u8>>, options: &TraceOptions) -> String {
    Trace::build(&[point(frames)], &names(), options).to_string()
}

#[test]
fn ephemeral_ports_alias_per_address_in_order_of_appearance() {
    let frames = vec![
        udp(40000, 53, b"a"),
        udp(50000, 53, b"b"),
        udp(40000, 53, b"c"),
        udp(1000, 40000, b"d"),
    ];
    let out = render(frames, &TraceOptions::default());
    assert_eq!(
        out,
        "--- h2 (h2-eth0) ---\n\
         h3.p1 > h2.53: UDP, length 1\n\
         h3.p2 > h2.53: UDP, length 1\n\
         h3.p1 > h2.53: UDP, length 1\n\
         h3.1000 > h2.p1: UDP, length 1\n"
    );
}

#[test]
fn tcp_and_udp_on_the_same_port_number_get_separate_aliases() {
    // The kernel may give a TCP socket the number a UDP socket of the same host holds (the
    // ranges are separate); the aliases must not depend on that coincidence.
    let frames = vec![udp(40000, 53, b"a"), tcp(true, 7, None, true, b"")];
    let out = render(frames, &TraceOptions::default());
    assert_eq!(
        out,
        "--- h2 (h2-eth0) ---\n\
         h3.p1 > h2.53: UDP, length 1\n\
         h3.p2 > h2.8080: Flags [S], seq 0, length 0\n"
    );
}

#[test]
fn service_ports_stay_numeric() {
    let map = names().service_port(40000);
    let out = Trace::build(
        &[point(vec![udp(50000, 40000, b"")])],
        &map,
        &TraceOptions::default(),
    );
    assert_eq!(out.sections[0].lines, ["h3.p1 > h2.40000: UDP, length 0"]);
}

#[test]
fn truncated_and_garbage_frames_get_a_malformed_line() {
    let mut frame = udp(40000, 53, b"hello");
    frame.truncate(30);
    let out = render(vec![frame, vec![1, 2, 3]], &TraceOptions::default());
    assert!(out.contains("malformed frame ("), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("malformed frame"))
            .count(),
        2,
        "{out}"
    );
}

#[test]
fn arp_is_filtered_unless_asked_for() {
    let arp = {
        let b = PacketBuilder::ethernet2([2; 6], [0xff; 6]).arp(
            etherparse::ArpPacket::new(
                etherparse::ArpHardwareId::ETHERNET,
                etherparse::EtherType::IPV4,
                etherparse::ArpOperation::REQUEST,
                &[2; 6],
                &H3,
                &[0; 6],
                &H2,
            )
            .expect("arp"),
        );
        let mut out = Vec::new();
        b.write(&mut out).expect("build");
        out
    };
    let hidden = Trace::build(
        &[point(vec![arp.clone()])],
        &names(),
        &TraceOptions::default(),
    );
    assert_eq!(
        (hidden.sections[0].lines.len(), hidden.sections[0].filtered),
        (0, 1)
    );
    let shown = render(
        vec![arp],
        &TraceOptions {
            arp: true,
            ..TraceOptions::default()
        },
    );
    assert!(shown.contains("ARP, Request who-has h2 tell h3"), "{shown}");
}

/// The bridge's IGMPv3 report for the all-snoopers group 224.0.0.106, as captured after
/// `lab up` before bridges were created with multicast snooping off (Router Alert option
/// included; checksums left at zero, the decoder does not check them).
static IGMP_V3_REPORT: [u8; 54] = [
    0x01, 0x00, 0x5e, 0x00, 0x00, 0x16, 0x26, 0x68, 0x2f, 0xec, 0x78, 0x6e, 0x08, 0x00, // eth
    0x46, 0xc0, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0x00, 0x00, // IPv4, ihl 6
    0x00, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x16, 0x94, 0x04, 0x00,
    0x00, // 0.0.0.0 > .22, RA
    0x22, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // v3 report, 1 record
    0x04, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x6a, // change to exclude 224.0.0.106
];

/// An IGMP message from h3 to `group` in a frame without IP options.
fn igmp(msg: &[u8], group: [u8; 4]) -> Vec<u8> {
    let mut ip =
        etherparse::Ipv4Header::new(msg.len() as u16, 1, etherparse::IpNumber::IGMP, H3, group)
            .expect("header");
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = Vec::new();
    etherparse::Ethernet2Header {
        source: [2; 6],
        destination: [1, 0, 0x5e, 0, 0, 1],
        ether_type: etherparse::EtherType::IPV4,
    }
    .write(&mut out)
    .expect("eth");
    ip.write(&mut out).expect("ip");
    out.extend_from_slice(msg);
    out
}

#[test]
fn igmp_is_filtered_unless_asked_for_and_reads_like_tcpdump() {
    let frames = vec![
        IGMP_V3_REPORT.to_vec(),
        igmp(&[0x16, 0, 0, 0, 239, 1, 2, 3], [239, 1, 2, 3]),
        igmp(&[0x17, 0, 0, 0, 239, 1, 2, 3], [224, 0, 0, 2]),
        igmp(&[0x12, 0, 0, 0, 239, 1, 2, 3], [239, 1, 2, 3]),
        igmp(&[0x11, 100, 0, 0, 0, 0, 0, 0], [224, 0, 0, 1]),
        igmp(&[0x11, 0, 0, 0, 239, 1, 2, 3], [239, 1, 2, 3]),
        igmp(&[0x11, 100, 0, 0, 0, 0, 0, 0, 2, 125, 0, 0], [224, 0, 0, 1]),
        igmp(&[0x30, 0, 0, 0, 0, 0, 0, 0], [224, 0, 0, 1]),
    ];
    let hidden = Trace::build(&[point(frames.clone())], &names(), &TraceOptions::default());
    assert_eq!(
        (hidden.sections[0].lines.len(), hidden.sections[0].filtered),
        (0, frames.len())
    );
    let options = TraceOptions {
        igmp: true,
        ..TraceOptions::default()
    };
    let shown = Trace::build(&[point(frames)], &names(), &options);
    assert_eq!(
        shown.sections[0].lines,
        [
            "0.0.0.0 > 224.0.0.22: igmp v3 report, 1 group record(s)",
            "h3 > 239.1.2.3: igmp v2 report 239.1.2.3",
            "h3 > 224.0.0.2: igmp leave 239.1.2.3",
            "h3 > 239.1.2.3: igmp v1 report 239.1.2.3",
            "h3 > 224.0.0.1: igmp query v2",
            "h3 > 239.1.2.3: igmp query v1 [gaddr 239.1.2.3]",
            "h3 > 224.0.0.1: igmp query v3",
            "h3 > 224.0.0.1: igmp-48",
        ]
    );
    // Too short to be IGMP: malformed, and shown as every malformed IPv4 frame is.
    let cut = Trace::build(
        &[point(vec![igmp(&[0x22, 0, 0], [224, 0, 0, 22])])],
        &names(),
        &TraceOptions::default(),
    );
    assert_eq!(cut.sections[0].lines.len(), 1, "{cut}");
    assert!(
        cut.sections[0].lines[0].starts_with("malformed frame ("),
        "{cut}"
    );
}

#[test]
fn sort_arrivals_orders_runs_of_received_packets() {
    let frames = vec![udp(1000, 2, b""), udp(1000, 1, b"")];
    let captured = render(frames.clone(), &TraceOptions::default());
    let sorted = render(
        frames,
        &TraceOptions {
            ordering: Ordering::SortArrivals,
            ..TraceOptions::default()
        },
    );
    assert!(
        captured.contains("h2.2: UDP, length 0\nh3.1000 > h2.1:"),
        "{captured}"
    );
    assert!(
        sorted.contains("h2.1: UDP, length 0\nh3.1000 > h2.2:"),
        "{sorted}"
    );
}

/// A TCP segment of the connection h3:40000 → h2:8080 (`from_h3`) or its reply direction.
fn tcp(from_h3: bool, seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sport, dport) = if from_h3 {
        (H3, H2, 40000, 8080)
    } else {
        (H2, H3, 8080, 40000)
    };
    let mut b = PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 1024);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("build");
    out
}

/// The live builder's lines, frame by frame.
fn live(p: &CapturePoint, options: &TraceOptions) -> Vec<String> {
    let names = names();
    let mut b = TraceBuilder::new(&names, options, p.interface.is_none());
    let lines: Vec<String> = p.frames.iter().filter_map(|f| b.push(f)).collect();
    assert_eq!(b.shown() + b.filtered(), p.frames.len());
    lines
}

#[test]
fn live_builder_matches_the_whole_trace() {
    let frames = vec![
        tcp(true, 1000, None, true, b""),
        tcp(false, 7000, Some(1001), true, b""),
        tcp(true, 1001, Some(7001), false, b""),
        tcp(true, 1001, Some(7001), false, b"hello"),
        udp(50000, 9000, b"x"),
        tcp(false, 7001, Some(1006), false, b"ok"),
    ];
    let p = point(frames);
    let options = TraceOptions {
        direction: true,
        ..TraceOptions::default()
    };
    let whole = Trace::build(std::slice::from_ref(&p), &names(), &options);
    assert_eq!(live(&p, &options), whole.sections[0].lines);
    assert_eq!(
        live(&p, &TraceOptions::default())[..2],
        [
            "h3.p1 > h2.8080: Flags [S], seq 0, length 0",
            "h2.8080 > h3.p1: Flags [S.], seq 0, ack 1, length 0"
        ]
    );
}

fn arbitrary_point(frames: Vec<(Vec<u8>, bool)>) -> CapturePoint {
    let mut p = CapturePoint::new("h1", None);
    p.frames = frames
        .into_iter()
        .map(|(data, raw)| {
            let mut f = Frame::ethernet(Duration::ZERO, PacketType::Outgoing, "h1-eth0", data);
            if raw {
                f.link = LinkType::RawIp;
            }
            f
        })
        .collect();
    p
}

fn everything() -> TraceOptions {
    TraceOptions {
        arp: true,
        ipv6: true,
        igmp: true,
        other_ethertypes: true,
        direction: true,
        window: true,
        tcp_options: true,
        encap_ports: vec![ENCAP_PORT, 53],
        ordering: Ordering::SortArrivals,
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(frames in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..128), any::<bool>()), 0..8)) {
        let p = arbitrary_point(frames);
        let trace = Trace::build(std::slice::from_ref(&p), &names(), &everything());
        prop_assert_eq!(trace.sections[0].lines.len() + trace.sections[0].filtered, p.frames.len());
        // Without TCP and in captured order, the live builder writes the same lines.
        let captured = TraceOptions { ordering: Ordering::Captured, ..everything() };
        let whole = Trace::build(std::slice::from_ref(&p), &names(), &captured);
        prop_assert_eq!(whole.sections[0].lines.len(), live(&p, &captured).len());
        let _ = crate::ladder::Ladder::build(std::slice::from_ref(&p), &names(), &everything()).to_string();
    }

    #[test]
    fn corrupted_valid_frames_never_panic(
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..6),
        cut in 0usize..200,
    ) {
        // An encapsulated TCP packet, then bytes flipped and the tail cut: deep paths, bad data.
        let inner = {
            let b = PacketBuilder::ipv4(H3, H2, 64).tcp(40000, 8080, 7, 1024).syn();
            let mut v = Vec::new();
            b.write(&mut v, &payload).expect("build");
            v
        };
        let mut frame = udp(40001, ENCAP_PORT, &inner);
        for (at, byte) in flips {
            if let Some(b) = frame.get_mut(at) {
                *b ^= byte;
            }
        }
        frame.truncate(cut.max(1));
        let p = arbitrary_point(vec![(frame, false)]);
        let _ = Trace::build(std::slice::from_ref(&p), &names(), &everything()).to_string();
        let _ = crate::ladder::Ladder::build(std::slice::from_ref(&p), &names(), &everything()).to_string();
    }
}
