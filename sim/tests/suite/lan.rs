//! One bridge, three hosts (`single,3`): ARP, learning, ageing, ICMP port unreachable, sysctls.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use sim::{IfScope, NetSpec, SimConfig, SimTime, Sysctl, TapPoint, World};

use crate::support::{ip, lines, sa, single3, summary};

const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

#[test]
fn udp_h3_to_h2_resolves_then_sends() {
    let mut w = single3(0);
    let tap = w
        .tap("h3", TapPoint::Interface("h3-eth0".into()))
        .expect("tap");
    let rx = w
        .udp_bind("h2", SocketAddrV4::new(ANY, 5000))
        .expect("bind");
    let tx = w.udp_bind("h3", sa(3, 4000)).expect("bind");
    w.udp_send_to(tx, sa(2, 5000), b"hello").expect("send");
    w.run_until(SimTime::from_secs(1));
    assert_eq!(
        lines(&w, tap),
        [
            "out ARP who-has 10.0.0.2 tell 10.0.0.3",
            "in ARP reply 10.0.0.2 is-at 00:00:00:00:00:02",
            "out UDP 10.0.0.3:4000 > 10.0.0.2:5000 len 5 ttl 64",
        ]
    );
    let d = w.udp_recv(rx).expect("open").expect("a datagram");
    assert_eq!(
        (d.from, d.to, &d.payload[..]),
        (sa(3, 4000), sa(2, 5000), &b"hello"[..])
    );
    assert_eq!(w.udp_recv(rx).expect("open"), None);
    // Both ends learned: h3 from the reply, h2 from the request that was for it.
    assert_eq!(
        w.arp_entry("h3", ip(2)).expect("h3"),
        Some(sim::MacAddr::from_index(2))
    );
    assert_eq!(
        w.arp_entry("h2", ip(3)).expect("h2"),
        Some(sim::MacAddr::from_index(3))
    );
    assert_eq!(w.arp_entry("h1", ip(3)).expect("h1"), None);
}

#[test]
fn second_datagram_needs_no_arp() {
    let mut w = single3(0);
    let rx = w
        .udp_bind("h2", SocketAddrV4::new(ANY, 5000))
        .expect("bind");
    let tx = w.udp_bind("h3", SocketAddrV4::new(ANY, 0)).expect("bind");
    w.udp_send_to(tx, sa(2, 5000), b"1").expect("send");
    w.run_for(Duration::from_millis(1));
    let tap = w.tap("h3", TapPoint::Any).expect("tap");
    w.udp_send_to(tx, sa(2, 5000), b"2").expect("send");
    w.run_for(Duration::from_millis(1));
    let port = w.udp_local_addr(tx).expect("addr").port();
    assert!((32768..=60999).contains(&port), "{port}");
    assert_eq!(
        lines(&w, tap),
        [format!(
            "out UDP 10.0.0.3:{port} > 10.0.0.2:5000 len 1 ttl 64"
        )]
    );
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| w.udp_recv(rx).expect("open"))
        .map(|d| d.payload)
        .collect();
    assert_eq!(got, [b"1".to_vec(), b"2".to_vec()]);
}

#[test]
fn bridge_learns_so_h1_sees_only_the_broadcast() {
    let mut w = single3(0);
    let h1 = w.tap("h1", TapPoint::Any).expect("tap");
    w.udp_bind("h2", SocketAddrV4::new(ANY, 5000))
        .expect("bind");
    let tx = w.udp_bind("h3", sa(3, 4000)).expect("bind");
    for _ in 0..2 {
        w.udp_send_to(tx, sa(2, 5000), b"x").expect("send");
        w.run_for(Duration::from_millis(1));
    }
    assert_eq!(lines(&w, h1), ["in ARP who-has 10.0.0.2 tell 10.0.0.3"]);
}

#[test]
fn fdb_ageing_floods_again_after_300s() {
    let mut w = single3(0);
    let h1 = w.tap("h1", TapPoint::Any).expect("tap");
    w.udp_bind("h2", SocketAddrV4::new(ANY, 5000))
        .expect("bind");
    let tx = w.udp_bind("h3", sa(3, 4000)).expect("bind");
    w.udp_send_to(tx, sa(2, 5000), b"x").expect("send");
    // s1 learned h2's MAC at t=0 from the ARP reply; nothing from h2 since.
    w.run_until(SimTime::from_secs(299));
    w.udp_send_to(tx, sa(2, 5000), b"y").expect("send");
    w.run_until(SimTime::from_secs(300));
    assert_eq!(lines(&w, h1).len(), 1, "{:?}", lines(&w, h1));
    w.udp_send_to(tx, sa(2, 5000), b"z").expect("send");
    w.run_for(Duration::from_millis(1));
    let seen = w.captured(h1).expect("tap");
    assert_eq!(
        lines(&w, h1)[1..],
        ["in UDP 10.0.0.3:4000 > 10.0.0.2:5000 len 1 ttl 64"]
    );
    assert_eq!(seen[1].time, SimTime::from_secs(300));
}

