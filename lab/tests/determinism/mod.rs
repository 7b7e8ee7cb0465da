//! Determinism on real traffic, in fresh labs: the same traffic 20 times gives one trace and one
//! ladder; so does the seed's RST race, reproduced in the kernel; and a fresh lab is silent.
//!
//! Each proof prints, once its runs are done, the number of distinct results and each result
//! with the runs that gave it (`ci/determinism.sh` runs these tests with `--nocapture`).
//!
//! The traffic is paced by the packets themselves, never by sleeps: a step that depends on
//! what the kernel does next (send an ACK alone, or let the application's next segment carry
//! it) waits until a capture point has printed the line it expects. That is what a
//! reproducible scenario has to do: Linux delays an ACK by up to 200 ms hoping to piggyback
//! it, so whether `[.]` and `[F.]` are one segment or two depends on how fast the application
//! answers, i.e. on the machine's load.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use etherparse::{SlicedPacket, TransportSlice};
use lab::capture::{Capture, CaptureConfig, CapturePoint, Frame};
use lab::ladder::Ladder;
use lab::topology::builtin;
use lab::trace::{NameMap, Trace, TraceBuilder, TraceOptions};
use lab::{Lab, LabOptions, Plan, Topology, resolve};

use lab::testing::{privileged, privileged_with};

/// Held by each proof while it runs.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs per proof.
const RUNS: usize = 20;
/// How long a step waits for the packet it expects before the test fails naming it.
const PATIENCE: Duration = Duration::from_secs(10);

/// A capture point that also prints its frames live, normalized, so the test can wait for a
/// line. The lines are `TraceBuilder`'s: the same text the finished trace will show.
struct Watch<'a> {
    host: String,
    capture: Capture,
    frames: Receiver<Frame>,
    builder: TraceBuilder<'a>,
    lines: Vec<String>,
}

impl<'a> Watch<'a> {
    /// Starts capturing on `host` (every interface when `iface` is `None`); returns armed.
    fn start(
        lab: &Lab,
        host: &str,
        iface: Option<&str>,
        names: &'a NameMap,
        options: &'a TraceOptions,
    ) -> Self {
        let (tx, frames) = mpsc::channel();
        let config = CaptureConfig::new(host, iface).live(tx);
        let capture = lab
            .run_in(host, || Capture::start(config))
            .expect("enter namespace")
            .unwrap_or_else(|e| panic!("capture on {host}: {e}"));
        Self {
            host: host.to_string(),
            capture,
            frames,
            builder: TraceBuilder::new(names, options, iface.is_none()),
            lines: Vec::new(),
        }
    }

    /// Waits until this point has shown `line`; fails with what it did show after PATIENCE.
    fn wait_for(&mut self, line: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.lines.iter().any(|l| l == line) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.frames.recv_timeout(left) {
                Ok(frame) => self.lines.extend(self.builder.push(&frame)),
                Err(_) => panic!(
                    "{} never showed `{line}` within {PATIENCE:?}; it showed:\n{}",
                    self.host,
                    self.lines.join("\n")
                ),
            }
        }
    }

    /// Stops the capture: every frame queued so far is in the result.
    fn stop(self) -> CapturePoint {
        self.capture
            .stop()
            .unwrap_or_else(|e| panic!("stopping the capture on {}: {e}", self.host))
    }
}

/// Runs `run` RUNS times, each in a fresh lab; prints how many distinct results there were and
/// each one with the runs that produced it; fails when there is more than one.
fn same_every_run(what: &str, mut run: impl FnMut() -> String) -> String {
    // One proof at a time (this binary runs nothing else): each claims what the kernel does
    // on an otherwise quiet machine.
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in 1..=RUNS {
        seen.entry(run()).or_default().push(i);
    }
    println!("{what}: {RUNS} runs, {} distinct trace(s)", seen.len());
    for (text, runs) in &seen {
        println!("--- {} run(s): {runs:?} ---\n{text}", runs.len());
    }
    assert_eq!(
        seen.len(),
        1,
        "{what}: {RUNS} runs gave {} different traces (printed above)",
        seen.len()
    );
    seen.into_keys().next().expect("one result")
}

