//! End-to-end: the `lb` binary in a lab built by the `lab` library. h1 runs `lb server`,
//! backends run `lb agent` (encapsulation) or hold the VIP on lo (DSR), a client connects to
//! VIP:8080. Privileged: skipped without root unless LAB_REQUIRE_PRIVILEGED=1.

// An ordinary user's run enters a user namespace of its own before main, so the privileged
// tests run rootless instead of skipping.
lab::rootless_test_binary!();

#[allow(dead_code)]
mod dataplane;
mod harness;

use dataplane::{Echo, PORT, VIP, crash, fixture, queues, sh, stop, tcp_ask, udp_ask};
use harness::{LB, privileged, start_lb as start, up};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

#[test]
fn encap_nfqueue_tcp_and_udp_reach_the_backend() {
    if !privileged("encap_nfqueue_tcp_and_udp_reach_the_backend") {
        return;
    }
    let mut lab = up("single,3");
    let agent = start(
        &mut lab,
        "h2",
        "agent",
        &["agent", "--vip", "10.0.0.50", "--balancer", "10.0.0.1"],
    );
    let echo = Echo::start(&lab, "h2");
    let server = start(
        &mut lab,
        "h1",
        "server",
        &[
            "server",
            "--vip",
            "10.0.0.50",
            "--forward",
            "encap",
            "--backend",
            "h2=10.0.0.2",
        ],
    );
    assert_eq!(
        tcp_ask(&lab, "h3", "Is this working?").unwrap(),
        "h2: Is this working?"
    );
    assert_eq!(
        udp_ask(&lab, "h3", "udp datagram").unwrap(),
        "h2: udp datagram"
    );
    drop(echo);
    let log = stop(&mut lab, &server);
    assert!(log.contains("removed the VIP"), "{log}");
    assert!(log.contains("backend=h2"), "{log}");
    let alog = stop(&mut lab, &agent);
    assert!(alog.contains("removed the VIP from lo"), "{alog}");
    assert!(!sh(&lab, "h2", "ip -br addr show dev lo").contains("10.0.0.50"));
}

#[test]
fn dsr_nfqueue_tcp_and_udp_reach_the_backend() {
    if !privileged("dsr_nfqueue_tcp_and_udp_reach_the_backend") {
        return;
    }
    let mut lab = up(&fixture("dsr4.toml"));
    let echo = Echo::start(&lab, "h2");
    let server = start(
        &mut lab,
        "h1",
        "server",
        &[
            "server",
            "--vip",
            "10.0.0.50",
            "--forward",
            "dsr",
            "--backend",
            "h2=10.0.0.2",
        ],
    );
    assert_eq!(
        tcp_ask(&lab, "h4", "Is this working?").unwrap(),
        "h2: Is this working?"
    );
    assert_eq!(
        udp_ask(&lab, "h4", "udp datagram").unwrap(),
        "h2: udp datagram"
    );
    drop(echo);
    let log = stop(&mut lab, &server);
    assert!(log.contains("resolved backend MAC"), "{log}");
}

