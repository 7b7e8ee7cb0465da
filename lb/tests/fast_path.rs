//! End-to-end tests of `lb server --fast-path` in a lab (dsr4: h1 the balancer, h2 and h3
//! backends, h4 the client): a flow's first packet crosses the queue, the kernel forwards the
//! rest from its flow map; FIN ends a flow's life in the kernel; drains keep flows, a backend
//! going down takes its flows back to user space; a crash leaves the kernel forwarding and a
//! restart starts a clean map; a stop removes the table. Privileged: skipped without root
//! unless LAB_REQUIRE_PRIVILEGED=1.

// An ordinary user's run enters a user namespace of its own before main, so the privileged
// tests run rootless instead of skipping.
lab::rootless_test_binary!();

#[allow(dead_code)]
mod dataplane;
mod harness;

use dataplane::{Client, Echo, PORT, VIP, crash, fixture, queues, sh, stop};
use harness::{LB, privileged, start_lb as start, up};
use lab::Lab;
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const ARGS: [&str; 10] = [
    "server",
    "--vip",
    "10.0.0.50",
    "--forward",
    "dsr-kernel",
    "--fast-path",
    "--backend",
    "h2=10.0.0.2",
    "--backend",
    "h3=10.0.0.3",
];

/// Packets queue 0 of h1 has taken since it was bound.
fn queued(lab: &Lab) -> u32 {
    queues(lab, "h1")
        .iter()
        .find(|q| q.queue_num == 0)
        .map_or(0, |q| q.id_sequence)
}

/// The kernel's flow map: backend address → elements.
fn elements(lab: &Lab) -> BTreeMap<String, usize> {
    let text = sh(lab, "h1", "nft list map netdev lb_10_0_0_50 flows");
    let mut by = BTreeMap::new();
    if let Some((_, rest)) = text.split_once("elements = {") {
        let body = rest.split('}').next().unwrap_or("");
        for e in body.split(',') {
            if let Some((_, addr)) = e.rsplit_once(" : ") {
                *by.entry(addr.trim().to_string()).or_default() += 1;
            }
        }
    }
    by
}

fn count(by: &BTreeMap<String, usize>) -> usize {
    by.values().sum()
}

/// `lb ctl --json state` in h1.
fn state(lab: &Lab) -> serde_json::Value {
    let out = sh(lab, "h1", &format!("{LB} ctl --json state"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("lb ctl state: {e}: {out}"))
}

fn ctl(lab: &Lab, args: &str) -> String {
    sh(lab, "h1", &format!("{LB} ctl {args}"))
}

/// Waits (bounded: 5 s) until `ok`.
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn addr_of(backend: &str) -> &'static str {
    match backend {
        "h2" => "10.0.0.2",
        "h3" => "10.0.0.3",
        other => panic!("unexpected backend {other}"),
    }
}