/// The trace and the ladder of `points`, as one text (what must not vary).
fn trace_and_ladder(points: &[CapturePoint], names: &NameMap, options: &TraceOptions) -> String {
    format!(
        "{}\n{}",
        Trace::build(points, names, options),
        Ladder::build(points, names, options)
    )
}

fn in_ns<T>(lab: &Lab, host: &str, f: impl FnOnce() -> std::io::Result<T>) -> T {
    lab.run_in(host, f)
        .expect("enter namespace")
        .unwrap_or_else(|e| panic!("socket in {host}: {e}"))
}

/// One run of the client/server traffic in a fresh `single,3`: h3 and h2 exchange a UDP
/// datagram each way, then h3 opens a TCP connection to h2, sends 5 bytes, gets 2 back and
/// closes first; h2 closes after. Captured at h2 (every interface) and h3 (h3-eth0).
fn client_server_run(
    plan: &Plan,
    names: &NameMap,
    options: &TraceOptions,
) -> (Vec<CapturePoint>, String) {
    let lab = lab_up(plan);
    let softnet = softnet_drops();
    // Binding and listening send nothing: done before the captures.
    let udp_server = in_ns(&lab, "h2", || UdpSocket::bind("10.0.0.2:9000"));
    let listener = in_ns(&lab, "h2", || TcpListener::bind("10.0.0.2:8080"));
    let udp_client = in_ns(&lab, "h3", || UdpSocket::bind("10.0.0.3:0"));
    for s in [&udp_server, &udp_client] {
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    }
    let mut h2 = Watch::start(&lab, "h2", None, names, options);
    let mut h3 = Watch::start(&lab, "h3", Some("h3-eth0"), names, options);
    // Not part of the proof: the switch's own view, which says where a frame that one end sent
    // and the other never saw was lost.
    let s1 = Watch::start(&lab, "s1", Some("s1-eth3"), names, options);

    let mut buf = [0u8; 16];
    udp_client.send_to(b"ping", "10.0.0.2:9000").expect("send");
    let (n, from) = udp_server.recv_from(&mut buf).expect("ping did not arrive");
    assert_eq!(&buf[..n], b"ping");
    udp_server.send_to(b"pong", from).expect("reply");
    let (n, _) = udp_client.recv_from(&mut buf).expect("pong did not arrive");
    assert_eq!(&buf[..n], b"pong");

    let server_addr: SocketAddr = "10.0.0.2:8080".parse().expect("addr");
    let mut client = in_ns(&lab, "h3", || TcpStream::connect(server_addr));
    let (mut server, _) = listener.accept().expect("accept");
    for s in [&client, &server] {
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    }
    client.write_all(b"hello").expect("write");
    server.read_exact(&mut buf[..5]).expect("read hello");
    // h2 answers only once its kernel has acknowledged "hello" on its own.
    h2.wait_for("h2.8080 > h3.p2: Flags [.], ack 6, length 0");
    server.write_all(b"hi").expect("write");
    client.read_exact(&mut buf[..2]).expect("read hi");
    h3.wait_for("h3.p2 > h2.8080: Flags [.], ack 3, length 0");
    client.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(server.read(&mut buf).expect("read EOF"), 0);
    // A FIN puts the receiver in delayed-ACK mode: h2 closes only after that ACK went out.
    h2.wait_for("h2.8080 > h3.p2: Flags [.], ack 7, length 0");
    drop(server);
    assert_eq!(client.read(&mut buf).expect("read EOF"), 0);
    // h3, in FIN_WAIT2, acknowledges h2's FIN at once: the last packet.
    let last = "h3.p2 > h2.8080: Flags [.], ack 4, length 0";
    h2.wait_for(last);
    h3.wait_for(last);
    let mut points = vec![h2.stop(), h3.stop()];
    let switch = s1.stop();
    let losses = losses(&lab, &points, &switch, names, options, softnet);
    // The exchange ends at `last`; whatever follows it is in a capture or not depending on
    // when that capture stops, so it is no part of the proof. Twice in CI runs of a loaded
    // machine h3 sent its last ACK again and h2 answered with a RST, seen by one capture and
    // not the other (never reproduced here, with or without load, or with a 300 ms wait).
    for p in &mut points {
        let mut b = TraceBuilder::new(names, options, p.interface.is_none());
        if let Some(end) = p
            .frames
            .iter()
            .position(|f| b.push(f).as_deref() == Some(last))
        {
            p.frames.truncate(end + 1);
        }
    }
    (points, losses)
}

