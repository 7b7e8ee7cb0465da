//! The `native` backend builds networks from namespaces, veth and bridges on the running kernel
//! (a [`Lab`]), and runs a scenario's programs inside its hosts: the `lb` binary and commands as
//! real processes, listeners, telnet, bursts and the NFQUEUE holder as threads whose sockets were
//! created inside the host's namespace.

pub mod conns;
pub mod conntrack;
pub mod holder;
pub mod tasks;

use super::{
    Backend, BurstSpec, CaptureSpec, ConnectionsSpec, ConntrackReading, Counters, ExecResult,
    ExecSpec, ListenerStats, Network, Probe, Program, Started, StopSignal, TelnetResult,
    TelnetSpec,
};
use crate::cancel::{cancelled, pause};
use crate::capture::{Capture, CaptureConfig, CapturePoint, Frame};
use crate::error::LabError;
use crate::kernel::KernelVersion;
use crate::lab::{Builder, Lab, LabOptions, Process};
use crate::resolve::Plan;
use conns::ConnStats;
use holder::{HolderStats, nfq_holder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tasks::{Log, Task, TelnetPlan};

/// Networks of namespaces on the running kernel.
#[derive(Debug, Clone, Default)]
pub struct Native {
    /// The `lb` binary; found next to the running executable when `None` (or `LB_BIN`).
    pub lb_bin: Option<PathBuf>,
    /// Who builds each network: lab itself, or Mininet (the `mininet` backend). Either way
    /// the result is a [`Lab`] of named namespaces, and everything after the build is the same.
    pub builder: Builder,
}

impl Backend for Native {
    fn name(&self) -> &'static str {
        match self.builder {
            Builder::Native => "native",
            Builder::Mininet(_) => "mininet",
        }
    }

    fn kernel(&self) -> KernelVersion {
        KernelVersion::running()
    }

    fn build(&self, plan: &Plan, hint: &str) -> Result<Box<dyn Network>, String> {
        let mut lab = None;
        for attempt in 0..5 {
            let opts = LabOptions {
                name: Some(lab_name(hint, attempt)),
                persistent: false,
                builder: self.builder,
            };
            match Lab::up(plan.clone(), &opts) {
                Ok(l) => {
                    lab = Some(l);
                    break;
                }
                Err(LabError::NameTaken(_)) => continue,
                Err(e) => return Err(format!("cannot create the lab: {e}")),
            }
        }
        let lab = lab.ok_or("cannot find a free lab name")?;
        // The lab guard removes the namespaces if waiting fails.
        tasks::wait_links_up(&lab, Duration::from_secs(5))?;
        Ok(Box::new(NativeNetwork {
            lab,
            lb_bin: self.lb_bin.clone(),
            t0: Instant::now(),
            processes: HashMap::new(),
            listeners: HashMap::new(),
            holders: HashMap::new(),
            groups: HashMap::new(),
            captures: Vec::new(),
            watcher: None,
            last_frame: Arc::new(Mutex::new(Instant::now())),
        }))
    }
}

/// A lab and what a scenario started in it.
pub struct NativeNetwork {
    lab: Lab,
    lb_bin: Option<PathBuf>,
    t0: Instant,
    processes: HashMap<String, Process>,
    listeners: HashMap<String, Task<ListenerStats>>,
    holders: HashMap<String, Task<HolderStats>>,
    groups: HashMap<String, Task<ConnStats>>,
    captures: Vec<Capture>,
    watcher: Option<JoinHandle<()>>,
    last_frame: Arc<Mutex<Instant>>,
}

impl NativeNetwork {
    fn log(&self, host: &str, name: &str) -> Result<(Log, PathBuf), String> {
        let path = self.lab.artifact_dir().join(format!("{host}-{name}.log"));
        let log = Log::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((log, path))
    }

    fn process(&self, name: &str) -> Result<&Process, String> {
        self.processes
            .get(name)
            .ok_or_else(|| format!("no process named `{name}` was started"))
    }

