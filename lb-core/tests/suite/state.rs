//! Behaviour of `State` and `decide` over time: stickiness, draining, removal, limits.

use crate::provision::*;
use lb_core::{
    Action, BackendError, BackendId, BackendSpec, BackendState, Config, ConfigError, DropReason,
    Nanos, State, decide, select::maglev::MaglevError,
};
use std::net::Ipv4Addr;

fn backend_of(action: Action) -> BackendId {
    match action {
        Action::Forward { backend, .. } => backend,
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0000 + i)
}

/// SYNs of `n` flows at `now`; returns each flow's backend.
fn open_flows(state: &mut State, n: u32, now: Nanos) -> Vec<BackendId> {
    open_flows_from(state, 0, n, now)
}

/// SYNs of `n` flows from clients `first..first + n` at `now`; returns each flow's backend.
fn open_flows_from(state: &mut State, first: u32, n: u32, now: Nanos) -> Vec<BackendId> {
    (first..first + n)
        .map(|i| {
            backend_of(decide(
                state,
                now,
                &tcp(client(i), 40000, 80, Seg::Syn, None, &[]),
            ))
        })
        .collect()
}

/// An ACK of each flow at `now`; returns each flow's backend.
fn continue_flows(state: &mut State, n: u32, now: Nanos) -> Vec<BackendId> {
    (0..n)
        .map(|i| {
            backend_of(decide(
                state,
                now,
                &tcp(client(i), 40000, 80, Seg::Ack, None, b"x"),
            ))
        })
        .collect()
}

#[test]
fn draining_keeps_tracked_flows_and_takes_no_new_ones() {
    let mut s = state_with(&[host(2), host(3)], 4096);
    let before = open_flows(&mut s, 200, Nanos::ZERO);
    let h2 = s.backend_by_name("h2").unwrap().id;
    assert!(before.contains(&h2));
    s.set_backend_state(h2, BackendState::Draining).unwrap();
    assert_eq!(
        continue_flows(&mut s, 200, Nanos::from_secs(1)),
        before,
        "tracked flows stay"
    );
    for i in 1000..1200 {
        let b = backend_of(decide(
            &mut s,
            Nanos::from_secs(1),
            &tcp(client(i), 40000, 80, Seg::Syn, None, &[]),
        ));
        assert_ne!(b, h2, "a draining backend takes no new flow");
    }
    assert_eq!(s.counters().flows_moved, 0);
}

#[test]
fn down_or_removed_backend_loses_only_its_own_flows() {
    let mut s = state_with(&[host(2), host(3), host(4)], 4096);
    let before = open_flows(&mut s, 300, Nanos::ZERO);
    let h3 = s.backend_by_name("h3").unwrap().id;
    let own = before.iter().filter(|&&b| b == h3).count();
    assert!(own > 0);
    s.set_backend_state(h3, BackendState::Down).unwrap();
    let after = continue_flows(&mut s, 300, Nanos::from_secs(1));
    for (b, a) in before.iter().zip(&after) {
        if *b == h3 {
            assert_ne!(*a, h3, "a down backend gets nothing");
        } else {
            assert_eq!(a, b, "flows of other backends stay");
        }
    }
    assert_eq!(s.counters().flows_moved, own as u64);
    // Removing it for good: the moved flows are now tracked on their new backends.
    s.remove_backend(h3).unwrap();
    assert_eq!(continue_flows(&mut s, 300, Nanos::from_secs(2)), after);
    assert_eq!(s.counters().flows_moved, own as u64);
}

#[test]
fn adding_a_backend_moves_no_tracked_flow() {
    let mut s = state_with(&[host(2), host(3)], 4096);
    let before = open_flows(&mut s, 300, Nanos::ZERO);
    s.add_backend(host(4)).unwrap();
    s.add_backend(host(5)).unwrap();
    assert_eq!(continue_flows(&mut s, 300, Nanos::from_secs(1)), before);
}

