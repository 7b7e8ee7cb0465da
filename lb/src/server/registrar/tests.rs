//! The control plane on loopback, no root: a fake data path applies its messages to a real
//! `lb_core::State`; fake agents speak Caplance's lines (and worse) over real TCP and UDP sockets.

use super::*;
use crate::server::datapath::mailbox::{self, Mailbox, PathMsg};
use lb_core::BackendState;
use lb_core::config::{CheckSection, ControlSection, Dur};
use lb_core::protocol::agent::{MAX_LINE, Secret, ServerMsg};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::net::{TcpStream as StdTcp, UdpSocket};
use std::sync::Mutex;

struct Harness {
    addr: SocketAddrV4,
    port: u16,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    state: Arc<Mutex<lb_core::State>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn settings() -> ControlSettings {
    ControlSettings {
        vip: Ipv4Addr::new(10, 0, 0, 50),
        listen: Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
        timing: ControlSection {
            secret_file: None,
            health_interval: Dur::millis(100),
            read_timeout: Dur::secs(5),
            write_timeout: Dur::secs(2),
            register_timeout: Dur::secs(3),
        },
        secret: None,
        max_pending: 8,
        max_agents: 16,
        check: CheckSection::default(),
        drain_timeout: Duration::from_secs(30),
        data_addr: Ipv4Addr::LOCALHOST,
        encap_port: 0,
        description: "test".into(),
        queues: None,
        metrics: None,
        admission: None,
    }
}

/// A data path that applies messages to a `State` the test can read.
fn fake_path(
    ctl: Mailbox,
    state: Arc<Mutex<lb_core::State>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let _ = crate::sys::wake::wait_or_wake(-1, &ctl.waker, Duration::from_millis(20));
            for m in ctl.drain() {
                let mut st = state.lock().unwrap();
                match m {
                    PathMsg::Apply(u) => u.iter().for_each(|u| mailbox::apply(&mut st, u)),
                    PathMsg::Sync(tx) => {
                        let _ = tx.send(());
                    }
                    PathMsg::Report(tx) => {
                        let _ = tx.send(mailbox::report(&st, now()));
                    }
                }
            }
        }
    })
}

/// Starts the control plane; the fake agents' data sockets listen on `port` (127.0.0.x).
fn start(f: impl FnOnce(&mut ControlSettings), statics: &[BackendSpec]) -> Harness {
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut s = settings();
    s.encap_port = port;
    f(&mut s);
    let tcp = std::net::TcpListener::bind(s.listen.unwrap()).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let addr = match tcp.local_addr().unwrap() {
        SocketAddr::V4(a) => a,
        _ => unreachable!(),
    };
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let bound = Bound {
        tcp: Some(tcp),
        udp: Some(udp),
        ctl: None,
        metrics: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut state = lb_core::State::new(lb_core::Config {
        vips: vec![s.vip],
        table_size: 251,
        ..Default::default()
    })
    .unwrap();
    for spec in statics {
        state.add_backend(spec.clone()).unwrap();
    }
    let state = Arc::new(Mutex::new(state));
    let (handle, ctl) = mailbox::channel().unwrap();
    let reg = registry(&s, statics).unwrap();
    let path = fake_path(ctl, Arc::clone(&state), Arc::clone(&stop));
    let st = Arc::clone(&stop);
    let cp = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, run(s, reg, vec![handle], bound, st));
    });
    Harness {
        addr,
        port,
        stop,
        threads: vec![cp, path],
        state,
    }
}

/// A TCP connection to `to` from `ip` (bound before connecting), as an agent on that host makes.
fn connect_from(ip: Ipv4Addr, to: SocketAddrV4) -> StdTcp {
    use std::os::fd::FromRawFd;
    let sin = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let (local, remote) = (sin(SocketAddrV4::new(ip, 0)), sin(to));
    // SAFETY: a new socket we own; bind and connect read the sockaddr_in values above.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let s = StdTcp::from_raw_fd(fd);
        assert_eq!(
            libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(
            libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len),
            0
        );
        s
    }
}

