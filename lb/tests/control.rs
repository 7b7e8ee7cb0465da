//! End-to-end tests of the control plane: `lb server` in h1 with registration on :1338, `lb
//! agent`s registering from h2, h4 and h5, TCP clients in h3, `lb ctl` over each process's
//! socket. Privileged: skipped without root unless LAB_REQUIRE_PRIVILEGED=1.

// An ordinary user's run enters a user namespace of its own before main, so the privileged
// tests run rootless instead of skipping.
lab::rootless_test_binary!();

#[allow(dead_code)]
mod dataplane;
mod harness;

use dataplane::{Client, PORT};
use harness::{LB, privileged, start_lb};
use lab::{Lab, Process};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BACKENDS: [&str; 3] = ["h2", "h4", "h5"];

/// h1 the balancer, h3 the client, h2/h4/h5 backends; VIP 10.0.0.50.
fn up() -> Lab {
    harness::up("single,5")
}

/// A started `lb` and its ctl socket.
struct Lb {
    p: Process,
    sock: PathBuf,
}

impl Lb {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.p.log).unwrap_or_default()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.p.id.pid), sig).unwrap();
    }
}

/// Starts `lb ARGS --ctl-socket <artifacts>/<host>-<name>.sock` in `host`; waits for `ready:`.
fn start(lab: &mut Lab, host: &str, name: &str, args: &[&str]) -> Lb {
    let sock = lab.artifact_dir().join(format!("{host}-{name}.sock"));
    let mut argv: Vec<&str> = args.to_vec();
    argv.extend_from_slice(&["--ctl-socket", sock.to_str().unwrap()]);
    let p = start_lb(lab, host, name, &argv);
    Lb { p, sock }
}