#[test]
fn two_backends_share_200_connections() {
    if !privileged("two_backends_share_200_connections") {
        return;
    }
    let mut lab = up(&fixture("dsr4.toml"));
    let _e2 = Echo::start(&lab, "h2");
    let _e3 = Echo::start(&lab, "h3");
    let server = start(
        &mut lab,
        "h1",
        "server",
        &[
            "server",
            "--vip",
            "10.0.0.50",
            "--forward",
            "dsr",
            "--backend",
            "h2=10.0.0.2",
            "--backend",
            "h3=10.0.0.3",
        ],
    );
    let mut by_backend = std::collections::BTreeMap::<String, usize>::new();
    let mut ports = std::collections::BTreeSet::new();
    for i in 0..200 {
        let conn = lab
            .run_in("h4", || {
                TcpStream::connect_timeout(&SocketAddr::from((VIP, PORT)), Duration::from_secs(3))
            })
            .unwrap()
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        ports.insert(conn.local_addr().unwrap().port());
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        (&conn).write_all(b"hello\n").unwrap();
        let mut answer = String::new();
        BufReader::new(&conn).read_line(&mut answer).unwrap();
        let who = answer.split(':').next().unwrap().to_string();
        *by_backend.entry(who).or_default() += 1;
        drop(conn);
    }
    assert_eq!(ports.len(), 200, "distinct source ports");
    let h2 = by_backend.get("h2").copied().unwrap_or(0);
    let h3 = by_backend.get("h3").copied().unwrap_or(0);
    eprintln!("200 connections: h2 {h2}, h3 {h3}");
    assert_eq!(h2 + h3, 200, "{by_backend:?}");
    // Five-tuple hashing over two equal backends: 100 ± 7 (1σ); under 40 is out by 8σ.
    assert!(h2 >= 40 && h3 >= 40, "uneven: {by_backend:?}");
    let log = stop(&mut lab, &server);
    assert!(
        log.contains("backend=h2") && log.contains("backend=h3"),
        "{log}"
    );
}

#[test]
fn restart_after_crash_removes_stale_rules_and_stop_cleans_up() {
    if !privileged("restart_after_crash_removes_stale_rules_and_stop_cleans_up") {
        return;
    }
    let mut lab = up("single,3");
    let args = ["server", "--vip", "10.0.0.50", "--backend", "h2=10.0.0.2"];
    let first = start(&mut lab, "h1", "first", &args);
    assert_eq!(
        sh(&lab, "h1", "iptables -S INPUT | grep -c lb:10.0.0.50").trim(),
        "2"
    );
    crash(&mut lab, &first);
    // The crash left the rules and the VIP behind.
    assert_eq!(
        sh(&lab, "h1", "iptables -S INPUT | grep -c lb:10.0.0.50").trim(),
        "2"
    );
    assert!(sh(&lab, "h1", "ip -br addr").contains("10.0.0.50/32"));
    let second = start(&mut lab, "h1", "second", &args);
    assert_eq!(
        sh(&lab, "h1", "iptables -S INPUT | grep -c lb:10.0.0.50").trim(),
        "2"
    );
    let log = stop(&mut lab, &second);
    assert!(log.contains("removed stale NFQUEUE rules"), "{log}");
    assert_eq!(
        sh(&lab, "h1", "iptables -S INPUT | grep -c lb:10.0.0.50").trim(),
        "0"
    );
    assert!(!sh(&lab, "h1", "ip -br addr").contains("10.0.0.50"));
}

#[test]
fn malformed_packets_to_the_vip_are_counted_and_dropped() {
    if !privileged("malformed_packets_to_the_vip_are_counted_and_dropped") {
        return;
    }
    let mut lab = up("single,3");
    let agent = start(
        &mut lab,
        "h2",
        "agent",
        &["agent", "--vip", "10.0.0.50", "--balancer", "10.0.0.1"],
    );
    let _echo = Echo::start(&lab, "h2");
    let server = start(
        &mut lab,
        "h1",
        "server",
        &["server", "--vip", "10.0.0.50", "--backend", "h2=10.0.0.2"],
    );
    // From h3 through a raw socket: a TCP packet cut inside its header, a UDP header whose
    // length disagrees, and a first fragment.
    let raw = lab
        .run_in("h3", || {
            nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Inet,
                nix::sys::socket::SockType::Raw,
                nix::sys::socket::SockFlag::empty(),
                nix::sys::socket::SockProtocol::Raw,
            )
            .unwrap()
        })
        .unwrap();
    let dst = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(VIP, 0));
    let packet = |proto: u8, frag: u16, l4: &[u8]| {
        let mut p = vec![
            0x45,
            0,
            0,
            0,
            0,
            1,
            (frag >> 8) as u8,
            frag as u8,
            64,
            proto,
            0,
            0,
            10,
            0,
            0,
            3,
        ];
        p.extend_from_slice(&VIP.octets());
        p.extend_from_slice(l4);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    };
    let bad = [
        packet(6, 0, &[0x9c, 0x40, 0x1f, 0x90, 0, 0]),
        packet(17, 0, &[0x9c, 0x40, 0x1f, 0x90, 0, 99, 0, 0, 1, 2]),
        packet(
            17,
            0x2000,
            &[0x9c, 0x40, 0x1f, 0x90, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
    ];
    for p in &bad {
        nix::sys::socket::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&raw),
            p,
            &dst,
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
    }
    // The server is still serving.
    assert_eq!(
        tcp_ask(&lab, "h3", "still there?").unwrap(),
        "h2: still there?"
    );
    assert!(server.id.alive());
    let log = stop(&mut lab, &server);
    let drops: Vec<&str> = log.lines().filter(|l| l.contains("dropped")).collect();
    assert!(drops.len() >= 2, "expected drop counters by reason:\n{log}");
    stop(&mut lab, &agent);
}

