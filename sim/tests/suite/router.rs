//! Two subnets joined by a router `r1` (`ip_forward=1`): forwarding, TTL, ICMP errors.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use sim::frame::parse_ipv4;
use sim::{Endpoint, Ipv4Net, MacAddr, NetSpec, SimConfig, Sysctl, TapPoint, World};

use crate::support::lines;

fn a(s: &str) -> Ipv4Addr {
    s.parse().expect("addr")
}

fn n(s: &str) -> Option<Ipv4Net> {
    Some(s.parse().expect("net"))
}

/// h1 (10.0.1.1/24) — r1 (10.0.1.254, 10.0.2.254) — h2 (10.0.2.1/24), veths, no bridge.
fn routed(forward: bool) -> World {
    let mut s = NetSpec::new();
    s.add_host("h1").expect("h1");
    s.add_host("h2").expect("h2");
    s.add_host("r1").expect("r1");
    s.add_interface("h1", "h1-eth0", MacAddr::from_index(1), n("10.0.1.1/24"))
        .expect("if");
    s.add_interface("h2", "h2-eth0", MacAddr::from_index(2), n("10.0.2.1/24"))
        .expect("if");
    s.add_interface(
        "r1",
        "r1-eth0",
        MacAddr::from_index(0xfe01),
        n("10.0.1.254/24"),
    )
    .expect("if");
    s.add_interface(
        "r1",
        "r1-eth1",
        MacAddr::from_index(0xfe02),
        n("10.0.2.254/24"),
    )
    .expect("if");
    s.add_default_route("h1", a("10.0.1.254")).expect("route");
    s.add_route("h2", "10.0.1.0/24".parse().expect("net"), a("10.0.2.254"))
        .expect("route");
    s.set_sysctl("r1", Sysctl::IpForward(forward))
        .expect("sysctl");
    s.add_link(
        Endpoint::host("h1", "h1-eth0"),
        Endpoint::host("r1", "r1-eth0"),
    )
    .expect("link");
    s.add_link(
        Endpoint::host("r1", "r1-eth1"),
        Endpoint::host("h2", "h2-eth0"),
    )
    .expect("link");
    World::new(&s, SimConfig::default()).expect("world")
}

#[test]
fn router_forwards_with_ttl_minus_one_and_a_valid_checksum() {
    let mut w = routed(true);
    let t1 = w.tap("h1", TapPoint::Any).expect("tap");
    let t2 = w.tap("h2", TapPoint::Any).expect("tap");
    let rx = w
        .udp_bind("h2", SocketAddrV4::new(a("10.0.2.1"), 53))
        .expect("bind");
    let tx = w
        .udp_bind("h1", SocketAddrV4::new(a("10.0.1.1"), 4000))
        .expect("bind");
    w.udp_send_to(tx, SocketAddrV4::new(a("10.0.2.1"), 53), b"q")
        .expect("send");
    w.run_for(Duration::from_millis(1));
    assert_eq!(
        lines(&w, t1),
        [
            "out ARP who-has 10.0.1.254 tell 10.0.1.1",
            "in ARP reply 10.0.1.254 is-at 00:00:00:00:fe:01",
            "out UDP 10.0.1.1:4000 > 10.0.2.1:53 len 1 ttl 64",
        ]
    );
    assert_eq!(
        lines(&w, t2),
        [
            "in ARP who-has 10.0.2.1 tell 10.0.2.254",
            "out ARP reply 10.0.2.1 is-at 00:00:00:00:00:02",
            "in UDP 10.0.1.1:4000 > 10.0.2.1:53 len 1 ttl 63",
        ]
    );
    let d = w.udp_recv(rx).expect("open").expect("datagram");
    assert_eq!(d.from, SocketAddrV4::new(a("10.0.1.1"), 4000));
    // Byte for byte: only TTL (byte 8) and header checksum (10..12) changed, and parse_ipv4
    // accepted the new checksum; the Ethernet header is r1's.
    let sent = &w.captured(t1).expect("t1")[2].frame;
    let got = &w.captured(t2).expect("t2")[2].frame;
    assert_eq!(&got[6..12], &MacAddr::from_index(0xfe02).0);
    let diff: Vec<usize> = (14..sent.len()).filter(|i| sent[*i] != got[*i]).collect();
    assert!(diff.iter().all(|i| [22, 24, 25].contains(i)), "{diff:?}");
    assert!(parse_ipv4(&got[14..]).is_some());
}

#[test]
fn without_ip_forward_nothing_leaves_the_router() {
    let mut w = routed(false);
    let t2 = w.tap("h2", TapPoint::Any).expect("tap");
    let t1 = w.tap("h1", TapPoint::Any).expect("tap");
    let tx = w
        .udp_bind("h1", SocketAddrV4::new(a("10.0.1.1"), 4000))
        .expect("bind");
    w.udp_send_to(tx, SocketAddrV4::new(a("10.0.2.1"), 53), b"q")
        .expect("send");
    w.run_for(Duration::from_millis(1));
    assert!(lines(&w, t2).is_empty());
    assert_eq!(
        lines(&w, t1).len(),
        3,
        "no ICMP error either: {:?}",
        lines(&w, t1)
    );
}

#[test]
fn no_route_on_the_router_gives_net_unreachable() {
    let mut w = routed(true);
    let t1 = w.tap("h1", TapPoint::Any).expect("tap");
    let tx = w
        .udp_bind("h1", SocketAddrV4::new(a("10.0.1.1"), 4000))
        .expect("bind");
    w.udp_send_to(tx, SocketAddrV4::new(a("192.0.2.9"), 53), b"q")
        .expect("send");
    w.run_for(Duration::from_millis(1));
    assert_eq!(
        lines(&w, t1)[2..],
        [
            "out UDP 10.0.1.1:4000 > 192.0.2.9:53 len 1 ttl 64",
            "in ICMP 10.0.1.254 > 10.0.1.1 type 3 code 0 ttl 64",
        ]
    );
}
