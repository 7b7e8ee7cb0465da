//! TCP in the simulator: the packet sequences Linux sends, relative sequence numbers.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use sim::frame::{parse_eth, parse_ipv4};
use sim::{Direction, TapPoint, TcpState, World};

use crate::support::{sa, single3};

/// Each TCP segment h3 sent or received, as a trace line with sequence numbers relative to
/// each side's first (`S 0`, `S. 0 ack 1`, `P. 1:18 ack 1`, `. ack 18`, `F. 18 ack 11`).
fn tcp_lines(w: &World, tap: sim::TapId) -> Vec<String> {
    let mut base: std::collections::BTreeMap<SocketAddrV4, u32> = Default::default();
    let mut out = Vec::new();
    for c in w.captured(tap).unwrap() {
        let eth = parse_eth(&c.frame).unwrap();
        let Some(ip) = parse_ipv4(eth.payload) else {
            continue;
        };
        if ip.header.protocol != etherparse::IpNumber::TCP {
            continue;
        }
        let (t, data) = etherparse::TcpHeader::from_slice(ip.payload).unwrap();
        let from = SocketAddrV4::new(Ipv4Addr::from(ip.header.source), t.source_port);
        let to = SocketAddrV4::new(Ipv4Addr::from(ip.header.destination), t.destination_port);
        if t.syn {
            base.insert(from, t.sequence_number);
        }
        let rel = |a: &SocketAddrV4, n: u32| n.wrapping_sub(*base.get(a).unwrap_or(&n));
        let mut flags = String::new();
        for (on, f) in [(t.syn, 'S'), (t.fin, 'F'), (t.rst, 'R'), (t.psh, 'P')] {
            if on {
                flags.push(f);
            }
        }
        if t.ack {
            flags.push('.');
        }
        let dir = if c.direction == Direction::Outgoing {
            ">"
        } else {
            "<"
        };
        let mut l = format!("{dir} {flags}");
        if !data.is_empty() {
            let s = rel(&from, t.sequence_number);
            l += &format!(" {s}:{}", s + data.len() as u32);
        } else if t.syn || t.fin || t.rst || !t.ack {
            l += &format!(" {}", rel(&from, t.sequence_number));
        }
        if t.ack {
            l += &format!(" ack {}", rel(&to, t.acknowledgment_number));
        }
        out.push(l);
    }
    out
}

#[test]
fn a_telnet_exchange_gives_the_linux_packet_sequence() {
    let mut w = single3(1);
    let tap = w.tap("h3", TapPoint::Any).unwrap();
    let l = w.tcp_listen("h2", sa(2, 8080)).unwrap();
    let c = w.tcp_connect("h3", sa(2, 8080)).unwrap();
    w.run_for(Duration::from_millis(10));
    assert_eq!(w.tcp_state(c).unwrap(), TcpState::Established);
    let s = w.tcp_accept(l).unwrap().expect("accepted");
    w.tcp_send(c, b"Is this working?\n").unwrap();
    w.run_for(Duration::from_millis(1));
    assert_eq!(w.tcp_recv(s).unwrap(), b"Is this working?\n");
    w.tcp_send(s, b"it works\n\n").unwrap();
    w.run_for(Duration::from_millis(1));
    assert_eq!(w.tcp_recv(c).unwrap(), b"it works\n\n");
    w.tcp_close(c).unwrap();
    w.run_for(Duration::from_millis(1));
    assert!(w.tcp_peer_closed(s).unwrap());
    w.tcp_close(s).unwrap();
    w.run_for(Duration::from_secs(1));
    assert_eq!(
        tcp_lines(&w, tap),
        [
            "> S 0",
            "< S. 0 ack 1",
            "> . ack 1",
            "> P. 1:18 ack 1",
            "< . ack 18",
            "< P. 1:11 ack 18",
            "> . ack 11",
            "> F. 18 ack 11",
            "< F. 11 ack 19",
            "> . ack 12",
        ]
    );
    assert_eq!(w.tcp_state(c).unwrap(), TcpState::TimeWait);
    assert_eq!(w.tcp_state(s).unwrap(), TcpState::Closed);
}

#[test]
fn a_syn_to_a_closed_port_is_refused_with_rst_ack() {
    let mut w = single3(1);
    let tap = w.tap("h3", TapPoint::Any).unwrap();
    let c = w.tcp_connect("h3", sa(2, 8080)).unwrap();
    w.run_for(Duration::from_millis(10));
    assert_eq!(w.tcp_state(c).unwrap(), TcpState::Refused);
    assert_eq!(tcp_lines(&w, tap), ["> S 0", "< R. 0 ack 1"]);
}

/// single,3 with `rule` in h2's iptables.
fn single3_with(rule: &str) -> World {
    let mut spec = sim::NetSpec::single(3).unwrap();
    spec.add_iptables("h2", rule).unwrap();
    World::new(&spec, sim::SimConfig::with_seed(1)).unwrap()
}

#[test]
fn an_unanswered_syn_is_sent_again_at_1_3_7_s_and_the_connect_times_out() {
    let mut w = single3_with("-A INPUT -p tcp -j DROP");
    let tap = w.tap("h3", TapPoint::Any).unwrap();
    let c = w.tcp_connect("h3", sa(2, 8080)).unwrap();
    w.run_for(Duration::from_secs(200));
    assert_eq!(w.tcp_state(c).unwrap(), TcpState::TimedOut);
    let syns: Vec<u64> = w
        .captured(tap)
        .unwrap()
        .iter()
        .filter(|f| f.direction == Direction::Outgoing && f.frame.len() > 42)
        .map(|f| f.time.as_nanos() / 1_000_000_000)
        .collect();
    assert_eq!(syns, [0, 1, 3, 7, 15, 31, 63]);
}

/// A SYN-ACK that arrives after the client gave up its connection matches no socket: RST,
/// with the SYN-ACK's ACK as its sequence number (seed 1's last packet).
#[test]
fn a_syn_ack_for_no_socket_gets_a_reset() {
    let mut w = single3_with("-A OUTPUT -p tcp -j NFQUEUE --queue-num 0");
    let tap = w.tap("h3", TapPoint::Any).unwrap();
    let q = w.nfq_bind("h2", 0).unwrap();
    w.tcp_listen("h2", sa(2, 8080)).unwrap();
    let c = w.tcp_connect("h3", sa(2, 8080)).unwrap();
    w.run_for(Duration::from_millis(10));
    let held = w.nfq_take(q).unwrap();
    assert_eq!(held.len(), 1, "the SYN-ACK");
    w.tcp_close(c).unwrap();
    w.nfq_verdict(q, held[0].0, true, None).unwrap();
    w.run_for(Duration::from_millis(10));
    assert_eq!(tcp_lines(&w, tap), ["> S 0", "< S. 0 ack 1", "> R 1"]);
}

#[test]
fn the_same_seed_gives_the_same_isns_and_another_seed_others() {
    let isn = |seed| {
        let mut w = single3(seed);
        let tap = w.tap("h3", TapPoint::Any).unwrap();
        w.tcp_listen("h2", sa(2, 8080)).unwrap();
        w.tcp_connect("h3", sa(2, 8080)).unwrap();
        w.run_for(Duration::from_millis(10));
        w.captured(tap)
            .unwrap()
            .iter()
            .map(|c| c.frame.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(isn(5), isn(5));
    assert_ne!(isn(5), isn(6));
}