/// A fake agent: its control connection and its data socket on 127.0.0.`n`.
struct Agent {
    r: BufReader<StdTcp>,
    w: StdTcp,
    udp: UdpSocket,
    ip: Ipv4Addr,
}

impl Agent {
    fn connect(h: &Harness, n: u8) -> Agent {
        let ip = Ipv4Addr::new(127, 0, 0, n);
        let udp = UdpSocket::bind((ip, h.port)).unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let w = connect_from(ip, h.addr);
        w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Agent {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
            udp,
            ip,
        }
    }

    fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }

    /// True once the server has closed the connection (after what it sent is read).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.r.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }

    fn sanity(&self) -> String {
        let mut buf = [0u8; 128];
        let n = self.udp.recv(&mut buf).unwrap();
        lb_core::protocol::agent::parse_sanity(&buf[..n])
            .unwrap()
            .to_string()
    }

    /// Caplance's agent: REGISTER, SANITY on UDP, SANE, REGISTERED.
    fn register(h: &Harness, n: u8, name: &str) -> Agent {
        let mut a = Agent::connect(h, n);
        let ip = a.ip;
        a.send(&format!("REGISTER {name} {ip}"));
        let token = a.sanity();
        assert_eq!(token.len(), 16);
        a.send(&format!("SANE {token}"));
        assert_eq!(a.line(), format!("REGISTERED {name} {ip}"));
        a
    }
}

fn backend_state(h: &Harness, name: &str) -> Option<BackendState> {
    h.state
        .lock()
        .unwrap()
        .backend_by_name(name)
        .map(|b| b.spec.state)
}

/// Waits (bounded) for `f` to hold.
fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never happened: {what}");
}

fn still_serving(h: &Harness, a: &mut Agent, name: &str) {
    a.send("HEALTH 200");
    assert_eq!(a.line(), "HEALTHACK 200");
    assert_eq!(backend_state(h, name), Some(BackendState::Active));
}

#[test]
fn caplance_agent_registers_beats_pauses_resumes_and_deregisters() {
    let h = start(|_| {}, &[]);
    let mut a = Agent::register(&h, 1, "h2");
    assert_eq!(backend_state(&h, "h2"), Some(BackendState::Active));
    still_serving(&h, &mut a, "h2");
    // Caplance's agent names itself after the verb.
    a.send("PAUSE h2");
    assert_eq!(a.line(), "PAUSED h2");
    // Answered only once the data path applied it.
    assert_eq!(backend_state(&h, "h2"), Some(BackendState::Draining));
    a.send("PAUSE h2");
    assert_eq!(a.line(), "INVALID backend already paused");
    a.send("RESUME h2");
    assert_eq!(a.line(), "RESUMED h2");
    assert_eq!(backend_state(&h, "h2"), Some(BackendState::Active));
    a.send("HEALTH");
    assert_eq!(a.line(), "INVALID HEALTH: no status code in health check");
    a.send("DEREGISTER h2");
    assert_eq!(a.line(), "DEREGISTERED h2 client requested deregistration");
    assert!(a.closed());
    assert_eq!(backend_state(&h, "h2"), None);
}

#[test]
fn silence_for_read_timeout_deregisters() {
    let h = start(|s| s.timing.read_timeout = Dur::millis(300), &[]);
    let mut a = Agent::register(&h, 1, "h2");
    assert_eq!(a.line(), "DEREGISTERED h2 health check timeout ran out");
    assert!(a.closed());
    assert_eq!(backend_state(&h, "h2"), None);
}

#[test]
fn a_closed_connection_deregisters_at_once() {
    let h = start(|_| {}, &[]);
    let a = Agent::register(&h, 1, "h2");
    drop(a);
    eventually("h2 removed", || backend_state(&h, "h2").is_none());
}

