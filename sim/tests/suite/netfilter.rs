//! Netfilter, conntrack, NAT and NFQUEUE in the simulator: seed post 2's race on each kernel
//! profile, DNAT by numgen, NAT replies, queues without a program, refused rules.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use sim::{Endpoint, Ipv4Net, KernelProfile, MacAddr, NetSpec, SimConfig, World};

fn net(a: [u8; 4], len: u8) -> Option<Ipv4Net> {
    Ipv4Net::new(Ipv4Addr::from(a), len)
}

/// client 10.1.0.2 -- s1 -- 10.1.0.1 router 10.2.0.1 -- server 10.2.0.2, as
/// scenarios/udp-conntrack-race.toml: MASQUERADE out of eth1, FORWARD udp/9000 to queue 0.
fn race(profile: KernelProfile, rules: &[&str]) -> World {
    let mut s = NetSpec::new();
    s.add_host("client").unwrap();
    s.add_host("router").unwrap();
    s.add_host("server").unwrap();
    s.add_bridge("s1").unwrap();
    s.add_interface(
        "client",
        "client-eth0",
        MacAddr::from_index(1),
        net([10, 1, 0, 2], 24),
    )
    .unwrap();
    s.add_interface(
        "router",
        "router-eth0",
        MacAddr::from_index(2),
        net([10, 1, 0, 1], 24),
    )
    .unwrap();
    s.add_interface(
        "router",
        "router-eth1",
        MacAddr::from_index(3),
        net([10, 2, 0, 1], 24),
    )
    .unwrap();
    s.add_interface(
        "server",
        "server-eth0",
        MacAddr::from_index(4),
        net([10, 2, 0, 2], 24),
    )
    .unwrap();
    s.add_default_route("client", Ipv4Addr::new(10, 1, 0, 1))
        .unwrap();
    s.add_default_route("server", Ipv4Addr::new(10, 2, 0, 1))
        .unwrap();
    s.set_sysctl("router", sim::Sysctl::IpForward(true))
        .unwrap();
    for r in rules {
        s.add_iptables("router", r).unwrap();
    }
    s.add_link(
        Endpoint::host("client", "client-eth0"),
        Endpoint::bridge("s1", "s1-eth1"),
    )
    .unwrap();
    s.add_link(
        Endpoint::host("router", "router-eth0"),
        Endpoint::bridge("s1", "s1-eth2"),
    )
    .unwrap();
    s.add_link(
        Endpoint::host("router", "router-eth1"),
        Endpoint::host("server", "server-eth0"),
    )
    .unwrap();
    let config = SimConfig {
        kernel: profile,
        ..SimConfig::with_seed(1)
    };
    World::new(&s, config).unwrap()
}

const RACE: [&str; 2] = [
    "-t nat -A POSTROUTING -o router-eth1 -j MASQUERADE",
    "-A FORWARD -p udp --dport 9000 -j NFQUEUE --queue-num 0",
];

/// Two datagrams back to back from client:55221, both held, then accepted together: what the
/// server got (source ports) and the router's counters.
fn run_race(profile: KernelProfile) -> (Vec<u16>, std::collections::BTreeMap<String, u64>) {
    let mut w = race(profile, &RACE);
    let srv = SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 2), 9000);
    let rx = w.udp_bind("server", srv).unwrap();
    w.nfq_holder("router", 0, 2, Duration::ZERO, true).unwrap();
    let tx = w
        .udp_bind("client", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 55221))
        .unwrap();
    w.udp_send_to(tx, srv, b"Packet 1\n").unwrap();
    w.udp_send_to(tx, srv, b"Packet 2\n").unwrap();
    w.run_for(Duration::from_secs(1));
    let mut ports = Vec::new();
    while let Some(d) = w.udp_recv(rx).unwrap() {
        assert_eq!(*d.from.ip(), Ipv4Addr::new(10, 2, 0, 1), "masqueraded");
        ports.push(d.from.port());
    }
    (ports, w.conntrack_counters("router").unwrap())
}

#[test]
fn seed_2_on_today_s_kernel_both_arrive_from_one_port_and_the_clash_is_resolved() {
    let (ports, c) = run_race(KernelProfile::Linux6_12);
    assert_eq!(ports, [55221, 55221]);
    assert_eq!(
        (
            c["clash_resolve"],
            c["insert_failed"],
            c["drop"],
            c["entries"]
        ),
        (1, 0, 0, 1)
    );
}

#[test]
fn seed_2_on_3_6_loses_the_second_datagram() {
    let (ports, c) = run_race(KernelProfile::Linux3_6);
    assert_eq!(ports, [55221]);
    assert_eq!(
        (
            c["clash_resolve"],
            c["insert_failed"],
            c["drop"],
            c["entries"]
        ),
        (0, 1, 1, 1)
    );
}