/// A fresh lab of `plan` whose interfaces all run, as a scenario's: a frame sent before
/// linkwatch activates an interface is dropped (`tx dropped` on the bridge's ports, seen under
/// load when the proofs started at once).
fn lab_up(plan: &Plan) -> Lab {
    let lab = Lab::up(plan.clone(), &LabOptions::default()).expect("lab up");
    lab::backend::native::tasks::wait_links_up(&lab, PATIENCE).expect("links up");
    lab
}

/// Where frames were lost in a run, if anywhere (empty in a clean run). A run of 20 in some CI
/// runs lacked one packet in one capture; these counters, printed with the run, say whether the
/// capture socket, a device of the lab or the kernel's receive backlog dropped it.
fn losses(
    lab: &Lab,
    points: &[CapturePoint],
    switch: &CapturePoint,
    names: &NameMap,
    options: &TraceOptions,
    softnet_before: u64,
) -> String {
    let mut out = Vec::new();
    // What h3's port of the switch sent towards h3, against what h3 received.
    let lines = |p: &CapturePoint| {
        let mut b = TraceBuilder::new(names, options, p.interface.is_none());
        p.frames
            .iter()
            .filter_map(|f| b.push(f))
            .collect::<Vec<_>>()
    };
    if let Some(h3) = points.iter().find(|p| p.host == "h3") {
        let (sent, got) = (lines(switch), lines(h3));
        for l in sent.iter().filter(|l| !got.contains(l)) {
            out.push(format!("s1-eth3 sent `{l}`, which h3-eth0 never received"));
        }
        for l in got.iter().filter(|l| !sent.contains(l)) {
            out.push(format!("h3-eth0 received `{l}`, which s1-eth3 never sent"));
        }
    }
    for p in points {
        let s = &p.stats;
        if s.kernel_drops > 0 || s.unread > 0 {
            out.push(format!(
                "capture {}: kernel counted {}, captured {}, socket drops {}, unread {}",
                p.host, s.kernel_packets, s.captured, s.kernel_drops, s.unread
            ));
        }
    }
    for node in ["h2", "h3", "s1"] {
        let Ok(mut cmd) = lab.command(node, "ip") else {
            continue;
        };
        let Ok(o) = cmd.args(["-s", "-j", "link"]).output() else {
            continue;
        };
        let links: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        for l in links.as_array().into_iter().flatten() {
            let stats = &l["stats64"];
            let counters = [
                ("rx dropped", &stats["rx"]["dropped"]),
                ("rx errors", &stats["rx"]["errors"]),
                ("tx dropped", &stats["tx"]["dropped"]),
                ("tx errors", &stats["tx"]["errors"]),
            ];
            for (what, v) in counters {
                if v.as_u64().unwrap_or(0) > 0 {
                    out.push(format!("{node} {}: {what} {v}", l["ifname"]));
                }
            }
        }
    }
    let softnet = softnet_drops().saturating_sub(softnet_before);
    if softnet > 0 {
        out.push(format!(
            "/proc/net/softnet_stat: {softnet} dropped from a receive backlog"
        ));
    }
    if out.is_empty() {
        String::new()
    } else {
        format!("losses in lab {}: {}", lab.name(), out.join("; "))
    }
}

