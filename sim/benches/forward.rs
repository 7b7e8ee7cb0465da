//! How fast the simulator moves packets: UDP datagrams from h1 to h2 through a learning bridge
//! (Mininet's `single,2`), sent, carried, switched, delivered and read, in batches of 10,000.
//! `cargo bench -p sim --bench forward`; the figure per packet, times 10^6, is the time one
//! million packets take on one core (issue 12's goal: ≤ 2 s through a bridge and a NAT router).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sim::{NetSpec, SimConfig, World};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

const BATCH: u64 = 10_000;

fn bridge(c: &mut Criterion) {
    let mut world = World::new(&NetSpec::single(2).unwrap(), SimConfig::with_seed(1)).unwrap();
    let to = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 9000);
    let rx = world.udp_bind("h2", to).unwrap();
    let tx = world
        .udp_bind("h1", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4000))
        .unwrap();
    // ARP resolved and the bridge's table learned before measuring.
    world.udp_send_to(tx, to, b"warm").unwrap();
    world.run_for(std::time::Duration::from_secs(1));
    while world.udp_recv(rx).unwrap().is_some() {}
    let payload = [0u8; 18];
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("udp_through_bridge_10k", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                world.udp_send_to(tx, to, &payload).unwrap();
                while world.step() {}
                black_box(world.udp_recv(rx).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bridge);
criterion_main!(benches);
