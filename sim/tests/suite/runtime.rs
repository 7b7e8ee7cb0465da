//! What programs change while the world runs: a VIP added to an interface, rules inserted
//! and removed, a queue closed by a dying process, policy routing by mark, a raw send.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use sim::{IfScope, Ipv4Net, NetSpec, PolicyRule, SimConfig, SimError, Sysctl, TapPoint, World};

use crate::support::{ip, lines, sa, single3};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);

fn vip(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(VIP, port)
}

#[test]
fn a_vip_added_at_run_time_answers_arp_and_is_local_until_removed() {
    let mut w = single3(0);
    assert!(w.add_address("h1", "h1-eth0", VIP).expect("add"));
    assert!(!w.add_address("h1", "h1-eth0", VIP).expect("again"));
    let rx = w.udp_bind("h1", vip(9)).expect("the VIP is local");
    let tx = w.udp_bind("h3", sa(3, 4000)).expect("bind");
    let tap = w.tap("h3", TapPoint::Any).expect("tap");
    w.udp_send_to(tx, vip(9), b"1").expect("send");
    w.run_for(Duration::from_millis(1));
    assert_eq!(
        lines(&w, tap)[..2],
        [
            "out ARP who-has 10.0.0.50 tell 10.0.0.3",
            "in ARP reply 10.0.0.50 is-at 00:00:00:00:00:01",
        ]
    );
    assert!(w.udp_recv(rx).expect("open").is_some());
    let addrs = &w.interfaces("h1").expect("h1")[1].addrs;
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert!(w.del_address("h1", "h1-eth0", VIP).expect("del"));
    w.udp_send_to(tx, vip(9), b"2").expect("send");
    w.run_for(Duration::from_millis(1));
    // Not local any more, and h1 does not forward: dropped.
    assert_eq!(w.udp_recv(rx).expect("open"), None);
    assert_eq!(
        w.add_address("h1", "eth9", VIP),
        Err(SimError::UnknownInterface {
            host: "h1".into(),
            interface: "eth9".into()
        })
    );
}

#[test]
fn rules_inserted_at_run_time_queue_and_a_dead_program_s_queue_drops() {
    let mut w = single3(0);
    let rx = w.udp_bind("h1", sa(1, 9)).expect("bind");
    let tx = w.udp_bind("h3", sa(3, 4000)).expect("bind");
    let q = w.nfq_bind("h1", 0).expect("bind queue");
    w.iptables(
        "h1",
        "-w -t filter -I INPUT -d 10.0.0.1/32 -p udp -m comment --comment lb:test -j NFQUEUE --queue-num 0",
    )
    .expect("rule");
    w.udp_send_to(tx, sa(1, 9), b"queued").expect("send");
    w.run_for(Duration::from_millis(1));
    assert_eq!(w.nfq_take(q).expect("queue").len(), 1);
    assert_eq!(w.udp_recv(rx).expect("open"), None);
    // The program dies: the waiting packet goes, and so does the next one (no bypass).
    assert_eq!(w.nfq_unbind(q).expect("unbind"), 1);
    assert!(!w.nfq_is_bound("h1", 0).expect("h1"));
    w.udp_send_to(tx, sa(1, 9), b"dropped").expect("send");
    w.run_for(Duration::from_millis(1));
    assert_eq!(w.udp_recv(rx).expect("open"), None);
    assert_eq!(
        w.iptables_list("h1", netfilter_model::Table::Filter, Some("INPUT"))
            .expect("list")
            .expect("INPUT")
            .len(),
        2
    );
    assert_eq!(
        w.iptables_remove_tagged("h1", "lb:test").expect("remove"),
        1
    );
    w.udp_send_to(tx, sa(1, 9), b"delivered").expect("send");
    w.run_for(Duration::from_millis(1));
    assert_eq!(
        w.udp_recv(rx).expect("open").expect("a datagram").payload,
        b"delivered"
    );
    let err = w
        .iptables("h1", "-t filter -A INPUT -m frobnicate -j ACCEPT")
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "h1: unsupported match \"-m frobnicate\" in \"-t filter -A INPUT -m frobnicate -j ACCEPT\""
    );
}