#[test]
fn garbage_gets_an_error_line_and_a_closed_connection() {
    let h = start(|_| {}, &[]);
    let mut ok = Agent::register(&h, 1, "h2");
    for (bytes, want) in [
        (
            &b"\x00\x01\x02garbage\n"[..],
            "INVALID line is not printable ASCII text",
        ),
        (&b"\xff\xfe\xfd\n"[..], "INVALID line is not text"),
        (&b"\n"[..], "INVALID empty line"),
        (
            &b"SANE ABCDEFGHIJKLMNOP\n"[..],
            "INVALID registration failed: want REGISTER <name> <dataIP>",
        ),
    ] {
        let mut a = Agent::connect(&h, 9);
        a.w.write_all(bytes).unwrap();
        assert_eq!(a.line(), want, "{bytes:?}");
        assert!(a.closed(), "{bytes:?}");
    }
    still_serving(&h, &mut ok, "h2");
}

#[test]
fn unknown_verbs_get_an_error_line_and_a_closed_connection() {
    let h = start(|_| {}, &[]);
    let mut ok = Agent::register(&h, 1, "h2");
    let mut a = Agent::connect(&h, 9);
    a.send("GET / HTTP/1.1");
    assert_eq!(
        a.line(),
        "INVALID first token of message (GET) is not an option"
    );
    assert!(a.closed());
    // A registered agent's unknown verb is answered (Caplance) and it stays registered.
    ok.send("FROBNICATE");
    assert_eq!(
        ok.line(),
        "INVALID first token of message (FROBNICATE) is not an option"
    );
    still_serving(&h, &mut ok, "h2");
}

#[test]
fn over_long_lines_get_an_error_line_and_a_closed_connection() {
    let h = start(|_| {}, &[]);
    let mut ok = Agent::register(&h, 1, "h2");
    let mut a = Agent::connect(&h, 9);
    // 64 KiB without a newline: the server reads at most MAX_LINE bytes of it.
    let _ = a.w.write_all(&vec![b'A'; 64 * 1024]);
    assert_eq!(
        a.line(),
        format!("INVALID line too long (max {MAX_LINE} bytes)")
    );
    assert!(a.closed());
    still_serving(&h, &mut ok, "h2");
}

#[test]
fn half_open_clients_are_cut_at_the_registration_deadline() {
    let h = start(|s| s.timing.register_timeout = Dur::millis(400), &[]);
    let mut ok = Agent::register(&h, 1, "h2");
    // Connects, says nothing.
    let mut silent = Agent::connect(&h, 9);
    // Says half a line and stops.
    let mut half = Agent::connect(&h, 8);
    half.w.write_all(b"REGISTER half").unwrap();
    for a in [&mut silent, &mut half] {
        assert_eq!(a.line(), "INVALID registration not completed within 400ms");
        assert!(a.closed());
    }
    // A registered agent is not held to the registration deadline.
    std::thread::sleep(Duration::from_millis(500));
    still_serving(&h, &mut ok, "h2");
}

#[test]
fn slow_clients_are_cut_at_the_registration_deadline() {
    let h = start(|s| s.timing.register_timeout = Dur::millis(400), &[]);
    let mut ok = Agent::register(&h, 1, "h2");
    // One byte every 50ms: each read succeeds, the whole line never comes in time.
    let mut slow = Agent::connect(&h, 8);
    let line = b"REGISTER slow 127.0.0.8\n";
    for b in &line[..line.len() - 1] {
        if slow.w.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        slow.line(),
        "INVALID registration not completed within 400ms"
    );
    assert!(slow.closed());
    assert_eq!(backend_state(&h, "slow"), None);
    still_serving(&h, &mut ok, "h2");
}

