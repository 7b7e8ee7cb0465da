//! Shared helpers: worlds, and one-line summaries of captured frames.

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{ArpOperation, EtherType, IpNumber};
use sim::frame::{parse_arp, parse_eth, parse_ipv4, parse_udp};
use sim::{Direction, NetSpec, SimConfig, TapId, World};

/// `10.0.0.n`.
pub fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

/// `10.0.0.n:port`.
pub fn sa(n: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip(n), port)
}

/// Mininet's `single,3` with `seed`.
pub fn single3(seed: u64) -> World {
    World::new(
        &NetSpec::single(3).expect("spec"),
        SimConfig::with_seed(seed),
    )
    .expect("world")
}

/// One frame in a line: `ARP who-has 10.0.0.2 tell 10.0.0.3`, `UDP 10.0.0.3:4000 >
/// 10.0.0.2:5000 len 5 ttl 64`, `ICMP 10.0.0.2 > 10.0.0.3 type 3 code 3`.
pub fn summary(frame: &[u8]) -> String {
    let Some(eth) = parse_eth(frame) else {
        return "short frame".into();
    };
    match eth.ether_type {
        EtherType::ARP => match parse_arp(eth.payload) {
            Some(a) if a.operation == ArpOperation::REQUEST => format!(
                "ARP who-has {} tell {}",
                a.target_ipv4_addr(),
                a.sender_ipv4_addr()
            ),
            Some(a) => format!(
                "ARP reply {} is-at {}",
                a.sender_ipv4_addr(),
                sim::MacAddr(a.sender_mac)
            ),
            None => "bad ARP".into(),
        },
        EtherType::IPV4 => {
            let Some(v) = parse_ipv4(eth.payload) else {
                return "bad IPv4".into();
            };
            let (s, d) = (
                Ipv4Addr::from(v.header.source),
                Ipv4Addr::from(v.header.destination),
            );
            let ttl = v.header.time_to_live;
            match v.header.protocol {
                IpNumber::UDP => match parse_udp(&v.header, v.payload) {
                    Some((u, data)) => format!(
                        "UDP {s}:{} > {d}:{} len {} ttl {ttl}",
                        u.source_port,
                        u.destination_port,
                        data.len()
                    ),
                    None => "bad UDP".into(),
                },
                IpNumber::ICMP => format!(
                    "ICMP {s} > {d} type {} code {} ttl {ttl}",
                    v.payload.first().copied().unwrap_or(0),
                    v.payload.get(1).copied().unwrap_or(0)
                ),
                p => format!("IPv4 {s} > {d} proto {}", p.0),
            }
        }
        t => format!("ethertype {:#06x}", t.0),
    }
}

/// What a tap recorded, one `out|in <summary>` line per frame.
pub fn lines(world: &World, tap: TapId) -> Vec<String> {
    world
        .captured(tap)
        .expect("tap")
        .iter()
        .map(|c| {
            let dir = match c.direction {
                Direction::Outgoing => "out",
                Direction::Incoming => "in",
            };
            format!("{dir} {}", summary(&c.frame))
        })
        .collect()
}
