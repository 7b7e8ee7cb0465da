//! Privileged tests on the real kernel: a lab (`minimal`: h1 10.0.0.1, h2 10.0.0.2), an
//! iptables rule in h1 sending UDP to port 9999 into a queue, the queue bound from a thread
//! inside h1, a listener in h2.
//!
//! Absence is never waited for: after a drop, a marker datagram is queued and accepted; since
//! the veth path keeps order, the listener's next datagram being the marker proves the
//! dropped ones never arrived.

use crate::support::{privileged, tool};
use lab::check::check_connectivity;
use lab::topology::builtin;
use lab::{Lab, LabOptions, resolve};
use nfqueue::{Error, Queue, QueueConfig, QueueStats, RecvBatch, Verdict};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const PORT: u16 = 9999;
/// NF_INET_LOCAL_OUT.
const HOOK_OUTPUT: u8 = 3;
/// How long any one wait may take before the test fails (never asserted as a speed).
const PATIENCE: Duration = Duration::from_secs(5);

/// Root and iptables; a missing iptables skips locally but fails where privileged tests are
/// required (ci/setup.sh installs it).
fn privileged_with_iptables(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    if tool(test, "iptables").is_some() {
        return true;
    }
    assert_ne!(
        std::env::var("LAB_REQUIRE_PRIVILEGED").as_deref(),
        Ok("1"),
        "{test}: `iptables` is required (ci/setup.sh installs it)"
    );
    false
}

/// A lab where h1's UDP to h2:9999 goes to queue `num`, with h1 → h2 proven to work.
struct Setup {
    lab: Lab,
    /// h1's socket, connected to 10.0.0.2:9999.
    tx: UdpSocket,
    /// h2's listener on 10.0.0.2:9999.
    rx: UdpSocket,
}

fn setup(num: u16) -> Setup {
    let lab = Lab::up(
        resolve(&builtin("minimal").unwrap()).unwrap(),
        &LabOptions::default(),
    )
    .unwrap();
    // Permanent neighbours: the kernel's ARP table is shared by all namespaces and may be full
    // on a busy machine (see lab/tests/support).
    let ((_, m1), (_, m2)) = (link(&lab, "h1"), link(&lab, "h2"));
    run(
        &lab,
        "h1",
        &format!("ip neigh replace 10.0.0.2 lladdr {m2} dev h1-eth0 nud permanent"),
    );
    run(
        &lab,
        "h2",
        &format!("ip neigh replace 10.0.0.1 lladdr {m1} dev h2-eth0 nud permanent"),
    );
    let r = check_connectivity(&lab, PATIENCE).unwrap();
    assert_eq!(
        r.missing,
        [],
        "h1 and h2 must reach each other before the test"
    );
    run(
        &lab,
        "h1",
        &format!("iptables -A OUTPUT -p udp --dport {PORT} -j NFQUEUE --queue-num {num}"),
    );
    let rx = lab
        .run_in("h2", || UdpSocket::bind(("10.0.0.2", PORT)))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(PATIENCE)).unwrap();
    let tx = lab
        .run_in("h1", || {
            let s = UdpSocket::bind("10.0.0.1:0")?;
            s.connect(("10.0.0.2", PORT))?;
            Ok::<_, std::io::Error>(s)
        })
        .unwrap()
        .unwrap();
    Setup { lab, tx, rx }
}

/// `host`'s `<host>-eth0`: ifindex and MAC, from `ip -o link` (sysfs inside a child that
/// only entered the network namespace still shows the root namespace's devices).
fn link(lab: &Lab, host: &str) -> (u32, String) {
    let out = lab
        .command(host, "ip")
        .unwrap()
        .args(["-o", "link", "show", &format!("{host}-eth0")])
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let ifindex = line.split(':').next().unwrap().trim().parse().unwrap();
    let mac = line
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("{host}: no MAC in {line:?}"))
        .to_string();
    (ifindex, mac)
}

