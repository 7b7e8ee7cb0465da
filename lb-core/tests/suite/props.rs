//! Properties: no input panics, the choice is a pure function of the flow and the backend set,
//! and backend changes disturb few flows.

use crate::provision::*;
use lb_core::{Action, BackendId, ForwardConfig, Framing, Nanos, State, decide, emit, wire};
use proptest::prelude::*;
use std::net::Ipv4Addr;

fn backend_name(state: &State, action: Action) -> Option<String> {
    match action {
        Action::Forward { backend, .. } => state.backend(backend).map(|b| b.spec.name.clone()),
        _ => None,
    }
}

/// A state whose conn table tracks nothing: the choice is Maglev's alone.
fn maglev_only(names: &[u8]) -> State {
    state_with(&names.iter().map(|&n| host(n)).collect::<Vec<_>>(), 0)
}

fn flow_packet(src: u32, sport: u16, dport: u16, is_udp: bool) -> Vec<u8> {
    let src = Ipv4Addr::from(src);
    if is_udp {
        udp(src, sport, dport, b"x")
    } else {
        tcp(src, sport, dport, Seg::Syn, None, &[])
    }
}

/// The Maglev choice of `n` pseudo-random flows (deterministic).
fn choices(state: &mut State, n: u32) -> Vec<Option<String>> {
    (0..n)
        .map(|i| {
            let x = i.wrapping_mul(2_654_435_761);
            let p = flow_packet(
                0x0a00_0000 | (x >> 8),
                (x & 0xffff) as u16 | 1024,
                80,
                false,
            );
            let a = decide(state, Nanos::ZERO, &p);
            backend_name(state, a)
        })
        .collect()
}

fn moved(a: &[Option<String>], b: &[Option<String>]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// A provisioned state with a small table (cheap to build per proptest case).
fn small(p: &Provision) -> State {
    let mut cfg = config(p);
    cfg.table_size = 251;
    cfg.conn_capacity = 256;
    let mut state = State::new(cfg).unwrap();
    for b in &p.backends {
        state.add_backend(b.clone()).unwrap();
    }
    state
}

/// A valid packet to mutate: more interesting than random bytes, which rarely parse.
fn seed_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u32>(),
        any::<u16>(),
        any::<bool>(),
        proptest::option::of(0u16..3000),
        0usize..64,
    )
        .prop_map(|(src, port, is_udp, mss, len)| {
            let src = Ipv4Addr::from(src);
            let payload = vec![0x5a; len];
            if is_udp {
                udp(src, port, 53, &payload)
            } else {
                tcp(src, port, 80, Seg::Syn, mss, &payload)
            }
        })
}

fn mutate(mut p: Vec<u8>, flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for &(at, x) in flips {
        if !p.is_empty() {
            let i = at % p.len();
            p[i] ^= x;
        }
    }
    p.truncate(cut.min(p.len()));
    p
}

fn exercise(state: &mut State, bytes: &[u8]) {
    let action = decide(state, Nanos::from_secs(1), bytes);
    let cfg = state.config().clone();
    let _ = emit(&cfg.forward, cfg.framing, &action, bytes, &mut Vec::new());
    let _ = wire::parse_ipv4(bytes);
    let _ = wire::parse_ethernet(bytes);
    let _ = lb_core::emit::clamp_mss(&mut bytes.to_vec(), 536);
    let _ = lb_core::emit::write_icmp_frag_needed(&mut Vec::new(), LB_IP, bytes, 1472);
    let _ = lb_core::emit::dsr_rewrite(&mut bytes.to_vec(), LB_MAC, LB_MAC);
}

proptest! {
    // No failure file: integration tests have no lib.rs to put it beside; failures print the seed.
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), eth in any::<bool>()) {
        let mut p = hosts(2);
        if eth {
            p.framing = Framing::Ethernet;
            p.mode = lb_core::ForwardMode::Dsr;
        }
        let mut state = small(&p);
        exercise(&mut state, &bytes);
        // The same bytes behind a valid-looking IPv4 header prefix, to get past the first check.
        let mut v = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 9, 10, 0, 0, 50];
        let total = (v.len() + bytes.len()) as u16;
        v[2..4].copy_from_slice(&total.to_be_bytes());
        v.extend_from_slice(&bytes);
        let mut ip_state = small(&hosts(2));
        exercise(&mut ip_state, &v);
        // And as the head of a longer packet, the way dsr-kernel's copy range delivers it.
        let mut cut = hosts(2);
        cut.framing = Framing::Ipv4Head;
        let mut cut_state = small(&cut);
        exercise(&mut cut_state, &bytes);
        let longer = (v.len() as u16).saturating_add(1000);
        v[2..4].copy_from_slice(&longer.to_be_bytes());
        exercise(&mut cut_state, &v);
    }

    #[test]
    fn mutated_packets_never_panic(
        p in seed_packet(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in 0usize..200,
        eth in any::<bool>(),
    ) {
        let bytes = mutate(p, &flips, cut);
        let mut prov = hosts(3);
        let bytes = if eth { prov.framing = Framing::Ethernet; framed(&bytes) } else { bytes };
        let mut state = small(&prov);
        exercise(&mut state, &bytes);
        if !eth {
            prov.framing = Framing::Ipv4Head;
            let mut cut_state = small(&prov);
            exercise(&mut cut_state, &bytes);
        }
    }

    #[test]
    fn clamped_syns_keep_a_valid_checksum(src in any::<u32>(), port in any::<u16>(), mss in 0u16..u16::MAX, max in 500u16..1460) {
        let mut p = tcp(Ipv4Addr::from(src), port, 80, Seg::Syn, Some(mss), &[]);
        let changed = lb_core::emit::clamp_mss(&mut p, max).unwrap();
        prop_assert_eq!(changed.is_some(), mss > max);
        let ip = wire::Ipv4Packet::new_checked(&p[..]).unwrap();
        let seg = wire::TcpPacket::new_checked(ip.payload()).unwrap();
        prop_assert!(seg.verify_checksum(ip.src_addr(), ip.dst_addr()));
        prop_assert_eq!(seg.mss().map(|m| m.0), Some(mss.min(max)));
    }

}