/// Frames dropped from the CPUs' receive backlogs (second column of /proc/net/softnet_stat).
fn softnet_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .sum()
}

#[test]
fn real_traffic_gives_one_trace_in_20_fresh_labs() {
    if !privileged("real_traffic_gives_one_trace_in_20_fresh_labs") {
        return;
    }
    let plan = resolve(&builtin("single,3").expect("built-in")).expect("resolve");
    let names = NameMap::of_plan(&plan);
    let options = TraceOptions::default();
    let mut last = Vec::new();
    same_every_run("single,3: UDP exchange, TCP handshake, data, FIN", || {
        let losses;
        (last, losses) = client_server_run(&plan, &names, &options);
        // Printed, not compared: a frame the bridge floods before a host's interface is up
        // is dropped (`tx dropped` on a switch port) without changing the trace.
        if !losses.is_empty() {
            println!("{losses}");
        }
        trace_and_ladder(&last, &names, &options)
    });
    lab::assert_trace!("real_traffic_trace", Trace::build(&last, &names, &options));
    lab::assert_trace!(
        "real_traffic_ladder",
        Ladder::build(&last, &names, &options)
    );
}

/// The seed's race without the balancer, in the kernel (fixtures/topologies/rst-race.toml):
/// h1 holds the VIP with nothing listening, and an iptables TEE rule sends a copy of every VIP
/// packet to h2, which holds the VIP on `lo` and listens on it. h1's kernel answers h3's SYN
/// with a RST, h2 answers the copy with a SYN-ACK, both to h3.
fn rst_race_plan() -> Plan {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/topologies/rst-race.toml");
    resolve(&Topology::from_file(&path).expect("fixture")).expect("resolve")
}

/// True when the kernel has the TEE target (loaded, or as a module to load); otherwise prints
/// why the test skips.
fn kernel_has_tee(test: &str) -> bool {
    let listed = std::fs::read_to_string("/proc/net/ip_tables_targets")
        .is_ok_and(|t| t.lines().any(|l| l == "TEE"));
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let module = ["ko", "ko.xz", "ko.zst", "ko.gz"].iter().any(|ext| {
        std::path::Path::new(&format!(
            "/lib/modules/{release}/kernel/net/netfilter/xt_TEE.{ext}"
        ))
        .exists()
    });
    if !(listed || module) {
        eprintln!(
            "SKIP {test}: the kernel has no iptables TEE target (CONFIG_NETFILTER_XT_TARGET_TEE)"
        );
    }
    listed || module
}

/// The TCP flags of the frames of `point`, with their timestamps.
fn tcp_flags(point: &CapturePoint) -> Vec<(Duration, bool, bool, bool)> {
    point
        .frames
        .iter()
        .filter_map(
            |f| match SlicedPacket::from_ethernet(&f.data).ok()?.transport? {
                TransportSlice::Tcp(t) => Some((f.timestamp, t.syn(), t.ack(), t.rst())),
                _ => None,
            },
        )
        .collect()
}