#[test]
fn the_kernel_forwards_a_flow_after_its_first_packet_and_lb_keeps_its_life() {
    if !privileged("the_kernel_forwards_a_flow_after_its_first_packet_and_lb_keeps_its_life") {
        return;
    }
    let mut lab = up(&fixture("dsr4.toml"));
    let _e2 = Echo::start(&lab, "h2");
    let _e3 = Echo::start(&lab, "h3");
    let first = start(&mut lab, "h1", "first", &ARGS);
    let log = std::fs::read_to_string(&first.log).unwrap();
    assert!(
        log.contains("forward dsr-kernel with the fast path"),
        "{log}"
    );

    // 20 connections: each one's SYN crosses the queue (lb updates the map before the SYN's
    // verdict, so the handshake's ACK finds it), then nothing more.
    let before = queued(&lab);
    let mut conns: Vec<(Client, String)> = (0..20)
        .map(|i| {
            let mut c = Client::connect(&lab, "h4").unwrap_or_else(|e| panic!("connect {i}: {e}"));
            let who = c.ask("first").unwrap();
            (c, who)
        })
        .collect();
    let opened = queued(&lab) - before;
    assert_eq!(opened, 20, "packets queued for 20 connections");
    for round in 0..10 {
        for (i, (c, who)) in conns.iter_mut().enumerate() {
            assert_eq!(
                &c.ask(&format!("line {round}")).unwrap(),
                who,
                "connection {i}"
            );
        }
    }
    assert_eq!(
        queued(&lab) - before,
        opened,
        "200 more requests on open connections crossed the queue"
    );
    let mut by_backend = BTreeMap::new();
    for (_, who) in &conns {
        *by_backend.entry(addr_of(who).to_string()).or_insert(0) += 1;
    }
    assert_eq!(by_backend.len(), 2, "both backends: {by_backend:?}");
    assert_eq!(elements(&lab), by_backend);
    // lb reads the kernel's counts every second: its flows and counters include them.
    wait_for("the fast path counters", || {
        state(&lab)["fast_path"]["kernel_packets"].as_u64() >= Some(200)
    });
    let s = state(&lab);
    assert_eq!(s["fast_path"]["flows"], 20, "{s}");
    assert_eq!(s["tracked_flows"], 20, "{s}");

    // One UDP flow of 50 datagrams: the first is decided, the kernel forwards the rest.
    let before = queued(&lab);
    let sock = lab
        .run_in("h4", || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    sock.connect((VIP, PORT)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..50 {
        let msg = format!("datagram {i}");
        sock.send(msg.as_bytes()).unwrap();
        let n = sock.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with(&msg));
    }
    assert!(queued(&lab) - before <= 2, "{}", queued(&lab) - before);

    // A crash leaves the map: the kernel goes on forwarding established flows.
    crash(&mut lab, &first);
    for (i, (c, who)) in conns.iter_mut().enumerate() {
        assert_eq!(&c.ask("lb is dead").unwrap(), who, "connection {i}");
    }
    // The restart starts with an empty map; each flow's next packet is decided again, by the
    // same Maglev table, so it stays where it was.
    let second = start(&mut lab, "h1", "second", &ARGS);
    assert_eq!(count(&elements(&lab)), 0);
    for (i, (c, who)) in conns.iter_mut().enumerate() {
        assert_eq!(&c.ask("after the restart").unwrap(), who, "connection {i}");
    }
    assert_eq!(count(&elements(&lab)), 20);

    // A drain keeps the drained backend's flows in the kernel; new flows avoid it.
    ctl(&lab, "drain h3 --deadline 60s");
    let mut fresh: Vec<(Client, String)> = (0..10)
        .map(|_| {
            let mut c = Client::connect(&lab, "h4").unwrap();
            let who = c.ask("new").unwrap();
            (c, who)
        })
        .collect();
    assert!(
        fresh.iter().all(|(_, w)| w == "h2"),
        "a new flow reached the draining h3"
    );
    for (i, (c, who)) in conns.iter_mut().enumerate() {
        assert_eq!(&c.ask("while h3 drains").unwrap(), who, "connection {i}");
    }
    let on_h3 = conns.iter().filter(|(_, w)| w == "h3").count();
    assert_eq!(elements(&lab).get("10.0.0.3").copied(), Some(on_h3));

    // The drain's deadline passes: h3 is down, and its flows leave the kernel for lb to
    // decide again.
    ctl(&lab, "undrain h3");
    ctl(&lab, "drain h3 --deadline 200ms");
    wait_for("h3's flows to leave the map", || {
        !elements(&lab).contains_key("10.0.0.3")
    });

    // Closing ends a flow's life in the kernel: the client's FIN goes to the queue, and lb
    // takes the flow out of the map.
    conns.clear();
    fresh.clear();
    wait_for("an empty map after every connection closed", || {
        count(&elements(&lab)) == 0
    });
    let log = stop(&mut lab, &second);
    assert!(log.contains("removed the fast path"), "{log}");
    assert!(
        !sh(&lab, "h1", "nft list tables").contains("lb_10_0_0_50"),
        "the table is left"
    );
}

/// L2 DSR (`--forward dsr`): lb sends a flow's first packet itself; the kernel forwards the
/// rest from the same map.
#[test]
fn l2_dsr_hands_its_flows_to_the_kernel_too() {
    if !privileged("l2_dsr_hands_its_flows_to_the_kernel_too") {
        return;
    }
    let mut lab = up(&fixture("dsr4.toml"));
    let _e2 = Echo::start(&lab, "h2");
    let _e3 = Echo::start(&lab, "h3");
    let mut args = ARGS;
    args[4] = "dsr";
    let server = start(&mut lab, "h1", "server", &args);
    let before = queued(&lab);
    let mut conns: Vec<(Client, String)> = (0..5)
        .map(|_| {
            let mut c = Client::connect(&lab, "h4").unwrap();
            let who = c.ask("first").unwrap();
            (c, who)
        })
        .collect();
    for (i, (c, who)) in conns.iter_mut().enumerate() {
        for round in 0..5 {
            assert_eq!(
                &c.ask(&format!("line {round}")).unwrap(),
                who,
                "connection {i}"
            );
        }
    }
    assert_eq!(queued(&lab) - before, 5, "one packet per connection");
    assert_eq!(count(&elements(&lab)), 5);
    stop(&mut lab, &server);
}

#[test]
fn the_fast_path_is_refused_where_the_kernel_cannot_forward() {
    if !privileged("the_fast_path_is_refused_where_the_kernel_cannot_forward") {
        return;
    }
    let lab = up("single,2");
    for (args, says) in [
        (
            "--backend h2=10.0.0.2 --fast-path",
            "server.fast_path: needs forward = \"dsr\" or \"dsr-kernel\"",
        ),
        (
            "--backend h2=10.0.0.2 --forward dsr-kernel --fast-path --conn-capacity 0",
            "server.fast_path: needs the connection table",
        ),
    ] {
        let out = lab
            .command("h1", LB)
            .unwrap()
            .args(["server", "--vip", "10.0.0.50"])
            .args(args.split(' '))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(!sh(&lab, "h1", "nft list tables").contains("netdev"));
}