#[test]
fn backend_management_errors() {
    let mut s = state_with(&[host(2)], 16);
    assert_eq!(
        s.add_backend(host(2)),
        Err(BackendError::DuplicateName { name: "h2".into() })
    );
    let h3 = s.add_backend(host(3)).unwrap();
    let gone = s.remove_backend(h3).unwrap();
    assert_eq!(gone.spec.name, "h3");
    assert_eq!(
        s.remove_backend(h3),
        Err(BackendError::UnknownId { id: h3 })
    );
    // The slot is reused with a new generation: the old id stays dead.
    let h4 = s.add_backend(host(4)).unwrap();
    assert_eq!(h4.slot(), h3.slot());
    assert!(s.backend(h3).is_none());
    assert_eq!(
        s.set_backend_weight(h3, 2),
        Err(BackendError::UnknownId { id: h3 })
    );
    let h4spec = s.backend(h4).unwrap().spec.clone();
    let renamed = BackendSpec {
        name: "h2".into(),
        ..h4spec
    };
    assert!(matches!(
        s.update_backend(h4, renamed),
        Err(BackendError::DuplicateName { .. })
    ));

    let mut small = Config {
        table_size: 3,
        ..config(&hosts(0))
    };
    small.conn_capacity = 16;
    let mut tiny = State::new(small).unwrap();
    for n in 2..5 {
        tiny.add_backend(host(n)).unwrap();
    }
    assert_eq!(
        tiny.add_backend(host(5)),
        Err(BackendError::Maglev(MaglevError::TooSmall {
            size: 3,
            backends: 4
        }))
    );
    assert!(
        tiny.backend_by_name("h5").is_none(),
        "a refused change leaves no trace"
    );
}

#[test]
fn config_errors() {
    let bad = Config {
        table_size: 65_535,
        ..config(&hosts(0))
    };
    assert_eq!(
        State::new(bad).unwrap_err(),
        ConfigError::TableSize(MaglevError::NotPrime { size: 65_535 })
    );
    let mut tiny_mtu = config(&hosts(0));
    tiny_mtu.forward.mtu = 90;
    assert!(matches!(
        State::new(tiny_mtu),
        Err(ConfigError::MtuTooSmall { mtu: 90, min: 96 })
    ));
    let msg = State::new(Config {
        table_size: 10,
        ..config(&hosts(0))
    })
    .unwrap_err()
    .to_string();
    assert_eq!(msg, "table_size: Maglev table size 10 is not prime");
}

#[test]
fn weight_zero_takes_no_new_flows() {
    let mut s = state_with(&[host(2), host(3)], 4096);
    let h2 = s.backend_by_name("h2").unwrap().id;
    s.set_backend_weight(h2, 0).unwrap();
    assert!(
        open_flows(&mut s, 200, Nanos::ZERO)
            .iter()
            .all(|&b| b != h2)
    );
}

#[test]
fn full_table_falls_back_to_maglev() {
    let mut s = state_with(&[host(2), host(3), host(4)], 10);
    let mut pure = state_with(&[host(2), host(3), host(4)], 0);
    let tracked = open_flows(&mut s, 50, Nanos::ZERO);
    assert_eq!(s.conns().len(), 10);
    assert_eq!(s.counters().conn_table_full, 40);
    // Refused flows still get their Maglev backend, the same a table-less balancer picks.
    assert_eq!(tracked, open_flows(&mut pure, 50, Nanos::ZERO));
    assert_eq!(pure.conns().len(), 0);
    assert_eq!(pure.counters().conn_table_full, 0);
}

#[test]
fn rst_and_fin_shorten_the_entry_life() {
    let mut s = state_with(&[host(2), host(3)], 64);
    open_flows(&mut s, 3, Nanos::ZERO);
    decide(
        &mut s,
        Nanos::ZERO,
        &tcp(client(0), 40000, 80, Seg::Rst, None, &[]),
    );
    decide(
        &mut s,
        Nanos::ZERO,
        &tcp(client(1), 40000, 80, Seg::FinAck, None, &[]),
    );
    let all = s.conns().buckets();
    assert_eq!(
        s.expire(Nanos::from_secs(31), all),
        2,
        "closing entries expire after 30 s"
    );
    assert_eq!(s.conns().len(), 1);
    assert_eq!(
        s.expire(Nanos::from_secs(301), all),
        1,
        "the open one after 300 s"
    );
}

