//! End-to-end tests of `lb server --forward dsr-kernel` in a lab: forwarding by mark, the
//! routing rules, tables and sysctls it sets and restores, a crash and a restart, two balancers
//! in one namespace. Privileged: skipped without root unless LAB_REQUIRE_PRIVILEGED=1.

// An ordinary user's run enters a user namespace of its own before main, so the privileged
// tests run rootless instead of skipping.
lab::rootless_test_binary!();

#[allow(dead_code)]
mod dataplane;
mod harness;

use dataplane::{Echo, PORT, VIP, crash, fixture, queues, sh, stop, tcp_ask, udp_ask, udp_ask_to};
use harness::{privileged, start_lb as start, up};
use lab::Lab;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

/// h1's queue 0: (packets waiting for a verdict, ids given so far).
fn queue_line(lab: &Lab) -> (u32, u32) {
    queues(lab, "h1")
        .iter()
        .find(|q| q.queue_num == 0)
        .map_or((0, 0), |q| (q.queue_total, q.id_sequence))
}

fn queue_ids(lab: &Lab) -> u32 {
    queue_line(lab).1
}

fn queue_waiting(lab: &Lab) -> u32 {
    queue_line(lab).0
}

/// What `dsr-kernel` changes in h1, to compare before and after: IPv4 rules, routes of every
/// table, the tagged iptables rules, the two sysctls.
fn routing_state(lab: &Lab) -> String {
    sh(
        lab,
        "h1",
        "ip rule; ip route show table all | grep -v -e '^local' -e '^broadcast'; \
         iptables -t mangle -S PREROUTING; iptables -S FORWARD; \
         sysctl net.ipv4.conf.h1-eth0.forwarding net.ipv4.conf.all.send_redirects",
    )
}