    fn spawn(&mut self, host: &str, name: &str, argv: &[String]) -> Result<Started, String> {
        let p = self
            .lab
            .spawn(host, name, argv)
            .map_err(|e| e.to_string())?;
        let log = p.log.clone();
        self.processes.insert(name.to_string(), p);
        Ok(Started {
            detail: "started".into(),
            log: Some(log),
        })
    }
}

impl Network for NativeNetwork {
    fn name(&self) -> &str {
        self.lab.name()
    }

    fn artifact_dir(&self) -> &Path {
        self.lab.artifact_dir()
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn sleep(&mut self, d: Duration) -> bool {
        pause(d)
    }

    fn arm_captures(&mut self, points: &[CaptureSpec]) -> Result<(), String> {
        let (tx, rx) = mpsc::channel::<Frame>();
        for c in points {
            let iface = c.interface.clone();
            let cap = self
                .lab
                .capture_socket(&c.host, iface.as_deref())
                .and_then(|sock| {
                    Capture::from_socket(
                        sock,
                        CaptureConfig::new(&c.host, c.interface.as_deref()).live(tx.clone()),
                    )
                    .map_err(|e| e.to_string())
                });
            self.captures
                .push(cap.map_err(|e| format!("cannot capture on {}: {e}", c.host))?);
        }
        drop(tx);
        *self.last_frame.lock().map_err(|e| e.to_string())? = Instant::now();
        let last = Arc::clone(&self.last_frame);
        self.watcher = Some(std::thread::spawn(move || {
            for _ in rx {
                if let Ok(mut l) = last.lock() {
                    *l = Instant::now();
                }
            }
        }));
        Ok(())
    }

    fn captures_quiet(&self) -> Duration {
        self.last_frame
            .lock()
            .map(|l| l.elapsed())
            .unwrap_or_default()
    }

    fn collect_captures(&mut self) -> Result<Vec<CapturePoint>, String> {
        let mut points = Vec::new();
        let mut failed = None;
        for cap in self.captures.drain(..) {
            match cap.stop() {
                Ok(p) => points.push(p),
                Err(e) => {
                    failed.get_or_insert(format!("capture failed: {e}"));
                }
            }
        }
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        failed.map_or(Ok(points), Err)
    }

    fn start(&mut self, host: &str, name: &str, program: &Program) -> Result<Started, String> {
        match program {
            Program::Lb { args } => {
                let lb = find_lb(self.lb_bin.as_deref())?;
                let mut argv = vec![lb.display().to_string()];
                argv.extend(args.iter().cloned());
                self.spawn(host, name, &argv)
            }
            Program::Command { argv } => self.spawn(host, name, argv),
            Program::TcpListener { addr, reply } => {
                let (log, path) = self.log(host, name)?;
                let t = tasks::tcp_listener(&self.lab, host, name, *addr, reply.clone(), log)?;
                self.listeners.insert(name.to_string(), t);
                Ok(Started {
                    detail: format!("listening on {addr}"),
                    log: Some(path),
                })
            }
            Program::UdpListener { addr } => {
                let (log, path) = self.log(host, name)?;
                let t = tasks::udp_listener(&self.lab, host, name, *addr, log)?;
                self.listeners.insert(name.to_string(), t);
                Ok(Started {
                    detail: format!("bound to {addr}"),
                    log: Some(path),
                })
            }
            Program::TcpEcho { addr } => {
                let (log, path) = self.log(host, name)?;
                let t = conns::tcp_echo(&self.lab, host, name, *addr, log)?;
                self.listeners.insert(name.to_string(), t);
                Ok(Started {
                    detail: format!("echoing on {addr}"),
                    log: Some(path),
                })
            }
            Program::NfqHolder(spec) => {
                let (log, path) = self.log(host, name)?;
                let t = nfq_holder(&self.lab, host, name, *spec, log)?;
                self.holders.insert(name.to_string(), t);
                Ok(Started {
                    detail: format!("queue {} bound", spec.queue),
                    log: Some(path),
                })
            }
        }
    }

    fn probe(&mut self, host: &str, probe: &Probe) -> Result<bool, String> {
        match probe {
            Probe::Listening { proto, addr } => self
                .lab
                .run_in(host, || tasks::is_listening(*proto, *addr))
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{host}: reading sockets: {e}")),
            Probe::QueueBound { queue } => {
                let bound = self
                    .lab
                    .run_in(host, tasks::bound_queues)
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("{host}: reading nfnetlink_queue: {e}"))?;
                Ok(bound.contains(queue))
            }
        }
    }