#[test]
fn syn_on_a_closing_flow_is_a_new_flow() {
    let mut s = state_with(&[host(2), host(3)], 64);
    let syn = tcp(client(7), 40000, 80, Seg::Syn, None, &[]);
    assert!(matches!(
        decide(&mut s, Nanos::ZERO, &syn),
        Action::Forward { new_flow: true, .. }
    ));
    assert!(
        matches!(
            decide(&mut s, Nanos::ZERO, &syn),
            Action::Forward {
                new_flow: false,
                ..
            }
        ),
        "SYN retransmit"
    );
    decide(
        &mut s,
        Nanos::ZERO,
        &tcp(client(7), 40000, 80, Seg::FinAck, None, &[]),
    );
    assert!(matches!(
        decide(&mut s, Nanos::from_secs(1), &syn),
        Action::Forward { new_flow: true, .. }
    ));
    assert_eq!(
        s.counters().flows_moved,
        0,
        "a reopened flow is not a moved flow"
    );
}

#[test]
fn counters_per_backend_and_reason() {
    let mut s = state_with(&[host(2)], 64);
    let syn = tcp(client(1), 40000, 80, Seg::Syn, None, &[]);
    decide(&mut s, Nanos::ZERO, &syn);
    decide(
        &mut s,
        Nanos::ZERO,
        &tcp(client(1), 40000, 80, Seg::Ack, None, b"hello"),
    );
    decide(&mut s, Nanos::ZERO, &syn[..10]);
    let c = s.backend_by_name("h2").unwrap().counters;
    assert_eq!((c.packets, c.bytes, c.flows), (2, 40 + 45, 1));
    assert_eq!(
        s.counters()
            .drop_count(DropReason::Parse(lb_core::wire::ParseError::Ipv4Truncated)),
        1
    );
    assert_eq!(s.counters().forwarded, 2);
}

#[test]
fn cut_packets_decide_like_whole_ones_and_count_their_real_length() {
    // NFQUEUE with a copy range (dsr-kernel): 1400 bytes of payload, 128 bytes copied.
    let whole = udp(client(7), 40000, 8080, &[0xab; 1400]);
    let cut = &whole[..128];
    let mut head = state_with(&[host(2), host(3)], 64);
    let mut cfg: Config = head.config().clone();
    cfg.framing = lb_core::Framing::Ipv4Head;
    let mut head_state = State::new(cfg).unwrap();
    for b in head.backends().map(|b| b.spec.clone()).collect::<Vec<_>>() {
        head_state.add_backend(b).unwrap();
    }
    let a = decide(&mut head_state, Nanos::ZERO, cut);
    let b = decide(&mut head, Nanos::ZERO, &whole);
    assert_eq!(a, b, "same flow, same choice");
    let id = backend_of(a);
    let bytes = head_state.backend(id).unwrap().counters.bytes;
    assert_eq!(bytes, whole.len() as u64, "the real length is counted");
    // Cut inside the transport header: dropped as truncated, as a whole packet would be.
    let too_short = &whole[..24];
    assert_eq!(
        decide(&mut head_state, Nanos::ZERO, too_short),
        Action::Drop(DropReason::Parse(lb_core::wire::ParseError::UdpTruncated))
    );
    // The plain IPv4 intake refuses a cut packet: its total length promises more.
    assert_eq!(
        decide(&mut head, Nanos::ZERO, cut),
        Action::Drop(DropReason::Parse(
            lb_core::wire::ParseError::Ipv4BadTotalLen
        ))
    );
}