#[test]
fn dsr_kernel_forwards_by_mark_survives_a_crash_and_restores_routing() {
    if !privileged("dsr_kernel_forwards_by_mark_survives_a_crash_and_restores_routing") {
        return;
    }
    let mut lab = up(&fixture("dsr4.toml"));
    let _e2 = Echo::start(&lab, "h2");
    let _e3 = Echo::start(&lab, "h3");
    let before = routing_state(&lab);
    let args = [
        "server",
        "--vip",
        "10.0.0.50",
        "--forward",
        "dsr-kernel",
        "--backend",
        "h2=10.0.0.2",
        "--backend",
        "h3=10.0.0.3",
    ];
    let first = start(&mut lab, "h1", "first", &args);
    // One rule per backend, ahead of the local table (which holds the VIP).
    let rules: Vec<String> = sh(&lab, "h1", "ip rule")
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        rules[0].contains("to 10.0.0.50 fwmark 0xa000002 lookup 167772162"),
        "{rules:?}"
    );
    assert!(
        rules[1].contains("to 10.0.0.50 fwmark 0xa000003 lookup 167772163"),
        "{rules:?}"
    );
    assert!(rules[2].contains("lookup local"), "{rules:?}");
    let mut by_backend = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..40 {
        let answer = tcp_ask(&lab, "h4", "hello").unwrap_or_else(|e| panic!("connection {i}: {e}"));
        *by_backend
            .entry(answer.split(':').next().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(
        by_backend.len() == 2,
        "both backends answer: {by_backend:?}"
    );
    let udp = udp_ask(&lab, "h4", "udp datagram").unwrap();
    assert!(udp.ends_with(": udp datagram"), "{udp}");
    // Only the first 128 bytes reach lb (the copy range); the kernel forwards the rest.
    let big = "x".repeat(1400);
    let udp = udp_ask(&lab, "h4", &big).unwrap();
    assert!(
        udp.ends_with(&big),
        "a 1400-byte datagram came back cut: {}",
        udp.len()
    );
    let long_line = "y".repeat(5000);
    let answer = tcp_ask(&lab, "h4", &long_line).unwrap();
    assert!(answer.ends_with(&long_line), "{} bytes", answer.len());
    let stats = queues(&lab, "h1");
    assert_eq!(
        stats.iter().map(|q| q.copy_range).collect::<Vec<_>>(),
        [128],
        "copy range: {stats:?}"
    );
    assert!(
        sh(&lab, "h1", "iptables -t raw -S PREROUTING").contains("-j CT --notrack"),
        "no NOTRACK rule"
    );
    // h1 forwarded out of the interface the packets came in on, and told no client to go
    // around it.
    let redirects = sh(
        &lab,
        "h1",
        // -s: no history file (/tmp/.nstat.u0, which may be the machine root's).
        "nstat -asz IcmpOutRedirects | awk '/IcmpOutRedirects/ {print $2}'",
    );
    assert_eq!(redirects.trim(), "0");

    // A crash leaves everything in place; the restart replaces it and works.
    crash(&mut lab, &first);
    assert!(sh(&lab, "h1", "ip rule").contains("fwmark 0xa000002"));
    // As if a run had died between the two steps of moving the local rule: two of them.
    sh(&lab, "h1", "ip rule add pref 0 lookup local proto kernel");
    assert_eq!(
        sh(&lab, "h1", "ip rule | grep -c 'lookup local'").trim(),
        "2"
    );
    let second = start(&mut lab, "h1", "second", &args);
    assert_eq!(
        sh(&lab, "h1", "ip rule | grep -c 'lookup local'").trim(),
        "1"
    );
    assert_eq!(
        sh(&lab, "h1", "ip rule | grep -c fwmark").trim(),
        "2",
        "stale rules replaced, not duplicated"
    );
    let answer = tcp_ask(&lab, "h4", "after the restart").unwrap();
    assert!(answer.ends_with(": after the restart"), "{answer}");
    // A datagram in three fragments. Nothing in h1 loads conntrack, so nothing reassembles
    // before PREROUTING: the first fragment is queued, counted and dropped (docs/lb.md).
    let sock = lab
        .run_in("h4", || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    let ids = queue_ids(&lab);
    sock.send_to("z".repeat(4000).as_bytes(), (VIP, PORT))
        .unwrap();
    // Wait (bounded) until the balancer gave it a verdict: queued, and nothing waiting.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !(queue_ids(&lab) > ids && queue_waiting(&lab) == 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = stop(&mut lab, &second);
    assert!(log.contains("reason=fragment"), "{log}");
    assert!(log.contains("removed stale dsr-kernel rules"), "{log}");
    assert!(log.contains("removed stale NFQUEUE rules"), "{log}");
    assert!(
        log.contains("removed the dsr-kernel rules and routes"),
        "{log}"
    );
    // Everything as before the first start, the sysctls too: the crashed run left their old
    // values in /run/lb, and the restart restored those.
    assert_eq!(routing_state(&lab), before);
}

#[test]
fn two_dsr_kernel_balancers_share_a_namespace() {
    if !privileged("two_dsr_kernel_balancers_share_a_namespace") {
        return;
    }
    let vip2 = Ipv4Addr::new(10, 0, 0, 51);
    let mut lab = up(&fixture("dsr4.toml"));
    sh(&lab, "h2", "ip addr add 10.0.0.51/32 dev lo");
    let _e1 = Echo::start(&lab, "h2");
    let _e2 = Echo::start_on(&lab, "h2", vip2);
    let before = routing_state(&lab);
    let server = |vip: &'static str, queue: &'static str, ctl: &'static str| {
        [
            "server",
            "--vip",
            vip,
            "--forward",
            "dsr-kernel",
            "--backend",
            "h2=10.0.0.2",
            "--queue",
            queue,
            "--ctl-socket",
            ctl,
        ]
    };
    let a = start(
        &mut lab,
        "h1",
        "a",
        &server("10.0.0.50", "0", "/run/lb/e2e-a.sock"),
    );
    let b = start(
        &mut lab,
        "h1",
        "b",
        &server("10.0.0.51", "1", "/run/lb/e2e-b.sock"),
    );
    assert_eq!(udp_ask(&lab, "h4", "to a").unwrap(), "h2: to a");
    assert_eq!(udp_ask_to(&lab, "h4", vip2, "to b").unwrap(), "h2: to b");
    // The first one stops: the second keeps its rules, its route and the forwarding sysctls.
    let log = stop(&mut lab, &a);
    assert!(log.contains("another balancer's rules remain"), "{log}");
    assert_eq!(
        udp_ask_to(&lab, "h4", vip2, "still b").unwrap(),
        "h2: still b"
    );
    assert_eq!(
        sh(&lab, "h1", "sysctl -n net.ipv4.conf.h1-eth0.forwarding").trim(),
        "1",
        "forwarding switched off under the second balancer"
    );
    stop(&mut lab, &b);
    assert_eq!(routing_state(&lab), before);
}

#[test]
fn dsr_kernel_stop_restores_the_sysctls() {
    if !privileged("dsr_kernel_stop_restores_the_sysctls") {
        return;
    }
    let mut lab = up(&fixture("dsr4.toml"));
    let before = routing_state(&lab);
    let server = start(
        &mut lab,
        "h1",
        "server",
        &[
            "server",
            "--vip",
            "10.0.0.50",
            "--forward",
            "dsr-kernel",
            "--backend",
            "h2=10.0.0.2",
        ],
    );
    let during = routing_state(&lab);
    assert!(
        during.contains("net.ipv4.conf.h1-eth0.forwarding = 1"),
        "{during}"
    );
    assert!(
        during.contains("net.ipv4.conf.all.send_redirects = 0"),
        "{during}"
    );
    assert!(
        during.contains("default via 10.0.0.2 dev h1-eth0 table 167772162 proto 108"),
        "{during}"
    );
    stop(&mut lab, &server);
    assert_eq!(routing_state(&lab), before);
}
