//! How fast the simulator moves packets: UDP datagrams from h1 to h2 through a learning bridge
//! (Mininet's `single,2`), sent, carried, switched, delivered and read, in batches of 10,000.
//! `cargo bench -p sim --bench forward`; the figure per packet, times 10^6, is the time one
//! million packets take on one core (issue 12's goal: ≤ 2 s through a bridge and a NAT router).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sim::{Endpoint, Ipv4Net, MacAddr, NetSpec, SimConfig, Sysctl, World};
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

/// client -- s1 -- router (MASQUERADE out of eth1, a FORWARD accept rule) -- server.
fn nat_world() -> World {
    let net = |a: [u8; 4]| Ipv4Net::new(Ipv4Addr::from(a), 24);
    let mut s = NetSpec::new();
    for h in ["client", "router", "server"] {
        s.add_host(h).unwrap();
    }
    s.add_bridge("s1").unwrap();
    s.add_interface(
        "client",
        "client-eth0",
        MacAddr::from_index(1),
        net([10, 1, 0, 2]),
    )
    .unwrap();
    s.add_interface(
        "router",
        "router-eth0",
        MacAddr::from_index(2),
        net([10, 1, 0, 1]),
    )
    .unwrap();
    s.add_interface(
        "router",
        "router-eth1",
        MacAddr::from_index(3),
        net([10, 2, 0, 1]),
    )
    .unwrap();
    s.add_interface(
        "server",
        "server-eth0",
        MacAddr::from_index(4),
        net([10, 2, 0, 2]),
    )
    .unwrap();
    s.add_default_route("client", Ipv4Addr::new(10, 1, 0, 1))
        .unwrap();
    s.add_default_route("server", Ipv4Addr::new(10, 2, 0, 1))
        .unwrap();
    s.set_sysctl("router", Sysctl::IpForward(true)).unwrap();
    s.add_iptables(
        "router",
        "-t nat -A POSTROUTING -o router-eth1 -j MASQUERADE",
    )
    .unwrap();
    s.add_iptables("router", "-A FORWARD -p udp --dport 9000 -j ACCEPT")
        .unwrap();
    s.add_link(
        Endpoint::host("client", "client-eth0"),
        Endpoint::bridge("s1", "p1"),
    )
    .unwrap();
    s.add_link(
        Endpoint::host("router", "router-eth0"),
        Endpoint::bridge("s1", "p2"),
    )
    .unwrap();
    s.add_link(
        Endpoint::host("router", "router-eth1"),
        Endpoint::host("server", "server-eth0"),
    )
    .unwrap();
    World::new(&s, SimConfig::with_seed(1)).unwrap()
}

fn nat_router(c: &mut Criterion) {
    let mut world = nat_world();
    let to = SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 2), 9000);
    let rx = world.udp_bind("server", to).unwrap();
    let tx = world
        .udp_bind("client", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4000))
        .unwrap();
    world.udp_send_to(tx, to, b"warm").unwrap();
    world.run_for(std::time::Duration::from_secs(1));
    assert!(world.udp_recv(rx).unwrap().is_some(), "the path works");
    let payload = [0u8; 18];
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("udp_through_bridge_and_nat_router_10k", |b| {
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

criterion_group!(benches, bridge, nat_router);
criterion_main!(benches);