proptest! {
    // Each case builds two full-size (M = 65537) tables: fewer cases.
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn same_flow_same_backend_in_independent_states(
        src in any::<u32>(), sport in any::<u16>(), dport in any::<u16>(), is_udp in any::<bool>(),
        order in Just([2u8, 3, 4, 5, 6]).prop_shuffle(),
    ) {
        // Two balancers, backends added in different orders, one with a conn table, one without.
        let mut a = state_with(&[host(2), host(3), host(4), host(5), host(6)], 64);
        let mut b = maglev_only(&order);
        let p = flow_packet(src, sport, dport, is_udp);
        let (x, y) = (decide(&mut a, Nanos::ZERO, &p), decide(&mut b, Nanos::ZERO, &p));
        prop_assert!(x != Action::Drop(lb_core::DropReason::NoBackend));
        prop_assert_eq!(backend_name(&a, x), backend_name(&b, y));
    }
}

#[test]
fn adding_a_backend_moves_about_one_in_n_plus_one_new_flows_and_no_tracked_flow() {
    const FLOWS: u32 = 20_000;
    for n in [2u8, 5, 10, 20] {
        let names: Vec<u8> = (2..2 + n).collect();
        let mut before = maglev_only(&names);
        let old = choices(&mut before, FLOWS);
        let mut after = maglev_only(&names);
        after.add_backend(host(2 + n)).unwrap();
        let new = choices(&mut after, FLOWS);
        let frac = moved(&old, &new) as f64 / f64::from(FLOWS);
        let ideal = 1.0 / f64::from(n + 1);
        let to_new = old
            .iter()
            .zip(&new)
            .filter(|(o, n2)| o != n2 && n2.as_deref() == Some(&format!("h{}", 2 + n)))
            .count();
        println!(
            "N={n}: {frac:.4} of new flows moved (ideal {ideal:.4}), {to_new} of them to the new backend"
        );
        assert!(
            frac > ideal * 0.8 && frac < ideal * 1.25,
            "N={n}: moved {frac}, ideal {ideal}"
        );

        // Tracked flows never move.
        let mut tracked = state_with(
            &names.iter().map(|&x| host(x)).collect::<Vec<_>>(),
            2 * FLOWS as usize,
        );
        let t_old = choices(&mut tracked, FLOWS);
        tracked.add_backend(host(2 + n)).unwrap();
        assert_eq!(
            choices(&mut tracked, FLOWS),
            t_old,
            "N={n}: a tracked flow moved"
        );
    }
}

#[test]
fn removing_a_backend_moves_only_its_own_tracked_flows() {
    const FLOWS: u32 = 20_000;
    let names: Vec<u8> = (2..12).collect();
    let mut tracked = state_with(
        &names.iter().map(|&x| host(x)).collect::<Vec<_>>(),
        2 * FLOWS as usize,
    );
    let mut untracked = maglev_only(&names);
    let old = choices(&mut tracked, FLOWS);
    assert_eq!(old, choices(&mut untracked, FLOWS));
    let victim: BackendId = tracked.backend_by_name("h5").unwrap().id;
    tracked.remove_backend(victim).unwrap();
    let id = untracked.backend_by_name("h5").unwrap().id;
    untracked.remove_backend(id).unwrap();
    let new = choices(&mut tracked, FLOWS);
    for (o, n) in old.iter().zip(&new) {
        if o.as_deref() == Some("h5") {
            assert_ne!(n.as_deref(), Some("h5"));
        } else {
            assert_eq!(o, n, "a flow of a remaining backend moved");
        }
    }
    // Without a conn table Maglev alone is near-minimal: report how many others moved.
    let pure = choices(&mut untracked, FLOWS);
    let others_moved = old
        .iter()
        .zip(&pure)
        .filter(|(o, n)| o.as_deref() != Some("h5") && o != n)
        .count();
    let frac = others_moved as f64 / f64::from(FLOWS);
    println!("removing 1 of 10 without a conn table: {frac:.4} of the other backends' flows moved");
    assert!(frac < 0.05, "{frac}");
}

#[test]
fn forward_config_default_is_caplance_compatible() {
    let d = ForwardConfig::default();
    assert_eq!(
        (d.mode, d.encap_src_port, d.mtu),
        (lb_core::ForwardMode::UdpEncap, 1337, 1500)
    );
    assert_eq!(lb_core::forward::ENCAP_PORT, 1337);
}
