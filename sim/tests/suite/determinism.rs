//! Same seed, same bytes; another seed may interleave simultaneous events differently.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use sim::{Captured, SocketId, TapPoint, World};

use crate::support::{sa, single3};

/// h1 and h3 each send a datagram to h2:5000 at t=0; returns h2's socket and h1's.
fn h1_and_h3_send_to_h2(w: &mut World) -> (SocketId, SocketId) {
    let rx = w
        .udp_bind("h2", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000))
        .expect("bind");
    let s1 = w.udp_bind("h1", sa(1, 0)).expect("bind");
    let s3 = w.udp_bind("h3", sa(3, 0)).expect("bind");
    w.udp_send_to(s1, sa(2, 5000), b"from h1").expect("send");
    w.udp_send_to(s3, sa(2, 5000), b"from h3").expect("send");
    (rx, s1)
}

/// Everyone sends at t=0 (so every event is simultaneous); all frames seen, per host.
fn busy_run(seed: u64) -> (Vec<Vec<Captured>>, Vec<Vec<u8>>) {
    let mut w: World = single3(seed);
    let taps: Vec<_> = ["h1", "h2", "h3"]
        .iter()
        .map(|h| w.tap(h, TapPoint::Any).expect("tap"))
        .collect();
    let (rx, s1) = h1_and_h3_send_to_h2(&mut w);
    w.udp_send_to(s1, sa(3, 6000), b"to h3, unbound")
        .expect("send");
    w.run_for(Duration::from_secs(1));
    let got = std::iter::from_fn(|| w.udp_recv(rx).expect("open"))
        .map(|d| d.payload)
        .collect();
    let logs = taps
        .iter()
        .map(|t| w.captured(*t).expect("tap").to_vec())
        .collect();
    (logs, got)
}

#[test]
fn same_seed_gives_byte_identical_frame_logs() {
    for seed in [0, 1, 42] {
        let (a, _) = busy_run(seed);
        let (b, _) = busy_run(seed);
        assert_eq!(a, b, "seed {seed}");
        assert!(a.iter().all(|log| !log.is_empty()));
    }
}

#[test]
fn different_seeds_can_order_simultaneous_sends_differently() {
    let orders: std::collections::BTreeSet<Vec<Vec<u8>>> =
        (0..16).map(|seed| busy_run(seed).1).collect();
    assert_eq!(orders.iter().map(Vec::len).max(), Some(2));
    assert!(orders.len() > 1, "16 seeds, one order: {orders:?}");
}

#[test]
fn one_link_never_reorders_whatever_the_seed() {
    for seed in 0..16 {
        let mut w = single3(seed);
        let rx = w
            .udp_bind("h2", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000))
            .expect("bind");
        let tx = w.udp_bind("h3", sa(3, 0)).expect("bind");
        w.udp_send_to(tx, sa(2, 5000), &[0]).expect("send");
        w.run_for(Duration::from_millis(1));
        for n in 1..=8u8 {
            w.udp_send_to(tx, sa(2, 5000), &[n]).expect("send");
        }
        w.run_for(Duration::from_millis(1));
        let got: Vec<u8> = std::iter::from_fn(|| w.udp_recv(rx).expect("open"))
            .map(|d| d.payload[0])
            .collect();
        assert_eq!(got, (0..=8).collect::<Vec<u8>>(), "seed {seed}");
    }
}

/// The busy run of one seed explored: every ordering, depth first over the choice points.
fn explored_orders(seed: u64) -> (usize, std::collections::BTreeSet<Vec<Vec<u8>>>) {
    let mut orders = std::collections::BTreeSet::new();
    let mut todo = vec![Vec::<u32>::new()];
    let mut runs = 0;
    while let Some(prefix) = todo.pop() {
        let spec = sim::NetSpec::single(3).expect("spec");
        let config = sim::SimConfig {
            ordering: Some(prefix.clone()),
            ..sim::SimConfig::with_seed(seed)
        };
        let mut w = World::new(&spec, config).expect("world");
        let (rx, _) = h1_and_h3_send_to_h2(&mut w);
        w.run_for(Duration::from_secs(1));
        runs += 1;
        orders.insert(
            std::iter::from_fn(|| w.udp_recv(rx).expect("open"))
                .map(|d| d.payload)
                .collect(),
        );
        let choices = w.choices().to_vec();
        for (j, c) in choices.iter().enumerate().skip(prefix.len()) {
            for alt in 1..c.alternatives {
                let mut child: Vec<u32> = choices[..j].iter().map(|c| c.chosen).collect();
                child.push(alt);
                todo.push(child);
            }
        }
        assert!(runs < 10_000, "the search does not end");
    }
    (runs, orders)
}

#[test]
fn exploring_one_seed_finds_both_orders_of_simultaneous_sends() {
    for seed in [0, 1, 42] {
        let (runs, orders) = explored_orders(seed);
        assert!(runs > 1, "seed {seed}: no choice point");
        assert_eq!(orders.len(), 2, "seed {seed}: {orders:?}");
    }
}
