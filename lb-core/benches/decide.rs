//! `decide` throughput: tracked flows (the hot path), new flows (Maglev + conn-table insert),
//! and new flows without a conn table (Caplance's mode); `decide_batch` over batches of 64
//! packets (the NFQUEUE receive batch) with the same flow patterns.
//!
//! `cargo bench -p lb-core --bench decide`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use lb_core::{
    Action, BackendSpec, Config, ForwardConfig, MacAddr, Nanos, State, decide, decide_batch,
};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);

fn state(backends: u32, conn_capacity: usize) -> State {
    let cfg = Config {
        vips: vec![VIP],
        conn_capacity,
        forward: ForwardConfig {
            local_ip: Ipv4Addr::new(10, 0, 0, 1),
            ..ForwardConfig::default()
        },
        ..Config::default()
    };
    let mut s = State::new(cfg).expect("valid config");
    for i in 0..backends {
        let addr = Ipv4Addr::from(0x0a00_1000 + i);
        s.add_backend(BackendSpec::new(
            format!("backend-{i}"),
            addr,
            MacAddr([2, 0, 0, 0, 0, 1]),
        ))
        .expect("valid backend");
    }
    s
}

/// The state with other conn-table timeouts (rebuilt: timeouts are configuration).
fn with_timeouts(s: State, timeouts: lb_core::Timeouts) -> State {
    let mut cfg = s.config().clone();
    cfg.timeouts = timeouts;
    let mut fresh = State::new(cfg).expect("valid config");
    for b in s.backends() {
        fresh.add_backend(b.spec.clone()).expect("valid backend");
    }
    fresh
}

fn syn(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), VIP.octets(), 64)
        .tcp(sport, 80, 1, 64240)
        .syn();
    let mut v = Vec::new();
    b.write(&mut v, &[]).expect("builds");
    v
}

fn ack(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), VIP.octets(), 64)
        .tcp(sport, 80, 1, 64240)
        .ack(1);
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 100]).expect("builds");
    v
}

/// Writes flow number `i` (distinct for every i < 2^40) into a SYN template's source fields.
/// Checksums go stale, which `decide` does not look at.
#[inline(always)]
fn patch(template: &mut [u8], i: u64) {
    let src = 0x0b00_0000u32 | (i >> 16) as u32;
    template[12..16].copy_from_slice(&src.to_be_bytes());
    template[20..22].copy_from_slice(&(i as u16).to_be_bytes());
}

fn bench_decide(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);

    // Hot path: 4096 established flows, ACKs with 100 bytes of data, cycled.
    let mut s = state(100, 1 << 16);
    let flows: Vec<Vec<u8>> = (0..4096u32)
        .map(|i| {
            let src = Ipv4Addr::from(0x0b00_0000 + i);
            decide(&mut s, Nanos::ZERO, &syn(src, 40000));
            ack(src, 40000)
        })
        .collect();
    let mut i = 0usize;
    let mut now = 0u64;
    g.bench_function("tracked_flow", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            now += 100;
            black_box(decide(&mut s, Nanos(now), black_box(&flows[i])))
        })
    });

    // The same hot path with 2^20 tracked flows: the table (~64 MiB) no longer fits in cache.
    const BIG: u64 = 1 << 20;
    let mut s = state(100, BIG as usize);
    let mut p = syn(Ipv4Addr::new(11, 0, 0, 0), 1);
    for i in 0..BIG {
        patch(&mut p, i);
        decide(&mut s, Nanos::ZERO, &p);
    }
    let mut a = ack(Ipv4Addr::new(11, 0, 0, 0), 1);
    let mut n = 0u64;
    g.bench_function("tracked_flow_1m", |b| {
        b.iter(|| {
            // A large odd stride visits every flow, in an order the prefetcher cannot follow.
            n = (n + 0x9e37_79b9) & (BIG - 1);
            patch(&mut a, n);
            black_box(decide(&mut s, Nanos::ZERO, black_box(&a)))
        })
    });

    // New flows in steady state: `flows` distinct flows cycled through a table of as many
    // entries whose timeouts are short in virtual time, so every decision finds the flow's
    // previous entry expired, removes it and inserts a new one after a Maglev pick (warm-up
    // fills the table, so no page is touched for the first time while timing).
    for (name, flows) in [("new_flow_64k", 1u64 << 16), ("new_flow_1m", BIG)] {
        let s = state(100, flows as usize);
        let mut timeouts = *s.conns().timeouts();
        timeouts.tcp_established = Nanos(1_000);
        let mut s = with_timeouts(s, timeouts);
        let mut p = syn(Ipv4Addr::new(11, 0, 0, 0), 1);
        let mut n = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                patch(&mut p, n & (flows - 1));
                black_box(decide(&mut s, Nanos(n * 1_000), black_box(&p)))
            })
        });
    }

    // New flows with no connection table: Maglev alone, Caplance's mode.
    let mut s = state(100, 0);
    let mut p = syn(Ipv4Addr::new(11, 0, 0, 0), 1);
    let mut n = 0u64;
    g.bench_function("new_flow_untracked", |b| {
        b.iter(|| {
            n += 1;
            patch(&mut p, n);
            black_box(decide(&mut s, Nanos(n), black_box(&p)))
        })
    });
    g.finish();
}

/// The same flow patterns as `bench_decide`, 64 packets per `decide_batch` call: one
/// iteration decides 64 packets, so criterion's throughput is decisions per second.
fn bench_decide_batch(c: &mut Criterion) {
    const BATCH: u64 = lb_core::decide::BATCH as u64;
    const BIG: u64 = 1 << 20;
    let mut g = c.benchmark_group("decide_batch");
    g.throughput(Throughput::Elements(BATCH));
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    let mut out: Vec<Action> = Vec::with_capacity(BATCH as usize);

    // New flows in steady state, as `decide/new_flow_*`: flow numbers n, n + 1, … cycled
    // through a full table whose entries have expired by the time their flow comes back.
    for (name, flows) in [("new_flow_64k", 1u64 << 16), ("new_flow_1m", BIG)] {
        let s = state(100, flows as usize);
        let mut timeouts = *s.conns().timeouts();
        timeouts.tcp_established = Nanos(1_000);
        let mut s = with_timeouts(s, timeouts);
        let mut batch = vec![syn(Ipv4Addr::new(11, 0, 0, 0), 1); BATCH as usize];
        let mut n = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                for p in &mut batch {
                    n += 1;
                    patch(p, n & (flows - 1));
                }
                decide_batch(&mut s, Nanos(n * 1_000), black_box(&batch), &mut out);
                black_box(&out);
            })
        });
    }

    // ACKs of 2^20 tracked flows in the order of `decide/tracked_flow_1m`.
    let mut s = state(100, BIG as usize);
    let mut p = syn(Ipv4Addr::new(11, 0, 0, 0), 1);
    for i in 0..BIG {
        patch(&mut p, i);
        decide(&mut s, Nanos::ZERO, &p);
    }
    let mut batch = vec![ack(Ipv4Addr::new(11, 0, 0, 0), 1); BATCH as usize];
    let mut n = 0u64;
    g.bench_function("tracked_flow_1m", |b| {
        b.iter(|| {
            for p in &mut batch {
                n = (n + 0x9e37_79b9) & (BIG - 1);
                patch(p, n);
            }
            decide_batch(&mut s, Nanos::ZERO, black_box(&batch), &mut out);
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_decide, bench_decide_batch);
criterion_main!(benches);
