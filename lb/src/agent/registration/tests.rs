//! The agent's registration against a fake server on loopback that answers exactly as
//! Caplance's server does; no root.

use super::*;
use lb_core::config::Dur;
use lb_core::protocol::ctl::{Refusal, StateAnswer};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream as StdTcp};
use std::path::PathBuf;

struct Fixture {
    listener: TcpListener,
    stats: Arc<Stats>,
    sanity: mpsc::Sender<Sanity>,
    ctl: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(test: &str, secret: Option<Secret>) -> Fixture {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = match listener.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        _ => unreachable!(),
    };
    let dir = std::env::temp_dir().join(format!("lb-agent-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ctl_path = dir.join("agent.sock");
    let mut sock = ctl::bind(&ctl_path, true).unwrap().unwrap();
    let listener_ctl = sock.take();
    std::mem::forget(sock); // the directory is removed with the fixture
    let (tx, rx) = mpsc::channel(8);
    let stop = Arc::new(AtomicBool::new(false));
    let settings = Settings {
        server: Some(server),
        name: "h2".into(),
        data_ip: Ipv4Addr::UNSPECIFIED,
        timing: ControlSection {
            secret_file: None,
            health_interval: Dur::millis(100),
            read_timeout: Dur::secs(2),
            write_timeout: Dur::secs(1),
            register_timeout: Dur::secs(2),
        },
        secret,
        retry_max: Duration::from_millis(200),
    };
    let st = Arc::clone(&stop);
    let stats = Arc::new(Stats::default());
    let thread_stats = Arc::clone(&stats);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new()
            .block_on(&rt, run(settings, listener_ctl, rx, thread_stats, st));
    });
    Fixture {
        listener,
        stats,
        sanity: tx,
        ctl: ctl_path,
        stop,
        thread: Some(thread),
        _dir: TempDir(dir),
    }
}

/// One connection of the fake Caplance server.
struct Peer {
    r: BufReader<StdTcp>,
    w: StdTcp,
}

impl Peer {
    fn accept(f: &Fixture) -> Peer {
        let (w, _) = f.listener.accept().unwrap();
        w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Peer {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        }
    }

    /// The next line that is not a heartbeat (heartbeats are answered like Caplance does).
    fn line(&mut self) -> String {
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).unwrap();
            let l = l.trim_end().to_string();
            if l == "HEALTH 200" {
                self.send("HEALTHACK 200");
                continue;
            }
            return l;
        }
    }

    fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Caplance's server side of a registration.
    fn register(f: &Fixture) -> Peer {
        let mut p = Peer::accept(f);
        assert_eq!(p.line(), "REGISTER h2 127.0.0.1");
        f.sanity
            .blocking_send(("QWERTYUIOPASDFGH".into(), Ipv4Addr::LOCALHOST))
            .unwrap();
        assert_eq!(p.line(), "SANE QWERTYUIOPASDFGH");
        p.send("REGISTERED h2 127.0.0.1");
        p
    }
}

/// The answer to `req` on the agent's ctl socket, typed as `lb ctl` reads it.
fn ctl_answer(path: &std::path::Path, req: &Request) -> Result<ctl::Served, Refusal> {
    let line = ctl::call(path, req).unwrap();
    ctl::parse_answer(req, &line).unwrap()
}

fn ctl_state(f: &Fixture) -> AgentStatus {
    match ctl_answer(&f.ctl, &Request::State) {
        Ok(ctl::Served::State(s)) => match *s {
            StateAnswer::Agent(s) => s,
            other => panic!("not an agent's state: {other:?}"),
        },
        other => panic!("not an agent's state: {other:?}"),
    }
}

fn eventually_state(f: &Fixture, want: AgentState) -> AgentStatus {
    eventually_for(f, want, 300)
}

/// Sends `req` from another thread; its answer's message, or the refusal.
fn ctl_cmd(f: &Fixture, req: Request) -> std::thread::JoinHandle<Result<String, String>> {
    let path = f.ctl.clone();
    std::thread::spawn(move || match ctl_answer(&path, &req) {
        Ok(ctl::Served::Done(d)) => Ok(d.message),
        Ok(other) => panic!("not a message: {other:?}"),
        Err(r) => Err(r.error),
    })
}

