//! Privileged tests of AF_PACKET capture in throw-away namespaces.

use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use lab::capture::{Capture, CaptureConfig, CapturePoint, PacketType, StopReason};
use lab::ladder::Ladder;
use lab::trace::{NameMap, Trace, TraceOptions};

use lab::testing::{NsThread, VethPair, privileged, tool};

/// (source port, destination port, payload length) of the UDP frames of `point`.
fn udp_frames(point: &CapturePoint) -> Vec<(PacketType, u16, u16, usize)> {
    point
        .frames
        .iter()
        .filter_map(|f| {
            let p = SlicedPacket::from_ethernet(&f.data).ok()?;
            match (p.net?, p.transport?) {
                (NetSlice::Ipv4(_), TransportSlice::Udp(u)) => Some((
                    f.packet_type,
                    u.source_port(),
                    u.destination_port(),
                    u.payload().len(),
                )),
                _ => None,
            }
        })
        .collect()
}

/// Sends `n` datagrams from `a` to a socket bound in `b`, waits until `b` has read them all.
fn send_udp(pair: &VethPair, n: usize) {
    let server = pair
        .b
        .run(|| UdpSocket::bind("10.0.0.2:9000").expect("bind 10.0.0.2:9000"));
    pair.a.run(move || {
        let s = UdpSocket::bind("10.0.0.3:0").expect("bind client");
        for i in 0..n {
            s.send_to(format!("ping{i}").as_bytes(), "10.0.0.2:9000")
                .expect("send_to");
        }
    });
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    for _ in 0..n {
        server.recv_from(&mut buf).expect("datagram did not arrive");
    }
}

#[test]
fn capture_is_armed_when_start_returns() {
    if !privileged("capture_is_armed_when_start_returns") {
        return;
    }
    let pair = VethPair::new();
    let ca = pair
        .a
        .run(|| Capture::start(CaptureConfig::new("h3", Some("veth-a"))))
        .expect("capture a");
    let cb = pair
        .b
        .run(|| Capture::start(CaptureConfig::new("h2", Some("veth-b"))))
        .expect("capture b");
    // No sleep: traffic starts the moment both captures report armed.
    send_udp(&pair, 3);
    let a = ca.stop().expect("stop a");
    let b = cb.stop().expect("stop b");

    let sent = udp_frames(&a);
    assert_eq!(sent.len(), 3, "h3 saw {sent:?}");
    assert!(
        sent.iter()
            .all(|f| f.0 == PacketType::Outgoing && f.2 == 9000 && f.3 == 5),
        "{sent:?}"
    );
    let received = udp_frames(&b);
    assert_eq!(received.len(), 3, "h2 saw {received:?}");
    assert!(
        received.iter().all(|f| f.0 == PacketType::Host),
        "{received:?}"
    );
    for p in [&a, &b] {
        assert_eq!(p.stats.kernel_drops, 0, "{:?}", p.stats);
        assert_eq!(p.stats.stop_reason, StopReason::Stopped);
        assert_eq!(p.stats.captured, p.frames.len() as u64);
        assert!(
            p.frames
                .iter()
                .all(|f| f.interface == p.interface.clone().unwrap())
        );
    }
}

#[test]
fn real_capture_trace_matches_snapshot() {
    if !privileged("real_capture_trace_matches_snapshot") {
        return;
    }
    let pair = VethPair::new();
    let listener = pair
        .b
        .run(|| TcpListener::bind("10.0.0.2:8080").expect("listen"));
    let ca = pair
        .a
        .run(|| Capture::start(CaptureConfig::new("h3", Some("veth-a"))))
        .expect("capture a");
    let cb = pair
        .b
        .run(|| Capture::start(CaptureConfig::new("h2", Some("veth-b"))))
        .expect("capture b");
    send_udp(&pair, 3);
    let client = pair
        .a
        .run(|| TcpStream::connect("10.0.0.2:8080").expect("connect"));
    // accept returns once h2's kernel has the final ACK, so all three segments are queued.
    let (_server, _) = listener.accept().expect("accept");
    let points = [ca.stop().expect("stop a"), cb.stop().expect("stop b")];
    drop(client);
    let names = NameMap::new()
        .host("h3", Ipv4Addr::new(10, 0, 0, 3))
        .host("h2", Ipv4Addr::new(10, 0, 0, 2));
    let options = TraceOptions {
        direction: true,
        ..TraceOptions::default()
    };
    let trace = Trace::build(&points, &names, &options);
    lab::assert_trace!("real_capture_udp_and_tcp_handshake", trace);
    let ladder = Ladder::build(&points, &names, &options);
    lab::assert_trace!("real_capture_ladder", ladder);
}