#[test]
fn unbound_port_gets_icmp_port_unreachable() {
    let mut w = single3(0);
    let tap = w.tap("h3", TapPoint::Any).expect("tap");
    let tx = w.udp_bind("h3", sa(3, 4000)).expect("bind");
    w.udp_send_to(tx, sa(2, 9999), b"nobody home")
        .expect("send");
    w.run_for(Duration::from_millis(1));
    let got = lines(&w, tap);
    assert_eq!(
        got[2..],
        [
            "out UDP 10.0.0.3:4000 > 10.0.0.2:9999 len 11 ttl 64",
            "in ICMP 10.0.0.2 > 10.0.0.3 type 3 code 3 ttl 64",
        ]
    );
    // The error quotes the whole original packet, byte for byte.
    let frames = w.captured(tap).expect("tap");
    let sent = &frames[2].frame[14..];
    let icmp = &frames[3].frame[14 + 20..];
    assert_eq!(&icmp[8..], sent);
    // No ICMP answers the ICMP: h2 sent exactly one frame after its ARP reply.
    assert_eq!(frames.len(), 4, "{got:?}");
}

#[test]
fn unres_qlen_keeps_the_newest_three() {
    let mut w = single3(0);
    let rx = w
        .udp_bind("h2", SocketAddrV4::new(ANY, 5000))
        .expect("bind");
    let tx = w.udp_bind("h3", sa(3, 4000)).expect("bind");
    for n in 1..=5u8 {
        w.udp_send_to(tx, sa(2, 5000), &[n]).expect("send");
    }
    w.run_for(Duration::from_millis(1));
    let got: Vec<u8> = std::iter::from_fn(|| w.udp_recv(rx).expect("open"))
        .map(|d| d.payload[0])
        .collect();
    assert_eq!(got, [3, 4, 5]);
}

/// `single,2` where h1 also holds 10.0.0.100 on `lo` (a VIP), with h1's sysctls set.
fn vip_world(h1_sysctls: &[Sysctl]) -> World {
    let mut spec = NetSpec::single(2).expect("spec");
    spec.add_loopback("h1", ip(100)).expect("vip");
    for s in h1_sysctls {
        spec.set_sysctl("h1", s.clone()).expect("sysctl");
    }
    World::new(&spec, SimConfig::default()).expect("world")
}

#[test]
fn arp_ignore_0_answers_for_an_address_on_lo() {
    let mut w = vip_world(&[]);
    let rx = w
        .udp_bind("h1", SocketAddrV4::new(ip(100), 80))
        .expect("bind");
    let tx = w.udp_bind("h2", sa(2, 4000)).expect("bind");
    w.udp_send_to(tx, SocketAddrV4::new(ip(100), 80), b"v")
        .expect("send");
    w.run_for(Duration::from_secs(5));
    assert!(w.udp_recv(rx).expect("open").is_some());
}

#[test]
fn arp_ignore_1_stops_h1_answering_for_an_address_on_lo() {
    let mut w = vip_world(&[Sysctl::ArpIgnore(IfScope::All, 1)]);
    let h2 = w.tap("h2", TapPoint::Any).expect("tap");
    let rx = w
        .udp_bind("h1", SocketAddrV4::new(ip(100), 80))
        .expect("bind");
    let tx = w.udp_bind("h2", sa(2, 4000)).expect("bind");
    w.udp_send_to(tx, SocketAddrV4::new(ip(100), 80), b"v")
        .expect("send");
    w.run_for(Duration::from_secs(5));
    assert_eq!(w.udp_recv(rx).expect("open"), None);
    // Three requests one second apart, then the entry failed and the datagram was dropped.
    let frames = w.captured(h2).expect("tap");
    let got: Vec<(u64, String)> = frames
        .iter()
        .map(|c| (c.time.as_nanos() / 1_000_000_000, summary(&c.frame)))
        .collect();
    let req = "ARP who-has 10.0.0.100 tell 10.0.0.2".to_string();
    assert_eq!(got, [(0, req.clone()), (1, req.clone()), (2, req)]);
    assert_eq!(w.pending(), 0);
    assert_eq!(w.arp_entry("h2", ip(100)).expect("h2"), None);
    // h1 still answers for the address on its interface.
    w.udp_bind("h1", SocketAddrV4::new(ANY, 81)).expect("bind");
    w.udp_send_to(tx, sa(1, 81), b"w").expect("send");
    w.run_for(Duration::from_millis(1));
    assert!(w.arp_entry("h2", ip(1)).expect("h2").is_some());
}