/// `lb ctl --socket S --json ARGS`, parsed.
fn ctl(lb: &Lb, args: &[&str]) -> Value {
    let out = std::process::Command::new(LB)
        .args(["ctl", "--socket", lb.sock.to_str().unwrap(), "--json"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lb ctl {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("lb ctl {args:?}: {e}: {text}"))
}

/// The server's backends by name.
fn backends(server: &Lb) -> BTreeMap<String, Value> {
    ctl(server, &["backends"])["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap().to_string(), b.clone()))
        .collect()
}

/// Polls the server's backends until `f` holds (bounded: 15 s).
fn wait_backends(server: &Lb, what: &str, f: impl Fn(&BTreeMap<String, Value>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let b = backends(server);
        if f(&b) {
            return;
        }
        if Instant::now() > deadline {
            panic!("never: {what}: {b:#?}\nserver log:\n{}", server.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls an agent until it is in `state` after `registrations` registrations (bounded: 10 s).
fn wait_agent(agent: &Lb, state: &str, registrations: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = ctl(agent, &["state"]);
        if st["state"] == state && st["registrations"] == registrations {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent never {state} #{registrations}: {st}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn statuses(b: &BTreeMap<String, Value>) -> BTreeMap<&str, &str> {
    b.iter()
        .map(|(n, v)| (n.as_str(), v["status"].as_str().unwrap_or("?")))
        .collect()
}

fn all_active(b: &BTreeMap<String, Value>, names: &[&str]) -> bool {
    names.iter().all(|n| statuses(b).get(n) == Some(&"active"))
}

/// A TCP server on 0.0.0.0:8080 in `host` (so the balancer's checks reach it on the host's
/// address, and the VIP on lo too), answering each line with `<host>: <line>`. Dropping it
/// closes the listener and every connection: the application dies.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start(lab: &Lab, host: &str) -> Echo {
        let listener = lab
            .run_in(host, || {
                TcpListener::bind(("0.0.0.0", PORT)).expect("bind :8080")
            })
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name) = (Arc::clone(&stop), host.to_string());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let (s, name) = (Arc::clone(&s), name.clone());
                        conns.push(std::thread::spawn(move || serve(c, &name, &s)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

fn serve(c: TcpStream, name: &str, stop: &AtomicBool) {
    c.set_nonblocking(false).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match r.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') => {
                let _ = (&c).write_all(format!("{name}: {line}").as_bytes());
                line.clear();
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `n` short connections from h3; how many each backend answered.
fn spread(lab: &Lab, n: usize) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for i in 0..n {
        let mut c = Client::connect(lab, "h3").unwrap_or_else(|e| panic!("connection {i}: {e}"));
        let who = c
            .ask("hello")
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        *by.entry(who).or_default() += 1;
    }
    by
}

/// Server with registration on 10.0.0.1:1338 and agents on h2, h4, h5 (with echo servers).
struct Setup {
    lab: Lab,
    server: Lb,
    agents: BTreeMap<&'static str, Lb>,
    echos: BTreeMap<&'static str, Echo>,
}

/// An agent's arguments. No `--name`: each lab host has a host name of its own (`h2`), which is
/// the agent's default name. Before that, every lab host had the machine's, so the second agent
/// was refused "name is taken" (issue 13, case 12).
fn agent_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "agent",
        "--vip",
        "10.0.0.50",
        "--server",
        "10.0.0.1",
        "--health-interval",
        "250ms",
        "--read-timeout",
        "1500ms",
    ];
    a.extend_from_slice(extra);
    a
}

fn setup(server_extra: &[&str], agent_extra: &[&str], agents: &[&'static str]) -> Setup {
    let mut lab = up();
    let mut args = vec![
        "server",
        "--vip",
        "10.0.0.50",
        "--control",
        "10.0.0.1",
        "--read-timeout",
        "1500ms",
        // Only checked against read_timeout here: the agents' beat is theirs.
        "--health-interval",
        "250ms",
    ];
    args.extend_from_slice(server_extra);
    let server = start(&mut lab, "h1", "server", &args);
    let mut echos = BTreeMap::new();
    for h in BACKENDS {
        echos.insert(h, Echo::start(&lab, h));
    }
    let mut started = BTreeMap::new();
    for &h in agents {
        started.insert(h, start(&mut lab, h, "agent", &agent_args(agent_extra)));
    }
    wait_backends(&server, "every agent registered and active", |b| {
        all_active(b, agents)
    });
    Setup {
        lab,
        server,
        agents: started,
        echos,
    }
}

#[test]
fn three_agents_register_and_share_300_connections() {
    if !privileged("three_agents_register_and_share_300_connections") {
        return;
    }
    // With the shared secret on, so the authenticated handshake runs for real too.
    let secret = std::env::temp_dir().join(format!("lb-secret-{}", std::process::id()));
    std::fs::write(&secret, "correct horse battery staple\n").unwrap();
    let sf = secret.to_str().unwrap().to_string();
    let s = setup(&["--secret-file", &sf], &["--secret-file", &sf], &BACKENDS);
    let state = ctl(&s.server, &["state"]);
    assert_eq!(state["registered"], 3, "{state}");
    assert_eq!(state["auth"], true, "{state}");
    for (h, a) in &s.agents {
        wait_agent(a, "Active", 1);
        let st = ctl(a, &["state"]);
        assert_eq!(st["state"], "Active", "{h}: {st}");
        assert_eq!(st["data_ip"], format!("10.0.0.{}", &h[1..]), "{h}: {st}");
    }

    let by = spread(&s.lab, 300);
    eprintln!("300 connections: {by:?}");
    assert_eq!(by.values().sum::<usize>(), 300);
    for h in BACKENDS {
        let n = by.get(h).copied().unwrap_or(0);
        // Three equal backends: 100 ± 8 (1σ); under 60 (20%) is out by 5σ.
        assert!(n >= 60, "{h} got {n} of 300: {by:?}");
    }
    // The server's per-backend counters agree with what the clients saw.
    let b = backends(&s.server);
    for h in BACKENDS {
        assert_eq!(b[h]["flows"], by[h] as u64, "{h}: {:?}", b[h]);
        assert!(
            b[h]["packets"].as_u64().unwrap() >= 3 * by[h] as u64,
            "{:?}",
            b[h]
        );
    }

    // Hostile clients on :1338 from h3 while all this runs: garbage, an over-long line, a
    // plain Caplance REGISTER without the secret. Each is answered and closed.
    for payload in [
        &b"\x16\x03\x01garbage\n"[..],
        &[b'X'; 4096][..],
        b"REGISTER evil 10.0.0.3\n",
    ] {
        let c = s
            .lab
            .run_in("h3", || TcpStream::connect(("10.0.0.1", 1338)))
            .unwrap()
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = (&c).write_all(payload);
        let mut l = String::new();
        BufReader::new(&c).read_line(&mut l).unwrap();
        assert!(l.starts_with("INVALID "), "{l:?}");
    }
    let b = backends(&s.server);
    assert!(all_active(&b, &BACKENDS), "{b:#?}");
    assert_eq!(spread(&s.lab, 10).values().sum::<usize>(), 10);
    std::fs::remove_file(&secret).unwrap();
    let log = std::fs::read_to_string(&s.server.p.log).unwrap_or_default();
    assert!(!log.contains("unauthenticated"), "{log}");
}

/// Without a secret anyone who reaches :1338 can register a backend: the server says so loudly
/// at start (issue 13, case 3, its first part).
#[test]
fn registration_without_a_secret_is_announced_as_unauthenticated() {
    if !privileged("registration_without_a_secret_is_announced_as_unauthenticated") {
        return;
    }
    let s = setup(&[], &[], &["h2"]);
    let log = std::fs::read_to_string(&s.server.p.log).unwrap_or_default();
    assert!(
        log.contains("registration on 10.0.0.1:1338 is unauthenticated: any host that reaches it"),
        "{log}"
    );
}

#[test]
fn a_paused_backend_keeps_its_connections_and_gets_no_new_ones() {
    if !privileged("a_paused_backend_keeps_its_connections_and_gets_no_new_ones") {
        return;
    }
    let s = setup(&[], &[], &BACKENDS);
    let mut long: Vec<(Client, String)> = (0..30)
        .map(|_| {
            let mut c = Client::connect(&s.lab, "h3").unwrap();
            let who = c.ask("first").unwrap();
            (c, who)
        })
        .collect();
    let on_h2 = long.iter().filter(|(_, w)| w == "h2").count();
    assert!(on_h2 > 0, "no long-lived connection on h2");

    let answer = ctl(&s.agents["h2"], &["pause"]);
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(ctl(&s.agents["h2"], &["state"])["state"], "Paused");
    assert_eq!(backends(&s.server)["h2"]["status"], "paused");
    // PAUSED is answered once every data path applied it: no wait needed.
    let by = spread(&s.lab, 60);
    assert_eq!(
        by.get("h2"),
        None,
        "new flows reached the paused backend: {by:?}"
    );
    assert_eq!(by.values().sum::<usize>(), 60);
    for (c, who) in &mut long {
        assert_eq!(&c.ask("still there?").unwrap(), who);
    }
    let b = backends(&s.server);
    assert!(
        b["h2"]["tracked"].as_u64().unwrap() >= on_h2 as u64,
        "{:?}",
        b["h2"]
    );

    assert_eq!(ctl(&s.agents["h2"], &["resume"])["ok"], true);
    assert_eq!(backends(&s.server)["h2"]["status"], "active");
    let by = spread(&s.lab, 60);
    assert!(by.get("h2").copied().unwrap_or(0) > 0, "{by:?}");
}

#[test]
fn a_killed_agent_is_deregistered_after_the_timeout() {
    if !privileged("a_killed_agent_is_deregistered_after_the_timeout") {
        return;
    }
    use nix::sys::signal::Signal;
    let s = setup(&[], &[], &BACKENDS);
    // A hung agent (stopped: its connection stays open, silent) is dropped after the
    // server's read timeout (1.5 s here).
    s.agents["h4"].signal(Signal::SIGSTOP);
    wait_backends(&s.server, "h4 deregistered", |b| !b.contains_key("h4"));
    assert!(
        s.server.log().contains("no word for 1.5s: deregistered"),
        "{}",
        s.server.log()
    );
    // A killed agent's kernel closes the connection: dropped at once.
    s.agents["h5"].signal(Signal::SIGKILL);
    wait_backends(&s.server, "h5 deregistered", |b| !b.contains_key("h5"));
    assert!(
        s.server
            .log()
            .contains("control connection closed: deregistered")
    );
    let by = spread(&s.lab, 30);
    assert_eq!(by.get("h2"), Some(&30), "{by:?}");
    // The hung agent wakes up, learns it was dropped, and registers again.
    s.agents["h4"].signal(Signal::SIGCONT);
    wait_backends(&s.server, "h4 registered again", |b| {
        statuses(b).get("h4") == Some(&"active")
    });
    // The server adds the backend before it writes REGISTERED: the agent may lag a little.
    wait_agent(&s.agents["h4"], "Active", 2);
    drop(s.echos);
}

#[test]
fn a_killed_application_is_removed_by_the_active_check() {
    if !privileged("a_killed_application_is_removed_by_the_active_check") {
        return;
    }
    let mut s = setup(
        &[
            "--check-port",
            "8080",
            "--check-interval",
            "200ms",
            "--check-timeout",
            "200ms",
            "--check-fall",
            "2",
            "--check-rise",
            "2",
        ],
        &[],
        &BACKENDS,
    );
    let b = backends(&s.server);
    assert!(b.values().all(|v| v["health"] == "up"), "{b:#?}");
    drop(s.echos.remove("h2"));
    wait_backends(&s.server, "h2 down", |b| {
        b.get("h2")
            .is_some_and(|v| v["health"] == "down" && v["status"] == "down")
    });
    // The agent still beats: it is registered, only its application is gone.
    assert_eq!(ctl(&s.agents["h2"], &["state"])["state"], "Active");
    let err = backends(&s.server)["h2"]["last_check_error"].clone();
    assert!(err.as_str().unwrap().contains("10.0.0.2:8080"), "{err}");
    let by = spread(&s.lab, 40);
    assert_eq!(by.get("h2"), None, "{by:?}");
    assert_eq!(by.values().sum::<usize>(), 40);
    // The application comes back: after `rise` good checks, so does the backend.
    s.echos.insert("h2", Echo::start(&s.lab, "h2"));
    wait_backends(&s.server, "h2 up again", |b| {
        b.get("h2").is_some_and(|v| v["status"] == "active")
    });
    let by = spread(&s.lab, 60);
    assert!(by.get("h2").copied().unwrap_or(0) > 0, "{by:?}");
}

#[test]
fn adding_a_backend_breaks_no_long_lived_connection_and_drain_keeps_them() {
    if !privileged("adding_a_backend_breaks_no_long_lived_connection_and_drain_keeps_them") {
        return;
    }
    let mut s = setup(&[], &[], &["h2", "h4"]);
    let mut long: Vec<(Client, String)> = (0..40)
        .map(|_| {
            let mut c = Client::connect(&s.lab, "h3").unwrap();
            let who = c.ask("first").unwrap();
            (c, who)
        })
        .collect();
    let h5 = start(&mut s.lab, "h5", "agent", &agent_args(&[]));
    s.agents.insert("h5", h5);
    wait_backends(&s.server, "h5 joined", |b| all_active(b, &BACKENDS));
    // Maglev moves about a third of the hash space to h5; the connection table keeps every
    // established flow where it was.
    for (i, (c, who)) in long.iter_mut().enumerate() {
        assert_eq!(&c.ask("after h5 joined").unwrap(), who, "connection {i}");
    }
    let by = spread(&s.lab, 60);
    assert!(by.get("h5").copied().unwrap_or(0) > 0, "{by:?}");

    // An operator drains h4 on the server: no new flows, established ones stay.
    let on_h4 = long.iter().filter(|(_, w)| w == "h4").count();
    assert!(on_h4 > 0);
    let a = ctl(&s.server, &["drain", "h4", "--deadline", "60s"]);
    assert_eq!(a["ok"], true, "{a}");
    let b = backends(&s.server);
    assert_eq!(b["h4"]["status"], "draining");
    assert!(
        b["h4"]["tracked"].as_u64().unwrap() >= on_h4 as u64,
        "{:?}",
        b["h4"]
    );
    let by = spread(&s.lab, 60);
    assert_eq!(by.get("h4"), None, "{by:?}");
    for (i, (c, who)) in long.iter_mut().enumerate() {
        assert_eq!(&c.ask("while h4 drains").unwrap(), who, "connection {i}");
    }
    assert_eq!(ctl(&s.server, &["undrain", "h4"])["ok"], true);
    assert_eq!(backends(&s.server)["h4"]["status"], "active");
    // A drain whose deadline passes takes the backend down: its flows move.
    ctl(&s.server, &["drain", "h4", "--deadline", "200ms"]);
    wait_backends(&s.server, "h4 drained", |b| b["h4"]["status"] == "drained");
}

#[test]
fn ctl_errors_name_what_was_wrong() {
    if !privileged("ctl_errors_name_what_was_wrong") {
        return;
    }
    let s = setup(&[], &[], &["h2"]);
    let out = std::process::Command::new(LB)
        .args([
            "ctl",
            "--socket",
            s.server.sock.to_str().unwrap(),
            "drain",
            "nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim(), "lb: ctl: drain: no backend named \"nope\"");
    // Human output by default.
    let out = std::process::Command::new(LB)
        .args([
            "ctl",
            "--socket",
            s.server.sock.to_str().unwrap(),
            "backends",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.lines().nth(1).unwrap().starts_with("h2"), "{text}");
    let out = std::process::Command::new(LB)
        .args(["ctl", "--socket", "/nonexistent/lb.sock", "state"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach /nonexistent/lb.sock"));
}

#[test]
fn agents_register_again_when_the_server_restarts() {
    if !privileged("agents_register_again_when_the_server_restarts") {
        return;
    }
    let mut s = setup(&[], &[], &["h2", "h4"]);
    let args = [
        "server",
        "--vip",
        "10.0.0.50",
        "--control",
        "10.0.0.1",
        "--read-timeout",
        "1500ms",
        "--health-interval",
        "250ms",
    ];
    s.lab.stop(&s.server.p).unwrap();
    for a in s.agents.values() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ctl(a, &["state"])["state"] == "Active" {
            assert!(
                Instant::now() < deadline,
                "agent never noticed the server left"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let server = start(&mut s.lab, "h1", "server2", &args);
    wait_backends(&server, "both agents back", |b| {
        all_active(b, &["h2", "h4"])
    });
    for a in s.agents.values() {
        wait_agent(a, "Active", 2);
    }
    let by = spread(&s.lab, 40);
    assert_eq!(by.values().sum::<usize>(), 40, "{by:?}");
}

/// Peak resident memory (VmHWM) of `p`.
fn peak_rss_kib(p: &Process) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", p.id.pid))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_flood_of_hostile_clients_leaves_memory_bounded_and_backends_registered() {
    if !privileged("a_flood_of_hostile_clients_leaves_memory_bounded_and_backends_registered") {
        return;
    }
    let s = setup(&["--register-timeout", "500ms"], &[], &["h2", "h4"]);
    let before = peak_rss_kib(&s.server.p);
    let mut answered = BTreeMap::<String, usize>::new();
    // 20 waves of 50 clients, each pushing up to 256 KiB without a newline (12.5 MiB a wave,
    // 250 MiB in all). The server reads at most one line's worth (512 bytes) of each and
    // closes, so a server that buffered lines would peak far above the bound below.
    let blob = vec![b'A'; 256 * 1024];
    for _ in 0..20 {
        let conns: Vec<TcpStream> = (0..50)
            .filter_map(|_| {
                s.lab
                    .run_in("h3", || TcpStream::connect(("10.0.0.1", 1338)))
                    .unwrap()
                    .ok()
            })
            .collect();
        for c in &conns {
            c.set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let _ = (&*c).write_all(&blob);
        }
        for c in &conns {
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut l = String::new();
            let _ = BufReader::new(c).read_line(&mut l);
            let kind = l.split(" (").next().unwrap_or("").trim().to_string();
            *answered.entry(kind).or_default() += 1;
        }
    }
    let after = peak_rss_kib(&s.server.p);
    eprintln!("peak RSS {before} KiB -> {after} KiB; answers {answered:?}");
    // Every client got an error line: too long, or refused while its address (h3) already
    // had 4 handshakes under way.
    assert_eq!(answered.values().sum::<usize>(), 1000, "{answered:?}");
    assert!(
        answered.keys().all(|k| k == "INVALID line too long"
            || k == "INVALID too many connections from 10.0.0.3, try later"),
        "{answered:?}"
    );
    assert!(
        after < before + 8 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    let b = backends(&s.server);
    assert!(all_active(&b, &["h2", "h4"]), "{b:#?}");
    assert_eq!(spread(&s.lab, 20).values().sum::<usize>(), 20);
}

#[test]
fn static_and_registered_backends_serve_together() {
    if !privileged("static_and_registered_backends_serve_together") {
        return;
    }
    // h5 is a static backend: an agent that does not register, listed with --backend.
    let mut s = setup(&["--backend", "h5=10.0.0.5"], &[], &["h2", "h4"]);
    let plain = start(
        &mut s.lab,
        "h5",
        "agent",
        &["agent", "--vip", "10.0.0.50", "--balancer", "10.0.0.1"],
    );
    assert_eq!(ctl(&plain, &["state"])["state"], "Unregistered");
    let b = backends(&s.server);
    assert_eq!(b["h5"]["origin"], "static", "{b:#?}");
    assert_eq!(b["h2"]["origin"], "agent", "{b:#?}");
    assert!(all_active(&b, &BACKENDS), "{b:#?}");
    let by = spread(&s.lab, 90);
    for h in BACKENDS {
        assert!(by.get(h).copied().unwrap_or(0) > 0, "{h}: {by:?}");
    }
    // An agent cannot take the static backend's name: refused at its first registration, it
    // ends with the reason and exit status 2 instead of retrying forever (issue 13, case 12).
    let thief = start(
        &mut s.lab,
        "h3",
        "thief",
        &agent_args(&["--name", "h5", "--listen", "10.0.0.3:1337"]),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = s.lab.exit_status(&thief.p) {
            break st;
        }
        assert!(Instant::now() < deadline, "the thief still runs");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(&thief.p.log).unwrap_or_default();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("taken by a static backend"), "{log}");
    assert_eq!(backends(&s.server)["h5"]["addr"], "10.0.0.5");
}

/// `curl -sS -i URL` in `host` (a real scrape, as Prometheus makes it): (status line, headers
/// lower-cased, body).
fn curl(lab: &Lab, host: &str, args: &[&str]) -> (String, String, String) {
    let out = lab
        .run_in(host, || {
            std::process::Command::new("curl")
                .args(["-sS", "-i", "--max-time", "5"])
                .args(args)
                .output()
        })
        .unwrap()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

/// Samples by metric name: the (labels, value) of each.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// The samples of an exposition, read by a Prometheus text-format parser.
fn scrape(text: &str) -> Samples {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let mut by = BTreeMap::<String, Vec<_>>::new();
    for s in parsed.samples {
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("{}: not a counter or gauge: {other:?}", s.metric),
        };
        let labels = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        by.entry(s.metric).or_default().push((labels, value));
    }
    by
}

/// The value of `metric` whose labels include `with`.
fn sample(m: &Samples, metric: &str, with: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = m
        .get(metric)
        .unwrap_or_else(|| panic!("no {metric} in {m:#?}"))
        .iter()
        .filter(|(l, _)| {
            with.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "{metric} {with:?}: {found:?}");
    found[0]
}

#[test]
fn metrics_are_scraped_over_http_and_printed_by_lb_ctl() {
    if !lab::testing::privileged_with(
        "metrics_are_scraped_over_http_and_printed_by_lb_ctl",
        "curl",
    ) {
        return;
    }
    let s = setup(&["--metrics", "10.0.0.1:9100"], &[], &["h2", "h4"]);
    assert!(
        s.server
            .log()
            .contains("metrics http://10.0.0.1:9100/metrics"),
        "{}",
        s.server.log()
    );
    let by = spread(&s.lab, 30);
    let (status, headers, body) = curl(&s.lab, "h3", &["http://10.0.0.1:9100/metrics"]);
    assert_eq!(status, "HTTP/1.1 200 OK", "{headers}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{headers}"
    );
    eprintln!("{body}");
    let m = scrape(&body);
    // Per backend, what the clients saw; the registrations; the queue; the table's fingerprint
    // as `lb ctl state` shows it.
    for h in ["h2", "h4"] {
        let flows = sample(&m, "lb_backend_flows_total", &[("backend", h)]);
        assert_eq!(flows, by.get(h).copied().unwrap_or(0) as f64, "{h}: {by:?}");
        assert!(sample(&m, "lb_backend_packets_total", &[("backend", h)]) >= 3.0 * flows);
        assert_eq!(
            sample(
                &m,
                "lb_backend_status",
                &[("backend", h), ("status", "active")]
            ),
            1.0
        );
        assert_eq!(
            sample(
                &m,
                "lb_backend_status",
                &[("backend", h), ("status", "down")]
            ),
            0.0
        );
    }
    assert_eq!(sample(&m, "lb_registrations_total", &[]), 2.0);
    assert_eq!(sample(&m, "lb_registered_backends", &[]), 2.0);
    for cause in ["queue_full", "socket_full"] {
        assert_eq!(
            sample(
                &m,
                "lb_queue_dropped_packets_total",
                &[("queue", "0"), ("cause", cause)]
            ),
            0.0
        );
    }
    let state = ctl(&s.server, &["state"]);
    let print = state["table_fingerprint"].as_str().expect("a fingerprint");
    assert_eq!(print.len(), 16, "{state}");
    assert_eq!(
        sample(&m, "lb_table_fingerprint_info", &[("fingerprint", print)]),
        1.0
    );
    assert!(sample(&m, "lb_received_packets_total", &[]) >= 90.0);

    // `lb ctl metrics` prints the same families.
    let out = std::process::Command::new(LB)
        .args([
            "ctl",
            "--socket",
            s.server.sock.to_str().unwrap(),
            "metrics",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let by_ctl = scrape(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        by_ctl.keys().collect::<Vec<_>>(),
        m.keys().collect::<Vec<_>>()
    );

    // Anything but GET /metrics is refused, with the status saying why.
    let (status, _, body) = curl(&s.lab, "h3", &["http://10.0.0.1:9100/"]);
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{body}");
    let (status, headers, _) = curl(
        &s.lab,
        "h3",
        &["-X", "POST", "http://10.0.0.1:9100/metrics"],
    );
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("allow: get, head"), "{headers}");
}

#[test]
fn balancers_with_the_same_backends_and_key_show_one_table_fingerprint() {
    if !privileged("balancers_with_the_same_backends_and_key_show_one_table_fingerprint") {
        return;
    }
    let mut lab = up();
    let args = |key: &'static str| {
        [
            "server",
            "--vip",
            "10.0.0.50",
            "--backend",
            "h2=10.0.0.2",
            "--backend",
            "h4=10.0.0.4",
            "--hash-key",
            key,
        ]
    };
    let a = start(&mut lab, "h1", "a", &args("one key"));
    let b = start(&mut lab, "h3", "b", &args("one key"));
    let c = start(&mut lab, "h5", "c", &args("another key"));
    let print = |lb: &Lb| {
        ctl(lb, &["state"])["table_fingerprint"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(print(&a), print(&b));
    assert_ne!(print(&a), print(&c), "another key, another table");
    // A drain on one balancer only: they disagree until it ends.
    let agreed = print(&a);
    ctl(&a, &["drain", "h4"]);
    assert_ne!(print(&a), print(&b));
    ctl(&a, &["undrain", "h4"]);
    assert_eq!(print(&a), agreed);
}
