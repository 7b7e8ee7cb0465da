//! What the control-plane tests share: a lab (h1 the balancer, h3 the client, h2/h4/h5
//! backends), `lb` processes with their ctl sockets, echo servers, and a server with agents.

use crate::dataplane::{Client, PORT};
use crate::harness::{self, start_lb};
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

pub(crate) const BACKENDS: [&str; 3] = ["h2", "h4", "h5"];

/// h1 the balancer, h3 the client, h2/h4/h5 backends; VIP 10.0.0.50.
pub(crate) fn up() -> Lab {
    harness::up("single,5")
}

/// A started `lb` and its ctl socket.
pub(crate) struct Lb {
    pub(crate) p: Process,
    pub(crate) sock: PathBuf,
}

impl Lb {
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.p.log).unwrap_or_default()
    }

    pub(crate) fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.p.id.pid), sig).unwrap();
    }
}

/// Starts `lb ARGS --ctl-socket <artifacts>/<host>-<name>.sock` in `host`; waits for `ready:`.
pub(crate) fn start(lab: &mut Lab, host: &str, name: &str, args: &[&str]) -> Lb {
    let sock = lab.artifact_dir().join(format!("{host}-{name}.sock"));
    let mut argv: Vec<&str> = args.to_vec();
    argv.extend_from_slice(&["--ctl-socket", sock.to_str().unwrap()]);
    let p = start_lb(lab, host, name, &argv);
    Lb { p, sock }
}

/// `lb ctl --socket S --json ARGS`, parsed.
pub(crate) fn ctl(lb: &Lb, args: &[&str]) -> Value {
    let out = std::process::Command::new(crate::harness::LB)
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
pub(crate) fn backends(server: &Lb) -> BTreeMap<String, Value> {
    ctl(server, &["backends"])["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap().to_string(), b.clone()))
        .collect()
}

/// Polls the server's backends until `f` holds (bounded: 15 s).
pub(crate) fn wait_backends(server: &Lb, what: &str, f: impl Fn(&BTreeMap<String, Value>) -> bool) {
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
pub(crate) fn wait_agent(agent: &Lb, state: &str, registrations: u64) {
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

pub(crate) fn statuses(b: &BTreeMap<String, Value>) -> BTreeMap<&str, &str> {
    b.iter()
        .map(|(n, v)| (n.as_str(), v["status"].as_str().unwrap_or("?")))
        .collect()
}

pub(crate) fn all_active(b: &BTreeMap<String, Value>, names: &[&str]) -> bool {
    names.iter().all(|n| statuses(b).get(n) == Some(&"active"))
}

/// A TCP server on 0.0.0.0:8080 in `host` (so the balancer's checks reach it on the host's
/// address, and the VIP on lo too), answering each line with `<host>: <line>`. Dropping it
/// closes the listener and every connection: the application dies.
pub(crate) struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    pub(crate) fn start(lab: &Lab, host: &str) -> Echo {
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

pub(crate) fn serve(c: TcpStream, name: &str, stop: &AtomicBool) {
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
pub(crate) fn spread(lab: &Lab, n: usize) -> BTreeMap<String, usize> {
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
pub(crate) struct Setup {
    pub(crate) lab: Lab,
    pub(crate) server: Lb,
    pub(crate) agents: BTreeMap<&'static str, Lb>,
    pub(crate) echos: BTreeMap<&'static str, Echo>,
}

/// An agent's arguments. No `--name`: each lab host has a host name of its own (`h2`), which is
/// the agent's default name. Before that, every lab host had the machine's, so the second agent
/// was refused "name is taken" (issue 13, case 12).
pub(crate) fn agent_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
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

/// The server of these tests: registration on 10.0.0.1:1338, agents cut after 1.5 s of silence.
pub(crate) const SERVER_ARGS: [&str; 9] = [
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

pub(crate) fn setup(server_extra: &[&str], agent_extra: &[&str], agents: &[&'static str]) -> Setup {
    let mut lab = up();
    let mut args = SERVER_ARGS.to_vec();
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