#[test]
fn a_connection_flood_from_one_address_is_refused_beyond_four() {
    let h = start(|s| s.max_pending = 8, &[]);
    let mut ok = Agent::register(&h, 1, "h2");
    let flood: Vec<StdTcp> = (0..64).map(|_| StdTcp::connect(h.addr).unwrap()).collect();
    let mut refused = 0;
    for c in &flood {
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut l = String::new();
        if BufReader::new(c).read_line(&mut l).is_ok()
            && l == "INVALID too many connections from 127.0.0.1, try later\n"
        {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 60,
        "all but 4 from one address are refused at once"
    );
    still_serving(&h, &mut ok, "h2");
    drop(flood);
    // Once the flood is gone, registrations work again.
    eventually("pending slots freed", || {
        let mut probe = Agent::connect(&h, 3);
        probe.send("X");
        probe.line() == "INVALID first token of message (X) is not an option"
    });
    let mut b = Agent::register(&h, 4, "h4");
    still_serving(&h, &mut b, "h4");
}

#[test]
fn wrong_sanity_token_and_taken_names_are_refused() {
    let statics = [BackendSpec::new(
        "s1",
        Ipv4Addr::new(10, 0, 0, 9),
        Default::default(),
    )];
    let h = start(|_| {}, &statics);
    let mut a = Agent::connect(&h, 1);
    a.send("REGISTER h2 127.0.0.1");
    let _ = a.sanity();
    a.send("SANE AAAAAAAAAAAAAAAA");
    assert_eq!(a.line(), "INVALID bad sanity check token");
    assert!(a.closed());
    assert_eq!(backend_state(&h, "h2"), None);

    drop(a);
    let mut a = Agent::connect(&h, 2);
    a.send("REGISTER s1 127.0.0.2");
    assert_eq!(a.line(), "INVALID name \"s1\" is taken by a static backend");
    let mut a = Agent::connect(&h, 3);
    a.send("REGISTER h2 10.0.0.50");
    assert_eq!(
        a.line(),
        "INVALID 10.0.0.50 cannot be a backend's data address"
    );
    assert_eq!(backend_state(&h, "s1"), Some(BackendState::Active));
}

#[test]
fn with_a_secret_only_agents_that_prove_it_join() {
    let secret = Secret::new(b"a shared secret of some length").unwrap();
    let s2 = secret.clone();
    let h = start(move |s| s.secret = Some(s2), &[]);
    // Caplance's agent (no AUTH): refused cleanly.
    let mut a = Agent::connect(&h, 1);
    a.send("REGISTER h2 127.0.0.1");
    assert_eq!(
        a.line(),
        "INVALID authentication required: send AUTH <nonce> first"
    );
    assert!(a.closed());
    drop(a);
    // The wrong secret.
    let nonce = "0123456789abcdef0123456789abcdef";
    let mut a = Agent::connect(&h, 1);
    a.send(&format!("AUTH {nonce}"));
    let ServerMsg::Challenge { nonce: theirs } = ServerMsg::parse(&a.line()).unwrap() else {
        panic!("no challenge")
    };
    let wrong = Secret::new(b"not the shared secret at all").unwrap();
    let ip = a.ip;
    a.send(&format!(
        "REGISTER h2 {ip} {}",
        wrong.register_mac(nonce, &theirs, "h2", ip)
    ));
    assert_eq!(a.line(), "INVALID authentication failed");
    assert!(a.closed());
    assert_eq!(backend_state(&h, "h2"), None);
    drop(a);
    // The right one, and the server proves it too.
    let mut a = Agent::connect(&h, 1);
    a.send(&format!("AUTH {nonce}"));
    let ServerMsg::Challenge { nonce: theirs } = ServerMsg::parse(&a.line()).unwrap() else {
        panic!("no challenge")
    };
    a.send(&format!(
        "REGISTER h2 {ip} {}",
        secret.register_mac(nonce, &theirs, "h2", ip)
    ));
    let token = a.sanity();
    a.send(&format!("SANE {token}"));
    let want = secret.registered_mac(nonce, &theirs, "h2", ip);
    assert_eq!(a.line(), format!("REGISTERED h2 {ip} {want}"));
    still_serving(&h, &mut a, "h2");
}

#[test]
fn without_a_secret_auth_is_refused_cleanly() {
    let h = start(|_| {}, &[]);
    let mut a = Agent::connect(&h, 1);
    a.send("AUTH 0123456789abcdef0123456789abcdef");
    assert_eq!(
        a.line(),
        "INVALID authentication is not configured on this server"
    );
    assert!(a.closed());
}

#[test]
fn the_same_agent_coming_back_replaces_its_old_connection() {
    let h = start(|_| {}, &[]);
    let mut old = Agent::register(&h, 1, "h2");
    old.send("PAUSE");
    assert_eq!(old.line(), "PAUSED h2");
    old.udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut new = Agent::register(&h, 1, "h2");
    assert_eq!(old.line(), "DEREGISTERED h2 replaced by a new registration");
    assert!(old.closed());
    // A new registration starts active.
    still_serving(&h, &mut new, "h2");
}

/// One 23-byte REGISTER naming another host's address made the server send that host 21 SANITY
/// datagrams (a reflection) and could make it a backend (issue 13, case 3): without a secret an
/// agent registers only the address its connection comes from, and nothing is sent elsewhere.
#[test]
fn without_a_secret_an_agent_registers_only_its_own_address() {
    let h = start(|_| {}, &[]);
    let victim = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 9), h.port)).unwrap();
    victim
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut a = Agent::connect(&h, 1);
    a.send("REGISTER h9 127.0.0.9");
    assert_eq!(
        a.line(),
        "INVALID 127.0.0.9 is not the address this connection comes from (127.0.0.1): \
         without a shared secret an agent registers only its own address"
    );
    assert!(a.closed());
    assert!(
        victim.recv(&mut [0u8; 64]).is_err(),
        "a SANITY reached 127.0.0.9"
    );
    assert_eq!(backend_state(&h, "h9"), None);
    // Its own address still registers.
    let mut b = Agent::register(&h, 2, "h2");
    still_serving(&h, &mut b, "h2");
}