/// Runs a command line (split on spaces) in `host` and fails the test with its stderr.
fn run(lab: &Lab, host: &str, cmdline: &str) {
    let mut parts = cmdline.split_whitespace();
    let out = lab
        .command(host, parts.next().unwrap())
        .unwrap()
        .args(parts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{host}: {cmdline}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bind_in(lab: &Lab, host: &str, num: u16, cfg: &QueueConfig) -> Result<Queue, Error> {
    lab.run_in(host, || Queue::bind(num, cfg)).unwrap()
}

/// UDP payload of an IPv4 packet.
fn udp_payload(ip: &[u8]) -> &[u8] {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    &ip[ihl + 8..]
}

/// One received packet, copied out of the batch.
#[derive(Debug)]
struct Got {
    id: u32,
    hook: u8,
    hw_protocol: u16,
    outdev: Option<u32>,
    data: Vec<u8>,
}

/// Receives until `n` packets have arrived (failing after [`PATIENCE`]), in batches.
fn collect(q: &mut Queue, batch: &mut RecvBatch, n: usize) -> Vec<Got> {
    q.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut got = vec![];
    while got.len() < n {
        if q.recv(batch).unwrap() == 0 {
            assert!(
                Instant::now() < deadline,
                "queue {}: {} of {n} packets arrived",
                q.num(),
                got.len()
            );
            let mut pfd = libc::pollfd {
                fd: q.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 100) };
            continue;
        }
        got.extend(batch.packets().map(|p| Got {
            id: p.id,
            hook: p.hook,
            hw_protocol: p.hw_protocol,
            outdev: p.outdev,
            data: udp_payload(p.payload).to_vec(),
        }));
    }
    got
}

/// The next `n` datagrams at the listener.
fn listen(rx: &UdpSocket, n: usize) -> Vec<String> {
    let mut buf = [0u8; 2048];
    (0..n)
        .map(|i| {
            let len = rx
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("listener: datagram {} of {n}: {e}", i + 1));
            String::from_utf8_lossy(&buf[..len]).into_owned()
        })
        .collect()
}

fn send(tx: &UdpSocket, msgs: impl IntoIterator<Item = String>) -> Vec<String> {
    msgs.into_iter()
        .inspect(|m| {
            tx.send(m.as_bytes()).unwrap();
        })
        .collect()
}

/// Queues a marker, accepts it alone and checks it is the listener's next datagram.
fn marker_is_next(s: &Setup, q: &mut Queue, batch: &mut RecvBatch, text: &str) {
    send(&s.tx, [text.to_string()]);
    let got = collect(q, batch, 1);
    q.verdict(got[0].id, Verdict::Accept).unwrap();
    assert_eq!(
        listen(&s.rx, 1),
        [text],
        "something arrived before the marker"
    );
}

#[test]
fn batch_accept_delivers_all_and_batch_drop_delivers_none() {
    if !privileged_with_iptables("batch_accept_delivers_all_and_batch_drop_delivers_none") {
        return;
    }
    let s = setup(3);
    let mut q = bind_in(&s.lab, "h1", 3, &QueueConfig::default()).unwrap();
    let (ifindex, _) = link(&s.lab, "h1");
    let mut batch = RecvBatch::new(16);

    // 50 datagrams: every one is queued, in order, with its payload, none delivered yet.
    let sent = send(&s.tx, (0..50).map(|i| format!("accept {i}")));
    let got = collect(&mut q, &mut batch, 50);
    assert_eq!(
        got.iter()
            .map(|g| String::from_utf8_lossy(&g.data).into_owned())
            .collect::<Vec<_>>(),
        sent
    );
    for g in &got {
        assert_eq!(
            (g.hook, g.hw_protocol, g.outdev),
            (HOOK_OUTPUT, 0x0800, Some(ifindex))
        );
    }
    let ids: Vec<u32> = got.iter().map(|g| g.id).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "ids {ids:?}");
    let stats = s.lab.run_in("h1", || QueueStats::read(3)).unwrap().unwrap();
    let stats = stats.expect("queue 3 listed in h1");
    assert_eq!(
        (
            stats.portid,
            stats.queue_total,
            stats.copy_mode,
            stats.queue_dropped,
            stats.user_dropped
        ),
        (q.portid(), 50, 2, 0, 0)
    );

    // One batch verdict accepts all 50.
    q.verdict_batch(*ids.last().unwrap(), Verdict::Accept)
        .unwrap();
    assert_eq!(listen(&s.rx, 50), sent);

    // 20 more, one batch verdict drops them all: the marker is the next thing h2 sees.
    send(&s.tx, (0..20).map(|i| format!("drop {i}")));
    let got = collect(&mut q, &mut batch, 20);
    q.verdict_batch(got.last().unwrap().id, Verdict::Drop)
        .unwrap();
    marker_is_next(&s, &mut q, &mut batch, "marker");

    let stats = s
        .lab
        .run_in("h1", || QueueStats::read(3))
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            stats.portid,
            stats.queue_total,
            stats.queue_dropped,
            stats.user_dropped,
            stats.id_sequence
        ),
        (q.portid(), 0, 0, 0, 71)
    );
    let c = q.counters();
    assert_eq!(
        (c.packets, c.malformed, c.truncated, c.kernel_errors),
        (71, 0, 0, 0)
    );
}