#[test]
fn arp_announce_picks_the_request_source() {
    for (sysctls, want) in [
        (vec![], "out ARP who-has 10.0.0.2 tell 10.0.0.100"),
        (
            vec![Sysctl::ArpAnnounce(IfScope::Interface("h1-eth0".into()), 2)],
            "out ARP who-has 10.0.0.2 tell 10.0.0.1",
        ),
    ] {
        let mut w = vip_world(&sysctls);
        let tap = w.tap("h1", TapPoint::Any).expect("tap");
        let tx = w
            .udp_bind("h1", SocketAddrV4::new(ip(100), 80))
            .expect("bind");
        w.udp_send_to(tx, sa(2, 9), b"r").expect("send");
        w.run_for(Duration::from_millis(1));
        assert_eq!(lines(&w, tap)[0], want, "{sysctls:?}");
    }
}

#[test]
fn driver_errors_name_what_was_wrong() {
    let mut w = single3(0);
    let e = w.udp_bind("h9", sa(9, 1)).expect_err("h9");
    assert_eq!(e.to_string(), "no host named \"h9\"");
    let e = w.udp_bind("h1", sa(2, 1)).expect_err("not local");
    assert_eq!(
        e.to_string(),
        "host \"h1\": cannot bind 10.0.0.2:1: the address is not local"
    );
    w.udp_bind("h1", SocketAddrV4::new(ANY, 7)).expect("bind");
    let e = w.udp_bind("h1", sa(1, 7)).expect_err("in use");
    assert!(matches!(e, sim::SimError::AddressInUse { .. }), "{e}");
    let tx = w.udp_bind("h1", sa(1, 8)).expect("bind");
    let e = w
        .udp_send_to(tx, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 9), b"")
        .expect_err("no route");
    assert_eq!(e.to_string(), "host \"h1\": no route to 192.0.2.1");
    let e = w.udp_send_to(tx, sa(255, 9), b"").expect_err("broadcast");
    assert!(matches!(e, sim::SimError::NotModelled { .. }), "{e}");
    let e = w
        .udp_send_to(tx, sa(2, 9), &[0; 1473])
        .expect_err("too big");
    assert!(matches!(e, sim::SimError::NotModelled { .. }), "{e}");
    w.udp_send_to(tx, sa(2, 9), &[0; 1472]).expect("fits");
    w.udp_close(tx).expect("close");
    assert!(matches!(
        w.udp_close(tx),
        Err(sim::SimError::UnknownSocket { .. })
    ));
    let e = w
        .tap("h1", TapPoint::Interface("eth9".into()))
        .expect_err("eth9");
    assert_eq!(e.to_string(), "host \"h1\" has no interface \"eth9\"");
}

/// A host sends to its own addresses (its interface's and one on `lo`) through the loopback:
/// delivered, seen once on `lo` by an `any` tap, never on the wire.
#[test]
fn a_host_reaches_its_own_addresses_through_lo() {
    let mut spec = sim::NetSpec::single(2).unwrap();
    spec.add_loopback("h1", std::net::Ipv4Addr::new(10, 0, 0, 50))
        .unwrap();
    let mut w = World::new(&spec, sim::SimConfig::with_seed(1)).unwrap();
    let any = w.tap("h1", sim::TapPoint::Any).unwrap();
    let wire = w
        .tap("h1", sim::TapPoint::Interface("h1-eth0".into()))
        .unwrap();
    let vip = SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, 50), 9000);
    let rx_vip = w.udp_bind("h1", vip).unwrap();
    let rx_own = w.udp_bind("h1", sa(1, 9001)).unwrap();
    let tx = w
        .udp_bind(
            "h1",
            SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 4000),
        )
        .unwrap();
    w.udp_send_to(tx, vip, b"to the vip").unwrap();
    w.udp_send_to(tx, sa(1, 9001), b"to myself").unwrap();
    w.run_for(Duration::from_millis(1));
    let d = w.udp_recv(rx_vip).unwrap().expect("vip");
    assert_eq!(
        (d.from, d.payload.as_slice()),
        (SocketAddrV4::new(*vip.ip(), 4000), &b"to the vip"[..])
    );
    assert_eq!(
        w.udp_recv(rx_own).unwrap().expect("own").payload,
        b"to myself"
    );
    let seen: Vec<&str> = w
        .captured(any)
        .unwrap()
        .iter()
        .map(|c| c.interface.as_str())
        .collect();
    assert_eq!(seen, ["lo", "lo"]);
    assert!(w.captured(wire).unwrap().is_empty());
    // TCP to the loopback VIP: a handshake through lo.
    let l = w
        .tcp_listen("h1", SocketAddrV4::new(*vip.ip(), 8080))
        .unwrap();
    let c = w
        .tcp_connect("h1", SocketAddrV4::new(*vip.ip(), 8080))
        .unwrap();
    w.run_for(Duration::from_millis(1));
    assert_eq!(w.tcp_state(c).unwrap(), sim::TcpState::Established);
    assert!(w.tcp_accept(l).unwrap().is_some());
}