#[test]
fn seed_2_on_4_18_both_arrive_the_second_from_another_port() {
    let (ports, c) = run_race(KernelProfile::Linux4_18);
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert_eq!(ports[0], 55221);
    assert_ne!(ports[1], 55221);
    assert_eq!(
        (c["clash_resolve"], c["insert_failed"], c["drop"]),
        (0, 1, 0)
    );
}

/// One datagram client -> server through the router with `rules`: did it arrive?
fn one_datagram(rules: &[&str]) -> bool {
    let mut w = race(KernelProfile::Linux6_12, rules);
    let srv = SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 2), 9000);
    let rx = w.udp_bind("server", srv).unwrap();
    let tx = w
        .udp_bind("client", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4000))
        .unwrap();
    w.udp_send_to(tx, srv, b"x").unwrap();
    w.run_for(Duration::from_secs(2));
    w.udp_recv(rx).unwrap().is_some()
}

#[test]
fn a_queue_without_a_program_drops_unless_bypass() {
    assert!(one_datagram(&[]));
    assert!(!one_datagram(&[
        "-A FORWARD -p udp -j NFQUEUE --queue-num 3"
    ]));
    assert!(one_datagram(&[
        "-A FORWARD -p udp -j NFQUEUE --queue-num 3 --queue-bypass"
    ]));
    assert!(!one_datagram(&["-A FORWARD -p udp --dport 9000 -j DROP"]));
}

/// The reply of a masqueraded flow is translated back to the client.
#[test]
fn a_reply_through_masquerade_reaches_the_client() {
    let mut w = race(KernelProfile::Linux6_12, &RACE[..1]);
    let srv = SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 2), 9000);
    let rx = w.udp_bind("server", srv).unwrap();
    let tx = w
        .udp_bind("client", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4000))
        .unwrap();
    w.udp_send_to(tx, srv, b"ping").unwrap();
    w.run_for(Duration::from_secs(1));
    let d = w.udp_recv(rx).unwrap().expect("request");
    assert_eq!(d.from, SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 1), 4000));
    w.udp_send_to(rx, d.from, b"pong").unwrap();
    w.run_for(Duration::from_secs(1));
    let back = w.udp_recv(tx).unwrap().expect("reply");
    assert_eq!(back.from, srv);
    assert_eq!(back.payload, b"pong");
    let list = w
        .conntrack_list("router", &["-p".into(), "udp".into()])
        .unwrap();
    assert_eq!(list.len(), 1);
    assert!(!list[0].contains("[UNREPLIED]"), "{list:?}");
}

#[test]
fn a_rule_the_simulator_cannot_evaluate_names_host_and_rule() {
    let mut s = NetSpec::single(2).unwrap();
    s.add_iptables("h1", "-A INPUT -m recent --set").unwrap();
    let err = World::new(&s, SimConfig::with_seed(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("h1") && err.contains("-m recent"), "{err}");
}

/// TCP through the masquerading router: the server sees the router's address, the handshake,
/// data and close complete both ways (checksums rewritten, replies translated back).
#[test]
fn a_tcp_connection_through_masquerade_completes() {
    let mut w = race(KernelProfile::Linux6_12, &RACE[..1]);
    let srv = SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 2), 8080);
    let l = w.tcp_listen("server", srv).unwrap();
    let c = w.tcp_connect("client", srv).unwrap();
    w.run_for(Duration::from_millis(10));
    assert_eq!(w.tcp_state(c).unwrap(), sim::TcpState::Established);
    let s = w.tcp_accept(l).unwrap().expect("accepted");
    let (_, peer) = w.tcp_addrs(s).unwrap();
    assert_eq!(*peer.ip(), Ipv4Addr::new(10, 2, 0, 1), "masqueraded");
    w.tcp_send(c, b"hello").unwrap();
    w.run_for(Duration::from_millis(10));
    assert_eq!(w.tcp_recv(s).unwrap(), b"hello");
    w.tcp_send(s, b"back").unwrap();
    w.run_for(Duration::from_millis(10));
    assert_eq!(w.tcp_recv(c).unwrap(), b"back");
    w.tcp_close(c).unwrap();
    w.run_for(Duration::from_millis(10));
    w.tcp_close(s).unwrap();
    w.run_for(Duration::from_millis(100));
    assert_eq!(w.tcp_state(c).unwrap(), sim::TcpState::TimeWait);
    assert_eq!(w.tcp_state(s).unwrap(), sim::TcpState::Closed);
    let list = w
        .conntrack_list("router", &["-p".into(), "tcp".into()])
        .unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
}