/// Holds h3's SYN in a token bucket for 8 ms, so that it leaves h3 from the qdisc's timer
/// instead of from inside `connect()`.
///
/// Sent from inside `connect()`, the SYN sets off the whole exchange in the softirq that its
/// transmit runs, while `connect()` still holds the socket's lock: h1's RST and h2's SYN-ACK
/// then wait in the socket's backlog, the RST closes the socket when `connect()` lets go, and
/// the SYN-ACK is dropped without a word. Unless the machine is busy enough for the kernel to
/// finish that softirq later, in ksoftirqd: then the SYN-ACK arrives after `connect()` has
/// returned and h3 resets it (2 runs of 60 with the tests running in parallel). Released by
/// the timer, with `connect()` asleep and the socket unlocked, the RST closes the socket at
/// once and the SYN-ACK always finds none, as in the seed, where it comes through user space.
///
/// The bucket holds 100 bytes at 2 kB/s: h3's ARP request for the VIP (42 bytes, the first
/// frame of a fresh lab) passes, the SYN (74) waits for 16 more bytes, 8 ms.
fn hold_h3_syn(lab: &Lab) {
    let out = lab
        .command("h3", "tc")
        .expect("h3")
        .args(["qdisc", "add", "dev", "h3-eth0", "root", "tbf"])
        .args(["rate", "16kbit", "burst", "100", "latency", "1s"])
        .output()
        .expect("run tc");
    assert!(
        out.status.success(),
        "tc qdisc add dev h3-eth0 root tbf: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One run of the race in a fresh lab: h3 connects to the VIP and is refused; captured at h2
/// (every interface) and h3 (h3-eth0). With `hold`, h3's SYN is held (`hold_h3_syn`), h3
/// resets the SYN-ACK that follows and h1 copies that RST to h2: the captures end there, as
/// nothing follows (h2's half-open connection is reset). Without, they end at the SYN-ACK.
/// Checks the outcome (refused, RST before SYN-ACK at h3) and returns how long after the RST
/// h3 received the SYN-ACK.
fn rst_race_run(
    plan: &Plan,
    names: &NameMap,
    options: &TraceOptions,
    hold: bool,
) -> (Vec<CapturePoint>, Duration) {
    let lab = lab_up(plan);
    if hold {
        hold_h3_syn(&lab);
    }
    let _listener = in_ns(&lab, "h2", || TcpListener::bind("10.0.0.50:8080"));
    let mut h2 = Watch::start(&lab, "h2", None, names, options);
    let mut h3 = Watch::start(&lab, "h3", Some("h3-eth0"), names, options);
    let vip: SocketAddr = "10.0.0.50:8080".parse().expect("addr");
    let refused = lab
        .run_in("h3", || TcpStream::connect_timeout(&vip, PATIENCE))
        .expect("enter namespace");
    assert_eq!(
        refused.as_ref().map_err(std::io::Error::kind).err(),
        Some(ErrorKind::ConnectionRefused),
        "h3's connect to the VIP: {refused:?}"
    );
    let last = if hold {
        "h3.p1 > vip.8080: Flags [R], seq 1, length 0"
    } else {
        "vip.8080 > h3.p1: Flags [S.], seq 0, ack 1, length 0"
    };
    h3.wait_for(last);
    h2.wait_for(last);
    let points = vec![h2.stop(), h3.stop()];
    let at_h3 = tcp_flags(&points[1]);
    let rst = at_h3.iter().find(|f| f.3).map(|f| f.0);
    let syn_ack = at_h3.iter().find(|f| f.1 && f.2).map(|f| f.0);
    let (Some(rst), Some(syn_ack)) = (rst, syn_ack) else {
        panic!("h3 did not see both a RST and a SYN-ACK: {at_h3:?}");
    };
    assert!(
        rst < syn_ack,
        "the SYN-ACK reached h3 before the RST: the race went the other way"
    );
    (points, syn_ack - rst)
}

/// Skips (saying why) unless root, the tools and the kernel's TEE target are there.
fn rst_race_can_run(test: &str) -> bool {
    // The lab loads h1's TEE rule with iptables-restore; tc holds h3's SYN.
    privileged_with(test, "iptables-restore") && privileged_with(test, "tc") && kernel_has_tee(test)
}

/// Prints min / median / max of how long the SYN-ACK trailed the RST at h3.
fn print_gaps(what: &str, mut gaps: Vec<Duration>) {
    gaps.sort();
    println!(
        "{what}: the RST reached h3 first in all {} runs, the SYN-ACK {:?} (min) / {:?} (median) / {:?} (max) later",
        gaps.len(),
        gaps[0],
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1]
    );
}

#[test]
fn rst_race_in_the_kernel_rst_wins_in_20_fresh_labs() {
    // The race as the kernel runs it, nothing held: which path is faster, and by how much.
    // What h3 does with the SYN-ACK afterwards varies (see `hold_h3_syn`): not compared here.
    let test = "rst_race_in_the_kernel_rst_wins_in_20_fresh_labs";
    if !rst_race_can_run(test) {
        return;
    }
    let plan = rst_race_plan();
    let names = NameMap::of_plan(&plan);
    let options = TraceOptions::default();
    let gaps = (0..RUNS)
        .map(|_| rst_race_run(&plan, &names, &options, false).1)
        .collect();
    print_gaps("rst-race, nothing held", gaps);
}

#[test]
fn rst_race_in_the_kernel_gives_one_trace_in_20_fresh_labs() {
    let test = "rst_race_in_the_kernel_gives_one_trace_in_20_fresh_labs";
    if !rst_race_can_run(test) {
        return;
    }
    let plan = rst_race_plan();
    let names = NameMap::of_plan(&plan);
    let options = TraceOptions::default();
    let mut last = Vec::new();
    let mut gaps = Vec::new();
    let text = same_every_run("rst-race: h3 connects to the VIP, its SYN held", || {
        let (points, gap) = rst_race_run(&plan, &names, &options, true);
        last = points;
        gaps.push(gap);
        trace_and_ladder(&last, &names, &options)
    });
    // h2's SYN-ACK now waits for h3's ARP reply, which the bucket holds too (21 ms).
    print_gaps("rst-race, h3's SYN held", gaps);
    let trace = Trace::build(&last, &names, &options);
    let h3: Vec<&str> = trace.sections[1]
        .lines
        .iter()
        .map(|l| l.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        h3,
        [
            "Flags [S], seq 0, length 0",
            "Flags [R.], seq 0, ack 1, length 0",
            "Flags [S.], seq 0, ack 1, length 0",
            "Flags [R], seq 1, length 0"
        ],
        "{text}"
    );
    lab::assert_trace!("rst_race_trace", trace);
    lab::assert_trace!("rst_race_ladder", Ladder::build(&last, &names, &options));
}

#[test]
fn fresh_lab_sends_nothing() {
    // Regression: bridges were created with multicast snooping on, so every switch joined the
    // all-snoopers group 224.0.0.106 and flooded two IGMPv3 reports for it, ~5 ms and up to a
    // second after `lab up`, into every host's capture.
    if !privileged("fresh_lab_sends_nothing") {
        return;
    }
    let plan = resolve(&builtin("single,3").expect("built-in")).expect("resolve");
    // Not `lab_up`: what an interface sends as it comes up must be seen too.
    let lab = Lab::up(plan.clone(), &LabOptions::default()).expect("lab up");
    // IGMPv3 repeats an unsolicited report after a random delay below 1 s: watch 1.5 s.
    let captures: Vec<Capture> = ["s1", "h1", "h2", "h3"]
        .iter()
        .map(|node| {
            let config = CaptureConfig::new(node, None).duration(Duration::from_millis(1500));
            lab.run_in(node, || Capture::start(config))
                .expect("enter namespace")
                .expect("capture")
        })
        .collect();
    let points: Vec<CapturePoint> = captures
        .into_iter()
        .map(|c| c.wait().expect("capture"))
        .collect();
    let everything = TraceOptions {
        arp: true,
        ipv6: true,
        igmp: true,
        other_ethertypes: true,
        direction: true,
        ..TraceOptions::default()
    };
    let trace = Trace::build(&points, &NameMap::of_plan(&plan), &everything);
    assert!(
        points.iter().all(|p| p.frames.is_empty()),
        "a lab nobody uses sent frames:\n{trace}"
    );
}