    fn output(&self, name: &str) -> Result<String, String> {
        let p = self.process(name)?;
        Ok(std::fs::read_to_string(&p.log).unwrap_or_default())
    }

    fn exit_status(&mut self, name: &str) -> Option<String> {
        let p = self.processes.get(name)?.clone();
        self.lab.exit_status(&p).map(|s| s.to_string())
    }

    fn signal(&mut self, name: &str, signal: StopSignal) -> Result<(), String> {
        let p = self.process(name)?;
        let sig = match signal {
            StopSignal::Term => nix::sys::signal::Signal::SIGTERM,
            StopSignal::Int => nix::sys::signal::Signal::SIGINT,
            StopSignal::Kill => nix::sys::signal::Signal::SIGKILL,
        };
        if p.id.alive() {
            // The process group: the process and anything it started.
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(p.id.pid), sig);
        }
        Ok(())
    }

    fn listener(&self, name: &str) -> Result<ListenerStats, String> {
        self.listeners
            .get(name)
            .map(|t| t.stats())
            .ok_or_else(|| format!("no listener named `{name}` was started"))
    }

    fn telnet(&mut self, host: &str, spec: &TelnetSpec) -> Result<TelnetResult, String> {
        let plan = TelnetPlan {
            send: spec.send.clone(),
            wait_reply: spec.wait_reply,
        };
        let listener = match &spec.server {
            Some(l) => Some((
                l,
                self.listeners
                    .get(l)
                    .ok_or_else(|| format!("no listener named `{l}` was started"))?,
            )),
            None => None,
        };
        let before = listener.map(|(_, t)| t.stats());
        tasks::telnet(
            &self.lab,
            host,
            spec.addr,
            &plan,
            spec.timeout,
            |left| match (listener, &before) {
                (Some((l, t)), Some(b)) => {
                    match t.wait_for(left, |s| s.connections > b.connections) {
                        (_, true) => Ok(()),
                        _ => Err(format!(
                            "connected, but `{l}` did not accept the connection"
                        )),
                    }
                }
                _ => Ok(()),
            },
            |left| match (listener, &before) {
                (Some((l, t)), Some(b)) => {
                    match t.wait_for(left, |s| s.replies_acked > b.replies_acked) {
                        (_, true) => Ok(()),
                        _ => Err(format!("`{l}` did not see its reply acknowledged")),
                    }
                }
                _ => Ok(()),
            },
        )
    }

    fn udp_burst(&mut self, host: &str, spec: &BurstSpec) -> Result<usize, String> {
        tasks::udp_burst(
            &self.lab,
            host,
            spec.to,
            spec.source_port,
            spec.count,
            spec.interval,
            &spec.payload,
        )
    }

    fn exec(&mut self, host: &str, name: &str, spec: &ExecSpec) -> Result<ExecResult, String> {
        let argv = &spec.argv;
        let path = self.lab.artifact_dir().join(format!("{host}-{name}.log"));
        let out = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        // `lb` is the workspace's, found as `start = "lb"` finds it (`exec = ["lb", "ctl", …]`).
        let program = match argv[0].as_str() {
            "lb" => find_lb(self.lb_bin.as_deref())?.display().to_string(),
            other => other.to_string(),
        };
        let mut cmd = self
            .lab
            .command(host, &program)
            .map_err(|e| e.to_string())?;
        let mut child = cmd
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run `{}` in {host}: {e}", argv.join(" ")))?;
        let end = Instant::now() + spec.timeout;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break Some(s);
            }
            if Instant::now() >= end || cancelled() {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(ExecResult {
            finished: status.is_some(),
            code: status.and_then(|s| s.code()),
            ended: status.map_or_else(|| "did not finish".into(), |s| s.to_string()),
            output: std::fs::read_to_string(&path).unwrap_or_default(),
            log: Some(path),
        })
    }

    fn impair(
        &mut self,
        link: usize,
        way: crate::impair::Way,
        imp: &crate::impair::Impairment,
    ) -> Result<(), String> {
        crate::impair::apply::set_way(&mut self.lab, link, way, imp).map_err(|e| e.to_string())
    }

    fn nfqueue(&mut self, host: &str, queue: u16) -> Result<Counters, String> {
        let all = self
            .lab
            .run_in(host, nfqueue::QueueStats::read_all)
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{host}: /proc/net/netfilter/nfnetlink_queue: {e}"))?;
        let q = all
            .iter()
            .find(|q| q.queue_num == queue)
            .ok_or_else(|| format!("{host}: no program is bound to NFQUEUE {queue}"))?;
        Ok(crate::backend::nfqueue_counters(
            u64::from(q.id_sequence),
            q.queue_dropped + q.user_dropped,
            u64::from(q.queue_total),
        ))
    }

    fn connections(
        &mut self,
        host: &str,
        name: &str,
        spec: &ConnectionsSpec,
    ) -> Result<Started, String> {
        let (log, path) = self.log(host, name)?;
        let (task, detail) = conns::connections(&self.lab, host, name, spec, log)?;
        self.groups.insert(name.to_string(), task);
        Ok(Started {
            detail,
            log: Some(path),
        })
    }

    fn tally(&mut self, name: &str) -> Result<Counters, String> {
        self.groups
            .get(name)
            .map(|t| t.stats().counters())
            .ok_or_else(|| format!("no connections named `{name}` were opened"))
    }

    fn conntrack(&mut self, host: &str, filter: &[String]) -> Result<ConntrackReading, String> {
        let counters = self
            .lab
            .run_in(host, conntrack::read_counters)
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{host}: {e}"))?;
        let mut cmd = self
            .lab
            .command(host, "conntrack")
            .map_err(|e| e.to_string())?;
        let (entries, listing) = match cmd.arg("-L").args(filter).output() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                Err(
                    "`conntrack` is not installed (apt-get install conntrack, or ci/setup.sh)"
                        .into(),
                ),
                String::new(),
            ),
            Err(e) => (Err(format!("conntrack -L: {e}")), String::new()),
            Ok(out) => {
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                let entries = if out.status.success() {
                    Ok(stdout.lines().filter(|l| !l.trim().is_empty()).count() as u64)
                } else {
                    Err(format!(
                        "conntrack -L {} failed: {}",
                        filter.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                };
                (entries, stdout)
            }
        };
        Ok(ConntrackReading {
            counters,
            entries,
            listing,
        })
    }

    fn down(mut self: Box<Self>) -> Result<(), String> {
        // Stop our threads before the lab goes: their sockets hold namespaces.
        self.groups.clear();
        self.listeners.clear();
        self.holders.clear();
        self.captures.clear();
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        let NativeNetwork { lab, .. } = *self;
        lab.down().map_err(|e| e.to_string())
    }
}

/// Where the `lb` binary is: `LB_BIN`, else beside the running executable (`target/<profile>/`),
/// else one directory up when the executable is a test in `target/<profile>/deps/`.
pub fn find_lb(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("the `lb` binary {} does not exist", p.display()))
        };
    }
    crate::bins::workspace_bin("lb", "LB_BIN", "cargo build -p lb")
}

/// A lab name for `scenario`: `<name, shortened>-<6 hex>`, valid and unique.
fn lab_name(scenario: &str, attempt: u32) -> String {
    let mut stem: String = scenario
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(16)
        .collect();
    while stem.ends_with('-') {
        stem.pop();
    }
    let mut bytes = [0u8; 3];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    let n = (u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) ^ std::process::id() ^ attempt)
        & 0xff_ffff;
    if stem.is_empty() {
        format!("s-{n:06x}")
    } else {
        format!("{stem}-{n:06x}")
    }
}