#[test]
fn registers_with_a_caplance_server_pauses_and_comes_back_after_a_restart() {
    let f = start("restart", None);
    let mut p = Peer::register(&f);
    let v = eventually_state(&f, AgentState::Active);
    assert_eq!(v.registrations, 1);
    // The beat.
    let mut l = String::new();
    p.r.read_line(&mut l).unwrap();
    assert_eq!(l, "HEALTH 200\n");
    p.send("HEALTHACK 200");

    let pause = ctl_cmd(&f, Request::Pause);
    assert_eq!(p.line(), "PAUSE");
    p.send("PAUSED h2");
    assert!(pause.join().unwrap().is_ok());
    eventually_state(&f, AgentState::Paused);

    // The server goes away; the agent registers again, and stays paused.
    drop(p);
    let mut p = Peer::register(&f);
    assert_eq!(p.line(), "PAUSE");
    p.send("PAUSED h2");
    let v = eventually_state(&f, AgentState::Paused);
    assert_eq!(v.registrations, 2);

    let resume = ctl_cmd(&f, Request::Resume);
    assert_eq!(p.line(), "RESUME");
    p.send("RESUMED h2");
    assert!(resume.join().unwrap().is_ok());
    eventually_state(&f, AgentState::Active);

    let dereg = ctl_cmd(&f, Request::Deregister);
    assert_eq!(p.line(), "DEREGISTER");
    p.send("DEREGISTERED h2 client requested deregistration");
    assert!(dereg.join().unwrap().is_ok());
    eventually_state(&f, AgentState::Unregistered);
    // It stays out.
    f.listener.set_nonblocking(true).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        f.listener.accept().is_err(),
        "registered again after deregister"
    );
}

#[test]
fn a_server_that_deregisters_or_stalls_is_left_and_registered_with_again() {
    let f = start("stall", None);
    let mut p = Peer::register(&f);
    eventually_state(&f, AgentState::Active);
    p.send("DEREGISTERED h2 health check timeout ran out");
    let v = eventually_state(&f, AgentState::Unregistered);
    assert!(
        v.last_error
            .as_deref()
            .unwrap()
            .contains("health check timeout ran out"),
        "{v:?}"
    );
    let p2 = Peer::register(&f);
    eventually_state(&f, AgentState::Active);
    drop(p);
    // A server that stops answering heartbeats (read_timeout 2s) is given up on.
    let v = eventually_for(&f, AgentState::Unregistered, 400);
    assert!(v.last_error.as_deref().unwrap().contains("silent"), "{v:?}");
    drop(p2);
}

fn eventually_for(f: &Fixture, want: AgentState, tries: usize) -> AgentStatus {
    for _ in 0..tries {
        let v = ctl_state(f);
        if v.state == want {
            return v;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never {want:?}: {:?}", ctl_state(f));
}

#[test]
fn with_a_secret_a_caplance_server_refuses_cleanly() {
    let f = start(
        "caplance-auth",
        Some(Secret::new(b"a shared secret of some length").unwrap()),
    );
    let mut p = Peer::accept(&f);
    let l = p.line();
    assert!(l.starts_with("AUTH "), "{l}");
    // What Caplance's server answers to a first line that is not REGISTER.
    p.send("INVALID registration failed");
    drop(p);
    let v = eventually_for(&f, AgentState::Unregistered, 300);
    assert_eq!(
        v.last_error.as_deref(),
        Some("refused: registration failed"),
        "{v:?}"
    );
}

/// A second agent without `--name` looped forever on `refused: name "…" is taken` (issue 13,
/// case 12): a refusal of the first registration that retrying cannot fix ends the agent, with
/// the reason, and stops its data path.
#[test]
fn a_taken_name_at_the_first_registration_ends_the_agent() {
    let mut f = start("taken", None);
    let mut p = Peer::accept(&f);
    assert!(p.line().starts_with("REGISTER h2 "));
    p.send("INVALID name \"h2\" is taken by a static backend");
    let t = f.thread.take().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !t.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(t.is_finished(), "the agent's control plane still retries");
    t.join().unwrap();
    assert!(
        f.stop.load(Ordering::Relaxed),
        "the data path is told to stop"
    );
    let fatal = f.stats.fatal.lock().unwrap().clone().unwrap_or_default();
    assert!(fatal.contains("is taken by a static backend"), "{fatal}");
}
