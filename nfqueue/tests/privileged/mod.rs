//! Privileged tests on the real kernel: a lab (`minimal`: h1 10.0.0.1, h2 10.0.0.2), an
//! iptables rule in h1 sending UDP to port 9999 into a queue, the queue bound from a thread
//! inside h1, a listener in h2.
//!
//! Absence is never waited for: after a drop, a marker datagram is queued and accepted; since
//! the veth path keeps order, the listener's next datagram being the marker proves the
//! dropped ones never arrived.

use lab::check::check_connectivity;
use lab::testing::{privileged, privileged_with};
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
    // on a busy machine (see lab::testing::VethPair).
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
    if !privileged_with(
        "batch_accept_delivers_all_and_batch_drop_delivers_none",
        "iptables",
    ) {
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
            stats.copy_range,
            stats.queue_dropped,
            stats.user_dropped
        ),
        // copy_range 0xffff is capped by the kernel at 65531 (0xffff - NLA_HDRLEN).
        (q.portid(), 50, 2, 65531, 0, 0)
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

#[test]
fn second_bind_is_queue_busy_naming_the_owner() {
    if !privileged("second_bind_is_queue_busy_naming_the_owner") {
        return;
    }
    let lab = Lab::up(
        resolve(&builtin("minimal").unwrap()).unwrap(),
        &LabOptions::default(),
    )
    .unwrap();
    let first = bind_in(&lab, "h1", 5, &QueueConfig::default()).unwrap();
    let e = bind_in(&lab, "h1", 5, &QueueConfig::default()).unwrap_err();
    // Another socket's queue: the kernel answers EPERM (EBUSY is for the same socket twice).
    assert!(
        matches!(e, Error::QueueBusy { queue: 5, errno: libc::EPERM, owner: Some(p) } if p == first.portid()),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "bind queue 5: Operation not permitted (queue is bound by another socket, portid {})",
            first.portid()
        )
    );
    // Queue numbers are per network namespace: h2 binds 5 too.
    let other_ns = bind_in(&lab, "h2", 5, &QueueConfig::default()).unwrap();
    // The stats file is per namespace and per thread: /proc/thread-self/net is the thread's
    // namespace, /proc/self/net the main thread's (here: not h1).
    let (h1, via_self) = lab
        .run_in("h1", || {
            (
                QueueStats::read_all().unwrap(),
                QueueStats::read_all_from(std::path::Path::new(
                    "/proc/self/net/netfilter/nfnetlink_queue",
                )),
            )
        })
        .unwrap();
    assert_eq!(
        h1.iter()
            .map(|s| (s.queue_num, s.portid))
            .collect::<Vec<_>>(),
        [(5, first.portid())]
    );
    let via_self = via_self.unwrap();
    assert!(
        !via_self
            .iter()
            .any(|s| s.queue_num == 5 && s.portid == first.portid()),
        "/proc/self/net showed h1's queue: {via_self:?}"
    );
    // Closing the socket unbinds: the queue can be bound again. The kernel unbinds when the
    // last reference to the socket goes, and a child forked by another test thread holds one
    // until it execs (CLOEXEC), so allow for a short delay.
    let old = first.portid();
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    let again = loop {
        match bind_in(&lab, "h1", 5, &QueueConfig::default()) {
            Err(Error::QueueBusy { owner: Some(p), .. })
                if p == old && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            r => break r.unwrap(),
        }
    };
    assert_eq!(again.num(), 5);
    drop(other_ns);
}

#[test]
fn verdict_on_unknown_id_is_counted_not_fatal() {
    if !privileged_with("verdict_on_unknown_id_is_counted_not_fatal", "iptables") {
        return;
    }
    let s = setup(6);
    let mut q = bind_in(&s.lab, "h1", 6, &QueueConfig::default()).unwrap();
    let mut batch = RecvBatch::new(4);
    // Nothing pending: the kernel rejects both with ENOENT, reported among the packets.
    q.verdict(12345, Verdict::Accept).unwrap();
    q.verdict_batch(12345, Verdict::Accept).unwrap();
    send(&s.tx, ["one".to_string()]);
    let got = collect(&mut q, &mut batch, 1);
    // With a mark: the packet goes through with the single verdict.
    q.verdict_with_mark(got[0].id, Verdict::Accept, 7).unwrap();
    assert_eq!(listen(&s.rx, 1), ["one"]);
    let c = q.counters();
    assert_eq!(
        (c.packets, c.kernel_errors, c.last_kernel_error),
        (1, 2, Some(libc::ENOENT))
    );
}

/// Sends 10 datagrams to a queue of length 4 that nobody answers yet.
fn overflow(fail_open: bool, num: u16) -> (Setup, Queue, RecvBatch) {
    let s = setup(num);
    let cfg = QueueConfig {
        queue_len: 4,
        fail_open,
        ..QueueConfig::default()
    };
    let q = bind_in(&s.lab, "h1", num, &cfg).unwrap();
    send(&s.tx, (0..10).map(|i| format!("p{i}")));
    (s, q, RecvBatch::new(16))
}

#[test]
fn fail_open_accepts_what_does_not_fit() {
    if !privileged_with("fail_open_accepts_what_does_not_fit", "iptables") {
        return;
    }
    let (s, mut q, mut batch) = overflow(true, 7);
    // The 6 beyond the queue length pass at once; the first 4 wait for a verdict.
    assert_eq!(listen(&s.rx, 6), ["p4", "p5", "p6", "p7", "p8", "p9"]);
    let got = collect(&mut q, &mut batch, 4);
    assert_eq!(
        got.iter().map(|g| g.data.as_slice()).collect::<Vec<_>>(),
        [b"p0", b"p1", b"p2", b"p3"]
    );
    let st = s
        .lab
        .run_in("h1", || QueueStats::read(7))
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (st.queue_total, st.queue_dropped, st.id_sequence),
        (4, 0, 4)
    );
    q.verdict_batch(got[3].id, Verdict::Drop).unwrap();
    marker_is_next(&s, &mut q, &mut batch, "marker");
}

#[test]
fn fail_closed_drops_what_does_not_fit_and_counts_it() {
    if !privileged_with(
        "fail_closed_drops_what_does_not_fit_and_counts_it",
        "iptables",
    ) {
        return;
    }
    let (s, mut q, mut batch) = overflow(false, 8);
    let st = s
        .lab
        .run_in("h1", || QueueStats::read(8))
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (st.queue_total, st.queue_dropped, st.user_dropped),
        (4, 6, 0)
    );
    let got = collect(&mut q, &mut batch, 4);
    q.verdict_batch(got[3].id, Verdict::Accept).unwrap();
    assert_eq!(listen(&s.rx, 4), ["p0", "p1", "p2", "p3"]);
    marker_is_next(&s, &mut q, &mut batch, "marker");
}