/// One REGISTER made the server send 21 SANITY datagrams, one every 500 ms until the deadline
/// (issue 13, case 3): a registration sends at most 6.
#[test]
fn one_registration_sends_at_most_six_sanity_datagrams() {
    let h = start(|s| s.timing.register_timeout = Dur::secs(4), &[]);
    let mut a = Agent::connect(&h, 1);
    a.udp
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    a.send("REGISTER h2 127.0.0.1");
    // Never answer SANE: count what arrives until the server stops sending.
    let mut n = 0;
    while a.udp.recv(&mut [0u8; 64]).is_ok() {
        n += 1;
    }
    assert_eq!(n, 6, "SANITY datagrams for one REGISTER");
    assert_eq!(a.line(), "INVALID registration not completed within 4s");
}

/// 80 idle connections from many addresses, reopened as the server closed them, kept every
/// pending slot full and a re-registering agent out for as long as they went on (issue 13,
/// case 1). Now the oldest handshake makes room: the agent registers while the flood holds.
#[test]
fn idle_connections_from_many_addresses_cannot_keep_an_agent_out() {
    let h = start(|s| s.max_pending = 8, &[]);
    // 3 idle connections from each of 27 addresses, more than the 8 slots.
    let flood: Vec<StdTcp> = (10..37u8)
        .flat_map(|n| (0..3).map(move |_| n))
        .map(|n| connect_from(Ipv4Addr::new(127, 0, 1, n), h.addr))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut a = Agent::register(&h, 2, "h2");
    still_serving(&h, &mut a, "h2");
    // The oldest idle connections were closed to make room: all but the 8 youngest at most.
    let closed = flood
        .iter()
        .filter(|c| {
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            matches!((&**c).read(&mut [0u8; 64]), Ok(0))
        })
        .count();
    assert!(closed >= 81 - 8, "{closed} of 81 idle connections closed");
}