#[test]
fn bad_input_prints_one_line_and_exits_2() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(LB).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["server", "--backend", "h2=10.0.0.2"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim(),
        "lb: vip: give --vip or `vip` in the config file"
    );
    let dir = std::env::temp_dir().join(format!("lb-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "vip = \"10.0.0.50\"\n[server]\nqueues = \"many\"\n").unwrap();
    let (code, err) = run(&["server", "-f", file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad.toml:3: queues:"), "{err}");
    let (code, err) = run(&["server", "--vip", "10.0.0.50", "--table-size", "100"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("table_size"), "{err}");
    // Unbounded reads grew `lb server -f /dev/zero` to gigabytes (issue 13, case 7).
    let (code, err) = run(&["server", "-f", "/dev/zero"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "lb: /dev/zero: -: cannot read: not a regular file"
    );
    let (code, err) = run(&[
        "server",
        "--vip",
        "10.0.0.50",
        "--control",
        "10.0.0.1",
        "--secret-file",
        "/dev/zero",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("secret_file: cannot read /dev/zero: not a regular file"),
        "{err}"
    );
    // An agent accepting encapsulated packets from anyone re-injected forged ones (issue 13,
    // case 2): it needs to know its balancer.
    let (code, err) = run(&["agent", "--vip", "10.0.0.50"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.starts_with("lb: agent: give --balancer IP"), "{err}");
    // The VIP as a static backend looped a datagram through the balancer (issue 13, case 6).
    let (code, err) = run(&["server", "--vip", "10.0.0.50", "--backend", "v=10.0.0.50"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "lb: server.backends[0].addr: 10.0.0.50 is the VIP: its packets would loop through the balancer"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Configuration mistakes found at start exit 2 with one line, before any rule, route or VIP
/// is installed (issue 13, cases 6 and 9): no interface for the VIP, a backend at one of the
/// balancer's own addresses
/// (every packet would come back to it), an MTU too small for the encapsulation, registration
/// on an address the host lacks.
#[test]
fn start_time_mistakes_exit_2_before_anything_is_installed() {
    if !privileged("start_time_mistakes_exit_2_before_anything_is_installed") {
        return;
    }
    let lab = up("single,3");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--interface", "nosuch"],
            "interface nosuch: no such interface with an IPv4 subnet",
        ),
        (
            &["--vip", "172.31.9.50"],
            "no interface has a subnet holding the VIP 172.31.9.50",
        ),
        (
            &["--backend", "me=10.0.0.1"],
            "backend me (10.0.0.1) is an address of this host (h1-eth0): its packets would come back to the balancer",
        ),
        (
            &["--backend", "h2=10.0.0.2", "--mtu", "10"],
            "balancer configuration: ",
        ),
        (
            &["--control", "10.9.9.9:1338"],
            "control: listen for agents on 10.9.9.9:1338: this host has no address 10.9.9.9",
        ),
    ];
    for (args, expected) in cases {
        let out = lab
            .command("h1", LB)
            .unwrap()
            .arg("server")
            .args(if args.contains(&"--vip") {
                &[][..]
            } else {
                &["--vip", "10.0.0.50"][..]
            })
            .args(*args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.trim_end().lines().last().unwrap_or_default();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(last.starts_with("lb: lb server: "), "{args:?}: {err}");
        assert!(last.contains(expected), "{args:?}: {err}");
        assert_eq!(
            sh(
                &lab,
                "h1",
                "iptables -S INPUT | grep -c lb:10.0.0.50 || true"
            )
            .trim(),
            "0",
            "{args:?}"
        );
        assert!(
            !sh(&lab, "h1", "ip -br addr").contains("10.0.0.50"),
            "{args:?}"
        );
    }
}

#[test]
fn full_mtu_packet_gets_icmp_fragmentation_needed_and_the_client_lowers_its_path_mtu() {
    let test = "full_mtu_packet_gets_icmp_fragmentation_needed_and_the_client_lowers_its_path_mtu";
    if !privileged(test) {
        return;
    }
    let mut lab = up("single,3");
    let agent = start(
        &mut lab,
        "h2",
        "agent",
        &["agent", "--vip", "10.0.0.50", "--balancer", "10.0.0.1"],
    );
    let echo = Echo::start(&lab, "h2");
    let server = start(
        &mut lab,
        "h1",
        "server",
        &["server", "--vip", "10.0.0.50", "--backend", "h2=10.0.0.2"],
    );
    // A connected UDP socket with DF set (IP_PMTUDISC_DO), as a path-MTU-aware client is.
    let sock = lab
        .run_in("h3", || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    sock.connect((VIP, PORT)).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    let set = |opt: libc::c_int, v: libc::c_int| {
        // SAFETY: valid socket and option value.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                opt,
                (&v as *const libc::c_int).cast(),
                4,
            )
        };
        assert_eq!(r, 0, "setsockopt {opt}");
    };
    set(libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO);
    let mtu = || {
        let mut v: libc::c_int = 0;
        let mut len: libc::socklen_t = 4;
        // SAFETY: valid socket, buffer and length.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_MTU,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0);
        v
    };
    assert_eq!(mtu(), 1500);
    // 1472 bytes of payload: a 1500-byte packet, 1528 once encapsulated.
    sock.send(&[7u8; 1472]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while mtu() == 1500 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        mtu(),
        1472,
        "the balancer's ICMP must lower h3's path MTU to 1500 - 28"
    );
    // The ICMP error is also pending on the connected socket (SO_ERROR): read it.
    let pending = sock.take_error().unwrap();
    assert_eq!(pending.and_then(|e| e.raw_os_error()), Some(libc::EMSGSIZE));
    let err = sock.send(&[7u8; 1472]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE));
    // What fits still goes through.
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.send(&[b'x'; 1444]).unwrap();
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(n, "h2: ".len() + 1444);
    drop(echo);
    let log = stop(&mut lab, &server);
    assert!(log.contains("icmp_frag_needed=1"), "{log}");
    stop(&mut lab, &agent);
}

#[test]
fn two_queues_each_carry_flows() {
    if !privileged("two_queues_each_carry_flows") {
        return;
    }
    two_queues(&["dsr"], "iptables -S INPUT");
}

#[test]
fn two_queues_each_carry_flows_dsr_kernel() {
    if !privileged("two_queues_each_carry_flows_dsr_kernel") {
        return;
    }
    two_queues(&["dsr-kernel"], "iptables -t mangle -S PREROUTING");
}

/// With the fast path, each queue's thread hands its own flows to the kernel's one map: a
/// connection's SYN, FIN and last ACK cross a queue, its request and answer do not.
#[test]
fn two_queues_each_carry_flows_fast_path() {
    if !privileged("two_queues_each_carry_flows_fast_path") {
        return;
    }
    let taken = two_queues(
        &["dsr-kernel", "--fast-path"],
        "iptables -t mangle -S PREROUTING",
    );
    assert!(taken <= 16 * 3, "{taken} packets queued for 16 connections");
}

/// `--queues 2` in forwarding mode `forward` (and flags after it), whose queue rules `list`
/// shows; returns the packets both queues took.
fn two_queues(forward: &[&str], list: &str) -> u32 {
    let mut lab = up(&fixture("dsr4.toml"));
    let _e2 = Echo::start(&lab, "h2");
    let server = start(
        &mut lab,
        "h1",
        "server",
        &[
            "server",
            "--vip",
            "10.0.0.50",
            "--backend",
            "h2=10.0.0.2",
            "--queue",
            "3",
            "--queues",
            "2",
            "--forward",
        ]
        .into_iter()
        .chain(forward.iter().copied())
        .collect::<Vec<_>>(),
    );
    let rules = sh(&lab, "h1", list);
    assert!(rules.contains("--queue-balance 3:4"), "{rules}");
    // `--queue-balance` hashes the address pair, not the ports: spread the clients over 16
    // source addresses (all 16 in one queue of two: probability 2^-15).
    let sources: Vec<Ipv4Addr> = (0..16).map(|i| Ipv4Addr::new(10, 0, 0, 100 + i)).collect();
    for a in &sources {
        sh(&lab, "h4", &format!("ip addr add {a}/24 dev h4-eth0"));
    }
    for (i, a) in sources.iter().enumerate() {
        let conn = lab
            .run_in("h4", || connect_from(*a))
            .unwrap()
            .expect("connect from a source address");
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        (&conn).write_all(format!("c{i}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        BufReader::new(&conn).read_line(&mut answer).unwrap();
        assert_eq!(answer.trim_end(), format!("h2: c{i}"));
    }
    let stats = queues(&lab, "h1");
    assert_eq!(stats.len(), 2, "{stats:?}");
    assert!(
        stats.iter().all(|q| q.id_sequence > 0),
        "a queue carried nothing:\n{stats:?}"
    );
    stop(&mut lab, &server);
    stats.iter().map(|q| q.id_sequence).sum()
}

/// A TCP connection to VIP:8080 from source address `src` (bind before connect).
fn connect_from(src: Ipv4Addr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(src, 0)),
    )?;
    connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(VIP, PORT)),
    )?;
    Ok(TcpStream::from(fd))
}

/// `lb ctl` reaches only the `lb` of its own network namespace: the default sockets are
/// abstract (`@lb/agent`, `@lb/server`). With file paths under /run, shared by every namespace,
/// `lab exec h3 -- lb ctl pause` paused h2's agent, and two agents started at once collided
/// (issue 13, cases 5 and 11). Here two agents in two hosts each own their default socket.
#[test]
fn ctl_reaches_only_the_lb_of_its_own_namespace() {
    if !privileged("ctl_reaches_only_the_lb_of_its_own_namespace") {
        return;
    }
    let mut lab = up("single,3");
    let h2 = start(
        &mut lab,
        "h2",
        "agent2",
        &[
            "agent",
            "--vip",
            "10.0.0.50",
            "--name",
            "a2",
            "--balancer",
            "10.0.0.1",
        ],
    );
    let h3 = start(
        &mut lab,
        "h3",
        "agent3",
        &[
            "agent",
            "--vip",
            "10.0.0.50",
            "--name",
            "a3",
            "--balancer",
            "10.0.0.1",
        ],
    );
    let ctl = |host: &str, args: &[&str]| {
        let out = lab
            .command(host, LB)
            .unwrap()
            .arg("ctl")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for (host, name) in [("h2", "agent2"), ("h3", "agent3")] {
        let log = std::fs::read_to_string(&[&h2, &h3].iter().find(|p| p.name == name).unwrap().log)
            .unwrap();
        assert!(log.contains("ctl @lb/agent"), "{host}: {log}");
        let (code, text) = ctl(host, &["--agent", "--json", "state"]);
        assert_eq!(code, Some(0), "{host}: {text}");
        assert!(text.contains("\"role\":\"agent\""), "{host}: {text}");
        let own = format!("\"name\":\"a{}\"", &host[1..]);
        assert!(text.contains(&own), "{host}: {text}");
    }
    // An abstract socket has no file mode: the peer's credentials keep other users out. A
    // rootless run's user namespace maps one uid, so there is no other user to try.
    if !lab::testing::uid_mapped(65534) {
        eprintln!(
            "SKIP part of ctl_reaches_only_the_lb_of_its_own_namespace: uid 65534 is not mapped in this user namespace (one uid is), so no other user can try the socket"
        );
    } else {
        other_user_is_refused(&lab);
    }
    // h1 runs no lb: nothing answers there, whatever runs elsewhere.
    let (code, text) = ctl("h1", &["--agent", "state"]);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("cannot reach @lb/agent"), "{text}");
    stop(&mut lab, &h2);
    stop(&mut lab, &h3);
}

/// uid 65534 may not use h2's agent socket.
fn other_user_is_refused(lab: &lab::Lab) {
    let out = lab
        .command("h2", "setpriv")
        .unwrap()
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", LB])
        .args(["ctl", "--agent", "pause"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("uid 65534 may not use this socket"), "{text}");
}

/// A forged encapsulated packet from a host that is not a balancer is dropped and counted, not
/// re-injected: before, any host that could reach :1337 got any packet addressed to the VIP
/// injected into the backend, with any source (issue 13, case 2). The balancer's still is.
#[test]
fn the_agent_reinjects_only_what_its_balancer_sends() {
    if !privileged("the_agent_reinjects_only_what_its_balancer_sends") {
        return;
    }
    let mut lab = up("single,3");
    let agent = start(
        &mut lab,
        "h2",
        "agent",
        &["agent", "--vip", "10.0.0.50", "--balancer", "10.0.0.1"],
    );
    // An IPv4/UDP packet 10.0.0.9:4000 -> VIP:9999 with 4 bytes of payload, as the payload of a
    // datagram to h2:1337 (Caplance's encapsulation). UDP checksum 0: none.
    let mut inner = vec![
        0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 9, 10, 0, 0, 50,
    ];
    let sum = {
        let mut s: u32 = inner
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    };
    inner[10..12].copy_from_slice(&sum.to_be_bytes());
    inner.extend_from_slice(&[0x0f, 0xa0, 0x27, 0x0f, 0, 12, 0, 0, b'f', b'a', b'k', b'e']);
    let send_from = |host: &str| {
        let inner = inner.clone();
        lab.run_in(host, move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.send_to(&inner, "10.0.0.2:1337").unwrap();
        })
        .unwrap();
    };
    let state = || {
        let out = lab
            .command("h2", LB)
            .unwrap()
            .args(["ctl", "--agent", "--json", "state"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let st = state();
            if st.contains(what) {
                return st;
            }
            assert!(Instant::now() < deadline, "waiting for {what}: {st}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    send_from("h3");
    let st = wait_for("\"received\":1,");
    assert!(
        st.contains("\"injected\":0,") && st.contains("\"refused\":1,"),
        "{st}"
    );
    send_from("h1");
    let st = wait_for("\"received\":2,");
    assert!(
        st.contains("\"injected\":1,") && st.contains("\"refused\":1,"),
        "{st}"
    );
    let log = stop(&mut lab, &agent);
    assert!(log.contains("not from a balancer"), "{log}");
}
