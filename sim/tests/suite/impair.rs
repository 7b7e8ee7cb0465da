//! Link impairments in virtual time: the decider's losses and copies exactly, the delay on
//! the clock, ARP unimpaired, jitter reordering, and a shaped link's rate.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use sim::impair::{Decider, Fate, Impairment, Way, stream_seed};
use sim::{NetSpec, SimConfig, SimTime, World};

use crate::support::sa;

fn imp(words: &[(&str, &str)]) -> Impairment {
    let mut i = Impairment::default();
    for (k, v) in words {
        i.set(k, v).unwrap();
    }
    i
}

/// `single,2` with h1's link (link 0, h1 → s1 forward) impaired one way.
fn world(p: &Impairment, way: Way) -> World {
    let mut spec = NetSpec::single(2).unwrap();
    spec.impair_link(0, way, p.clone(), stream_seed(p.seed.unwrap_or(0), 0, way))
        .unwrap();
    World::new(&spec, SimConfig::default()).unwrap()
}

/// Sends `n` numbered datagrams h1 → h2, `gap` apart; returns (number, arrival) in order.
fn send(w: &mut World, n: u32, gap: Duration) -> Vec<(u32, SimTime)> {
    let rx = w
        .udp_bind("h2", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7000))
        .unwrap();
    let tx = w.udp_bind("h1", sa(1, 0)).unwrap();
    for i in 0..n {
        w.udp_send_to(tx, sa(2, 7000), &i.to_be_bytes()).unwrap();
        w.run_for(gap);
    }
    w.run_for(Duration::from_secs(5));
    std::iter::from_fn(|| w.udp_recv(rx).unwrap())
        .map(|d| {
            (
                u32::from_be_bytes(d.payload[..4].try_into().unwrap()),
                d.time,
            )
        })
        .collect()
}

#[test]
fn losses_and_copies_are_the_deciders_and_the_delay_is_on_the_clock() {
    let p = imp(&[
        ("loss", "20%"),
        ("duplicate", "5%"),
        ("delay", "50ms"),
        ("seed", "7"),
    ]);
    let mut w = world(&p, Way::Forward);
    let got = send(&mut w, 1000, Duration::from_millis(1));
    let mut d = Decider::new(&p, stream_seed(7, 0, Way::Forward));
    let want: Vec<u32> = (0..1000)
        .flat_map(|i| match d.fate() {
            Fate::Drop => vec![],
            Fate::Deliver { twice, .. } => vec![i; 1 + usize::from(twice)],
        })
        .collect();
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), want);
    // Datagram i leaves at i ms (ARP first: unimpaired, so no wait beyond the delay).
    let (first, at) = got[0];
    let sent = Duration::from_millis(u64::from(first));
    let took = at.saturating_duration_since(SimTime::ZERO) - sent;
    assert!(
        (Duration::from_millis(50)..Duration::from_millis(51)).contains(&took),
        "{took:?}"
    );
}

#[test]
fn jitter_reorders_and_a_rate_holds() {
    let p = imp(&[("delay", "10ms"), ("jitter", "9ms")]);
    let got = send(&mut world(&p, Way::Forward), 300, Duration::from_millis(1));
    assert_eq!(got.len(), 300);
    assert!(got.windows(2).filter(|w| w[1].0 < w[0].0).count() > 30);

    // 1000-byte datagrams offered at 16 Mbit/s to a 1 Mbit/s link: what arrives comes at 1.
    let p = imp(&[("rate", "1mbit")]);
    let mut w = world(&p, Way::Forward);
    let rx = w
        .udp_bind("h2", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7000))
        .unwrap();
    let tx = w.udp_bind("h1", sa(1, 0)).unwrap();
    for _ in 0..4000 {
        w.udp_send_to(tx, sa(2, 7000), &[0u8; 1000]).unwrap();
        w.run_for(Duration::from_micros(500));
    }
    w.run_for(Duration::from_secs(2));
    let got: Vec<SimTime> = std::iter::from_fn(|| w.udp_recv(rx).unwrap())
        .map(|d| d.time)
        .collect();
    let span = got[got.len() - 1]
        .saturating_duration_since(got[0])
        .as_secs_f64();
    let mbit = (got.len() - 1) as f64 * 1042.0 * 8.0 / span / 1e6;
    assert!(
        (0.95..1.05).contains(&mbit),
        "{mbit} Mbit/s from {} datagrams",
        got.len()
    );
    assert!(
        got.len() < 400,
        "tbf drops what waits past its latency: {}",
        got.len()
    );
}