/// dsr-kernel's path: h1 holds the VIP, marks what comes for it, and its policy rule routes
/// the marked packet to h2 (which holds the VIP on lo) out of the interface it came in on.
fn dsr_world() -> World {
    let mut spec = NetSpec::single(3).expect("spec");
    spec.add_loopback("h2", VIP).expect("vip");
    spec.set_sysctl("h2", Sysctl::ArpIgnore(IfScope::All, 1))
        .expect("sysctl");
    spec.add_iptables(
        "h1",
        "-t mangle -A PREROUTING -d 10.0.0.50/32 -j MARK --set-mark 0xa000002",
    )
    .expect("rule");
    let mut w = World::new(&spec, SimConfig::default()).expect("world");
    w.add_address("h1", "h1-eth0", VIP).expect("vip");
    w.set_table_route("h1", 0x0a00_0002, Ipv4Net::DEFAULT, ip(2))
        .expect("route");
    w.add_policy_rule(
        "h1",
        PolicyRule {
            to: Ipv4Net::new(VIP, 32).expect("net"),
            fwmark: 0x0a00_0002,
            table: 0x0a00_0002,
        },
    )
    .expect("rule");
    w
}

#[test]
fn a_marked_packet_follows_its_policy_rule_ahead_of_the_local_table() {
    for forwarding in [true, false] {
        let mut w = dsr_world();
        if forwarding {
            w.set_sysctl(
                "h1",
                Sysctl::Forwarding(IfScope::Interface("h1-eth0".into()), true),
            )
            .expect("sysctl");
        }
        let on_h1 = w.udp_bind("h1", vip(9)).expect("bind");
        let on_h2 = w.udp_bind("h2", vip(9)).expect("bind");
        let tx = w.udp_bind("h3", sa(3, 4000)).expect("bind");
        let tap = w.tap("h1", TapPoint::Any).expect("tap");
        w.udp_send_to(tx, vip(9), b"x").expect("send");
        w.run_for(Duration::from_millis(10));
        // Never delivered to h1, though the VIP is local there.
        assert_eq!(w.udp_recv(on_h1).expect("open"), None);
        let got = w.udp_recv(on_h2).expect("open");
        let udp: Vec<String> = lines(&w, tap)
            .into_iter()
            .filter(|l| l.contains("UDP"))
            .collect();
        if forwarding {
            assert_eq!(got.expect("forwarded to h2").from, sa(3, 4000));
            assert_eq!(
                udp,
                [
                    "in UDP 10.0.0.3:4000 > 10.0.0.50:9 len 1 ttl 64",
                    "out UDP 10.0.0.3:4000 > 10.0.0.50:9 len 1 ttl 63",
                ]
            );
        } else {
            assert_eq!(got, None, "forwarding is off on h1-eth0");
            assert_eq!(udp.len(), 1);
        }
    }
}

#[test]
fn a_raw_send_to_a_local_address_comes_back_through_lo() {
    let mut w = single3(0);
    w.add_address("h2", "lo", VIP).expect("vip");
    let rx = w.udp_bind("h2", vip(9)).expect("bind");
    let tap = w.tap("h2", TapPoint::Interface("lo".into())).expect("tap");
    let packet = sim::frame::udp_packet((ip(3), 4000), (VIP, 9), b"inner").expect("packet");
    w.raw_send("h2", packet).expect("send");
    w.run_for(Duration::from_millis(1));
    let d = w.udp_recv(rx).expect("open").expect("a datagram");
    assert_eq!((d.from, &d.payload[..]), (sa(3, 4000), &b"inner"[..]));
    assert_eq!(
        lines(&w, tap),
        ["in UDP 10.0.0.3:4000 > 10.0.0.50:9 len 5 ttl 64"]
    );
    assert!(w.raw_send("h2", vec![0x45, 0]).is_err());
}

#[test]
fn sysctl_writes_at_run_time_are_checked_and_change_arp() {
    let mut w = single3(0);
    assert!(
        w.set_sysctl("h1", Sysctl::ArpIgnore(IfScope::All, 3))
            .is_err()
    );
    assert!(
        w.set_sysctl(
            "h1",
            Sysctl::ArpIgnore(IfScope::Interface("eth9".into()), 1)
        )
        .is_err()
    );
    w.add_address("h1", "lo", VIP).expect("vip");
    w.set_sysctl("h1", Sysctl::ArpIgnore(IfScope::All, 1))
        .expect("sysctl");
    assert_eq!(w.sysctls("h1").expect("h1").arp_ignore.all, 1);
    let tx = w.udp_bind("h3", sa(3, 4000)).expect("bind");
    w.udp_send_to(tx, vip(9), b"x").expect("send");
    w.run_for(Duration::from_secs(5));
    assert_eq!(w.arp_entry("h3", VIP).expect("h3"), None);
}
