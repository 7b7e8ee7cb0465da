//! `decide_batch` is `decide` on each packet in turn: same actions, counters, backend counters
//! and connection-table contents, whatever the batch holds (repeated flows, expired entries,
//! RSTs, a full table, drops) and across backend changes between batches.

use crate::provision::*;
use lb_core::{Action, BackendState, Framing, Nanos, State, Timeouts, decide, decide_batch};
use proptest::prelude::*;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tcp(Seg),
    Udp,
    /// A UDP datagram with DF set, too big once encapsulated.
    BigDf,
    NotVip,
    Truncated,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Tcp(Seg::Syn)),
        4 => Just(Kind::Tcp(Seg::Ack)),
        1 => Just(Kind::Tcp(Seg::FinAck)),
        1 => Just(Kind::Tcp(Seg::Rst)),
        2 => Just(Kind::Udp),
        1 => Just(Kind::BigDf),
        1 => Just(Kind::NotVip),
        1 => Just(Kind::Truncated),
    ]
}

/// Flow `flow` of a small pool (so flows repeat within a batch), as a `kind` packet.
fn packet(flow: u8, kind: Kind, eth: bool) -> Vec<u8> {
    let src = Ipv4Addr::new(192, 168, 1, flow % 8);
    let sport = 40_000 + u16::from(flow / 8);
    let ip = match kind {
        Kind::Tcp(seg) => tcp(src, sport, 80, seg, None, &[]),
        Kind::Udp => udp(src, sport, 53, b"q"),
        Kind::BigDf => {
            let mut p = udp(src, sport, 53, &[0; 1480]);
            p[6] |= 0x40;
            p
        }
        Kind::NotVip => tcp_to(
            src,
            Ipv4Addr::new(10, 9, 9, 9),
            sport,
            80,
            Seg::Syn,
            None,
            &[],
        ),
        Kind::Truncated => tcp(src, sport, 80, Seg::Ack, None, &[])[..30].to_vec(),
    };
    if eth { framed(&ip) } else { ip }
}

/// A backend change applied between batches (to both states alike).
#[derive(Debug, Clone, Copy)]
enum Change {
    None,
    Set(u8, BackendState),
    Remove(u8),
    Add(u8),
}

fn change() -> impl Strategy<Value = Change> {
    let state = prop_oneof![
        Just(BackendState::Active),
        Just(BackendState::Draining),
        Just(BackendState::Down),
    ];
    prop_oneof![
        3 => Just(Change::None),
        2 => (2u8..6, state).prop_map(|(h, s)| Change::Set(h, s)),
        1 => (2u8..6).prop_map(Change::Remove),
        1 => (2u8..6).prop_map(Change::Add),
    ]
}

fn apply(s: &mut State, change: Change) {
    let id = |s: &State, h: u8| s.backend_by_name(&format!("h{h}")).map(|b| b.id);
    // Refusals (unknown or duplicate backends) are the same on both states: ignored.
    match change {
        Change::None => {}
        Change::Set(h, state) => {
            if let Some(id) = id(s, h) {
                let _ = s.set_backend_state(id, state);
            }
        }
        Change::Remove(h) => {
            if let Some(id) = id(s, h) {
                let _ = s.remove_backend(id);
            }
        }
        Change::Add(h) => {
            let _ = s.add_backend(host(h));
        }
    }
}

fn fresh(capacity: usize, eth: bool) -> State {
    let mut p = hosts(3);
    if eth {
        p.framing = Framing::Ethernet;
    }
    let mut cfg = config(&p);
    cfg.table_size = 251;
    cfg.conn_capacity = capacity;
    cfg.timeouts = Timeouts {
        tcp_established: Nanos::from_secs(6),
        tcp_closing: Nanos::from_secs(2),
        udp: Nanos::from_secs(3),
    };
    let mut state = State::new(cfg).expect("valid config");
    for b in &p.backends {
        state.add_backend(b.clone()).expect("valid backend");
    }
    state
}

type Batch = (u64, Vec<(u8, Kind)>, Change, Option<usize>);

fn batch() -> impl Strategy<Value = Batch> {
    (
        0u64..4,
        // Past 64 packets, a batch is decided in groups of 64.
        proptest::collection::vec((0u8..24, kind()), 0..150),
        change(),
        proptest::option::of(0usize..64),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_batch_decides_like_packets_in_turn(
        capacity in prop_oneof![Just(0usize), 1usize..12, Just(64)],
        eth in any::<bool>(),
        batches in proptest::collection::vec(batch(), 1..6),
    ) {
        let mut one = fresh(capacity, eth);
        let mut many = fresh(capacity, eth);
        let mut now = Nanos::ZERO;
        let mut out = Vec::new();
        for (wait, flows, change, sweep) in batches {
            now = now.plus(Nanos::from_secs(wait));
            let packets: Vec<Vec<u8>> = flows.iter().map(|&(f, k)| packet(f, k, eth)).collect();
            let expected: Vec<Action> = packets.iter().map(|p| decide(&mut one, now, p)).collect();
            decide_batch(&mut many, now, &packets, &mut out);
            prop_assert_eq!(&out, &expected);
            prop_assert_eq!(many.counters(), one.counters());
            prop_assert_eq!(many.backends().collect::<Vec<_>>(), one.backends().collect::<Vec<_>>());
            prop_assert_eq!(many.conns().len(), one.conns().len());
            prop_assert!(many.conns().iter().eq(one.conns().iter()), "conn tables differ");
            for s in [&mut one, &mut many] {
                apply(s, change);
                if let Some(budget) = sweep {
                    s.expire(now, budget);
                }
            }
        }
    }
}

/// The batch path on its own terms: a flow repeated within one batch is new once, then
/// tracked; a RST of an untracked flow inserts nothing; a full table refuses and counts.
#[test]
fn repeated_flows_rst_and_a_full_table_within_one_batch() {
    let mut s = fresh(2, false);
    let batch = [
        packet(0, Kind::Tcp(Seg::Syn), false),
        packet(0, Kind::Tcp(Seg::Ack), false),
        packet(1, Kind::Tcp(Seg::Rst), false),
        packet(2, Kind::Udp, false),
        packet(3, Kind::Udp, false),
        packet(2, Kind::Udp, false),
    ];
    let mut out = Vec::new();
    decide_batch(&mut s, Nanos::ZERO, &batch, &mut out);
    let new: Vec<Option<bool>> = out
        .iter()
        .map(|a| match a {
            Action::Forward { new_flow, .. } => Some(*new_flow),
            _ => None,
        })
        .collect();
    assert_eq!(
        new,
        [
            Some(true),
            Some(false),
            Some(true),
            Some(true),
            Some(true),
            Some(false)
        ]
    );
    assert_eq!(
        s.conns().len(),
        2,
        "flow 0 and flow 2; the RST added nothing"
    );
    assert_eq!(
        s.counters().conn_table_full,
        1,
        "flow 3 found the table full"
    );
    assert_eq!(s.counters().forwarded, 6);
}
