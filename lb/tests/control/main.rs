//! End-to-end tests of the control plane: `lb server` in h1 with registration on :1338, `lb
//! agent`s registering from h2, h4 and h5, TCP clients in h3, `lb ctl` over each process's
//! socket; metrics and the table fingerprint in `metrics.rs`. Privileged: skipped without root
//! unless LAB_REQUIRE_PRIVILEGED=1.

// An ordinary user's run enters a user namespace of its own before main, so the privileged
// tests run rootless instead of skipping.
lab::rootless_test_binary!();

mod backends;
#[allow(dead_code)]
#[path = "../dataplane/mod.rs"]
mod dataplane;
mod fixture;
#[path = "../harness/mod.rs"]
mod harness;
mod metrics;

use dataplane::Client;
use fixture::*;
use harness::{LB, privileged};
use lab::Process;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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
    let args = SERVER_ARGS;
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