#[test]
fn capture_sees_tcp_handshake_both_ways() {
    if !privileged("capture_sees_tcp_handshake_both_ways") {
        return;
    }
    let pair = VethPair::new();
    let listener = pair
        .b
        .run(|| TcpListener::bind("10.0.0.2:8080").expect("listen"));
    let ca = pair
        .a
        .run(|| Capture::start(CaptureConfig::new("h3", Some("veth-a"))))
        .expect("capture");
    let stream = pair
        .a
        .run(|| TcpStream::connect((Ipv4Addr::new(10, 0, 0, 2), 8080)).expect("connect"));
    let (_accepted, _) = listener.accept().expect("accept");
    let a = ca.stop().expect("stop");
    drop(stream);
    let flags: Vec<(PacketType, bool, bool)> = a
        .frames
        .iter()
        .filter_map(
            |f| match SlicedPacket::from_ethernet(&f.data).ok()?.transport? {
                TransportSlice::Tcp(t) => Some((f.packet_type, t.syn(), t.ack())),
                _ => None,
            },
        )
        .collect();
    assert_eq!(
        flags,
        [
            (PacketType::Outgoing, true, false),
            (PacketType::Host, true, true),
            (PacketType::Outgoing, false, true)
        ]
    );
}

#[test]
fn capture_on_all_interfaces_skips_loopback_duplicates() {
    if !privileged("capture_on_all_interfaces_skips_loopback_duplicates") {
        return;
    }
    let ns = NsThread::new();
    let point = ns.run(|| {
        let cap = Capture::start(CaptureConfig::new("h1", None)).expect("capture");
        let rx = UdpSocket::bind("127.0.0.1:9000").expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for _ in 0..4 {
            tx.send_to(b"x", "127.0.0.1:9000").expect("send");
        }
        let mut buf = [0u8; 8];
        for _ in 0..4 {
            rx.recv_from(&mut buf).expect("recv");
        }
        cap.stop().expect("stop")
    });
    assert_eq!(point.interface, None);
    let udp = udp_frames(&point);
    assert_eq!(udp.len(), 4, "{udp:?}");
    assert!(point.frames.iter().all(|f| f.interface == "lo"));
    assert_eq!(point.stats.loopback_duplicates, 4, "{:?}", point.stats);
}

#[test]
fn capture_stops_at_count_and_accounts_for_the_rest() {
    if !privileged("capture_stops_at_count_and_accounts_for_the_rest") {
        return;
    }
    let ns = NsThread::new();
    let point = ns.run(|| {
        let cap = Capture::start(CaptureConfig::new("h1", Some("lo")).count(2)).expect("capture");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for _ in 0..5 {
            // Nobody listens: each datagram also draws an ICMP port unreachable.
            tx.send_to(b"x", "127.0.0.1:9").expect("send");
        }
        cap.wait().expect("wait")
    });
    let s = &point.stats;
    assert_eq!(point.frames.len(), 2);
    assert_eq!(s.stop_reason, StopReason::Count);
    assert_eq!(
        s.kernel_packets,
        s.captured + s.kernel_drops + s.loopback_duplicates + s.unread,
        "{s:?}"
    );
}

#[test]
fn capture_stops_after_duration() {
    if !privileged("capture_stops_after_duration") {
        return;
    }
    let ns = NsThread::new();
    let point = ns.run(|| {
        let cap = Capture::start(
            CaptureConfig::new("h1", Some("lo")).duration(Duration::from_millis(50)),
        );
        cap.expect("capture").wait().expect("wait")
    });
    assert_eq!(point.stats.stop_reason, StopReason::Duration);
    assert!(point.frames.is_empty());
}

#[test]
fn capture_unknown_interface_is_an_error_naming_it() {
    if !privileged("capture_unknown_interface_is_an_error_naming_it") {
        return;
    }
    let ns = NsThread::new();
    let err = ns.run(|| Capture::start(CaptureConfig::new("h1", Some("nope0"))).unwrap_err());
    assert_eq!(
        err.to_string(),
        "interface \"nope0\" not found in this network namespace"
    );
}

#[test]
fn pcap_files_are_readable_by_tcpdump() {
    if !privileged("pcap_files_are_readable_by_tcpdump") {
        return;
    }
    let Some(tcpdump) = tool("pcap_files_are_readable_by_tcpdump", "tcpdump") else {
        return;
    };
    let pair = VethPair::new();
    let one = pair
        .b
        .run(|| Capture::start(CaptureConfig::new("h2", Some("veth-b"))))
        .expect("capture");
    let any = pair
        .a
        .run(|| Capture::start(CaptureConfig::new("h3", None)))
        .expect("capture");
    send_udp(&pair, 3);
    let points = [one.stop().expect("stop"), any.stop().expect("stop")];
    let dir = std::env::temp_dir().join(format!("lab-pcap-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (point, link) in points.iter().zip(["EN10MB", "LINUX_SLL"]) {
        let path = dir.join(format!("{}.pcap", point.host));
        lab::capture::write_pcap_file(point, &path).expect("write pcap");
        let out = lab::testing::tcpdump_reader(&tcpdump)
            .args(["-nn", "-e", "-r"])
            .arg(&path)
            .args(["udp", "and", "port", "9000"])
            .output()
            .expect("run tcpdump");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "tcpdump -r {}: {stderr}",
            path.display()
        );
        assert!(stderr.contains(link), "{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{stdout}");
        assert!(
            lines
                .iter()
                .all(|l| l.contains("10.0.0.3.") && l.ends_with("> 10.0.0.2.9000: UDP, length 5")),
            "{stdout}"
        );
        if point.interface.is_none() {
            assert!(lines.iter().all(|l| l.contains(" Out ")), "{stdout}");
        }
    }
    std::fs::remove_dir_all(&dir).expect("rm");
}