#[test]
fn balancers_with_the_same_backends_and_key_have_one_table_fingerprint() {
    let a = state_with(&[host(2), host(3), host(4)], 16);
    // Added in another order, with a removal on the way: the same table.
    let mut b = state_with(&[host(4), host(5), host(2)], 16);
    let h5 = b.backend_by_name("h5").unwrap().id;
    b.remove_backend(h5).unwrap();
    b.add_backend(host(3)).unwrap();
    assert_eq!(a.table_fingerprint(), b.table_fingerprint());

    // Whatever would send a new flow elsewhere changes it: the key, the set, a drain, an address.
    let mut other_key = config(&hosts(0));
    other_key.hash_key = lb_core::select::hash::HashKey(*b"another key, v1!");
    let mut k = State::new(other_key).unwrap();
    for h in [2, 3, 4] {
        k.add_backend(host(h)).unwrap();
    }
    let fewer = state_with(&[host(2), host(3)], 16);
    let mut drained = state_with(&[host(2), host(3), host(4)], 16);
    let h4 = drained.backend_by_name("h4").unwrap().id;
    drained
        .set_backend_state(h4, BackendState::Draining)
        .unwrap();
    let mut moved = host(4);
    moved.addr = Ipv4Addr::new(10, 0, 1, 4);
    let readdressed = state_with(&[host(2), host(3), moved], 16);
    let prints = [
        a.table_fingerprint(),
        k.table_fingerprint(),
        fewer.table_fingerprint(),
        readdressed.table_fingerprint(),
    ];
    for (i, p) in prints.iter().enumerate() {
        for q in &prints[i + 1..] {
            assert_ne!(p, q, "{prints:x?}");
        }
    }
    // A drain takes the backend out of the table: the table of the others.
    assert_eq!(drained.table_fingerprint(), fewer.table_fingerprint());
}

/// Issue 17's second case in the core: balancer A carried 300 flows and died; balancer B, with
/// the same backends, got a fifth one a moment earlier. The flows' next packets reach B, which
/// tracks none of them.
#[test]
fn a_mid_connection_packet_after_a_backend_change_goes_where_the_earlier_table_sent_it() {
    let three = [host(2), host(3), host(4)];
    let mut a = state_with(&three, 4096);
    let before = open_flows(&mut a, 300, Nanos::ZERO);
    let name = |s: &State, ids: &[BackendId]| -> Vec<String> {
        ids.iter()
            .map(|id| s.backend(*id).unwrap().spec.name.clone())
            .collect()
    };
    let before = name(&a, &before);
    // B serves (one packet of another flow), then h5 is added.
    let survivor = |grace: std::time::Duration| {
        let mut cfg = config(&hosts(0));
        cfg.conn_capacity = 4096;
        cfg.table_grace = grace;
        let mut b = State::new(cfg).unwrap();
        for h in &three {
            b.add_backend(h.clone()).unwrap();
        }
        decide(
            &mut b,
            Nanos::ZERO,
            &tcp(client(9999), 40000, 80, Seg::Syn, None, &[]),
        );
        b.add_backend(host(5)).unwrap();
        b
    };
    let mut b = survivor(std::time::Duration::from_secs(10));
    let after = continue_flows(&mut b, 300, Nanos::from_secs(1));
    assert_eq!(
        name(&b, &after),
        before,
        "every moved flow keeps its backend"
    );
    assert_eq!(b.counters().previous_table, 300);
    // A new connection is decided by the current table: h5 takes its share.
    let new = open_flows_from(&mut b, 1000, 300, Nanos::from_secs(1));
    let h5 = b.backend_by_name("h5").unwrap().id;
    assert!(new.iter().filter(|&&id| id == h5).count() > 40, "{new:?}");

    // Without the grace, about a quarter of the moved flows go elsewhere (Maglev's bound: one
    // backend in four is new).
    let mut b = survivor(std::time::Duration::ZERO);
    let after = {
        let ids = continue_flows(&mut b, 300, Nanos::from_secs(1));
        name(&b, &ids)
    };
    let moved = after.iter().zip(&before).filter(|(x, y)| x != y).count();
    assert!((50..=100).contains(&moved), "{moved} of 300 moved");

    // Once the grace has passed (it runs from the first packet after the change), the current
    // table decides.
    let mut b = survivor(std::time::Duration::from_secs(10));
    decide(
        &mut b,
        Nanos::from_secs(1),
        &tcp(client(9998), 40000, 80, Seg::Syn, None, &[]),
    );
    let late = {
        let ids = continue_flows(&mut b, 300, Nanos::from_secs(12));
        name(&b, &ids)
    };
    assert_eq!(late, after);
    assert_eq!(b.counters().previous_table, 0);

    // Backends added at start, before any packet, leave no earlier table: a balancer that
    // restarts decides by the table every flow was decided by.
    let mut fresh = state_with(&[host(2), host(3), host(4), host(5)], 4096);
    let ids = continue_flows(&mut fresh, 300, Nanos::ZERO);
    let restarted = name(&fresh, &ids);
    assert_eq!(restarted, after);
}
