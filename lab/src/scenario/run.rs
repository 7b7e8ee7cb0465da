//! Running a scenario: a fresh lab, captures armed before the first step, the steps in order,
//! a quiet period, the trace and ladder, the expectations, the artifacts, and the lab removed
//! (also when a step fails or the run is interrupted: the `Lab` guard removes it on drop).

use super::conntrack::{Counters, read_counters};
use super::holder::{HoldSpec, HolderStats, nfq_holder};
use super::kernel::KernelVersion;
use super::model::{ExpectKind, Scenario, Step, StepKind, StopSignal};
use super::result::{ExpectResult, ScenarioResult, StepResult, StepStatus, Verdict};
use super::snapfile::{SnapshotCheck, SnapshotMode, check};
use super::tasks::{
    ListenerStats, Log, Task, TelnetPlan, TelnetResult, bound_queues, cancelled, is_listening,
    pause, printable, tcp_listener, telnet, udp_burst, udp_listener, wait_links_up,
};
use crate::capture::{Capture, CaptureConfig, CapturePoint, Frame, PacketSocket, write_pcap_file};
use crate::error::LabError;
use crate::lab::{Lab, LabOptions, Process};
use crate::ladder::Ladder;
use crate::trace::{NameMap, Trace, TraceOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to run scenarios.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What a snapshot mismatch writes.
    pub snapshots: SnapshotMode,
    /// The `lb` binary; found next to the running executable when `None` (or `LB_BIN`).
    pub lb_bin: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            snapshots: SnapshotMode::from_env(),
            lb_bin: None,
        }
    }
}

/// Receives progress lines while a scenario runs (several scenarios may call it at once).
pub trait Progress: Sync {
    /// One line about `scenario`.
    fn line(&self, scenario: &str, text: &str);
}

/// Progress that goes nowhere.
pub struct Silent;

impl Progress for Silent {
    fn line(&self, _: &str, _: &str) {}
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
    if let Some(p) = std::env::var_os("LB_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("LB_BIN={} does not exist", p.display()))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot locate the running executable: {e}"))?;
    let mut looked = Vec::new();
    if let Some(dir) = exe.parent() {
        looked.push(dir.join("lb"));
        if dir.file_name().is_some_and(|n| n == "deps")
            && let Some(up) = dir.parent()
        {
            looked.push(up.join("lb"));
        }
    }
    looked.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "the `lb` binary was not found (looked at {}; or set LB_BIN): build it with `cargo build -p lb`",
            looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}

/// A conntrack reading.
#[derive(Debug, Clone)]
struct Reading {
    counters: Counters,
    /// Entries listed by `conntrack -L <filter>`, or why they could not be.
    entries: Result<u64, String>,
}

/// Everything a running scenario holds.
struct Runtime<'a> {
    s: &'a Scenario,
    opts: &'a RunOptions,
    progress: &'a dyn Progress,
    lab: Lab,
    listeners: HashMap<String, Task<ListenerStats>>,
    holders: HashMap<String, Task<HolderStats>>,
    processes: HashMap<String, Process>,
    telnets: HashMap<String, TelnetResult>,
    readings: HashMap<String, Reading>,
    artifacts: Vec<(String, PathBuf)>,
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

/// Runs one scenario in a fresh lab of its own and returns what happened. Never panics on a
/// scenario's behaviour; everything that goes wrong is in the result.
pub fn run(s: &Scenario, opts: &RunOptions, progress: &dyn Progress) -> ScenarioResult {
    let t0 = Instant::now();
    let kernel = KernelVersion::running();
    let mut result = ScenarioResult {
        name: s.name.clone(),
        file: s.path.clone(),
        summary: s.summary.clone(),
        kernel: kernel.release.clone(),
        lab: String::new(),
        error: None,
        steps: vec![],
        expects: vec![],
        trace: None,
        ladder: None,
        artifacts: vec![],
        artifact_dir: None,
        ms: 0,
        interrupted: false,
    };
    let mut lab = None;
    for attempt in 0..5 {
        let name = lab_name(&s.name, attempt);
        match Lab::up(
            s.plan.clone(),
            &LabOptions {
                name: Some(name),
                persistent: false,
            },
        ) {
            Ok(l) => {
                lab = Some(l);
                break;
            }
            Err(LabError::NameTaken(_)) => continue,
            Err(e) => {
                result.error = Some(format!("cannot create the lab: {e}"));
                break;
            }
        }
    }
    let Some(lab) = lab else {
        if result.error.is_none() {
            result.error = Some("cannot find a free lab name".into());
        }
        result.ms = t0.elapsed().as_millis() as u64;
        return result;
    };
    result.lab = lab.name().to_string();
    result.artifact_dir = Some(lab.artifact_dir().to_path_buf());
    progress.line(
        &s.name,
        &format!(
            "lab {} up ({} hosts) in {} ms, kernel {}",
            lab.name(),
            s.plan.hosts.len(),
            t0.elapsed().as_millis(),
            kernel
        ),
    );
    let mut rt = Runtime {
        s,
        opts,
        progress,
        lab,
        listeners: HashMap::new(),
        holders: HashMap::new(),
        processes: HashMap::new(),
        telnets: HashMap::new(),
        readings: HashMap::new(),
        artifacts: vec![],
    };
    rt.run_all(&mut result, &kernel);
    // Stop our threads before the lab goes: their sockets hold namespaces.
    rt.listeners.clear();
    rt.holders.clear();
    let artifact_dir = rt.lab.artifact_dir().to_path_buf();
    let Runtime { lab, artifacts, .. } = rt;
    result.artifacts = artifacts;
    result.interrupted |= cancelled();
    result.ms = t0.elapsed().as_millis() as u64;
    // The result file is written before removal so it is there even if removal fails.
    let result_path = artifact_dir.join("result.json");
    if std::fs::write(&result_path, result.comparable_json()).is_ok() {
        result.artifacts.push(("result".into(), result_path));
    }
    if let Err(e) = lab.down() {
        result.error.get_or_insert(format!("removing the lab: {e}"));
    }
    result
}

impl Runtime<'_> {
    fn log(&mut self, host: &str, name: &str) -> Result<Log, String> {
        let path = self.lab.artifact_dir().join(format!("{host}-{name}.log"));
        let log = Log::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.artifacts.push((format!("{name} log"), path));
        Ok(log)
    }

    fn run_all(&mut self, result: &mut ScenarioResult, kernel: &KernelVersion) {
        let name = self.s.name.clone();
        if let Err(e) = wait_links_up(&self.lab, Duration::from_secs(5)) {
            result.error = Some(e);
            return;
        }
        // Captures: armed (socket bound, reader running) before the first step.
        let (tx, rx) = mpsc::channel::<Frame>();
        let last_frame = Arc::new(Mutex::new(Instant::now()));
        let watcher = {
            let last = Arc::clone(&last_frame);
            std::thread::spawn(move || {
                for _ in rx {
                    if let Ok(mut l) = last.lock() {
                        *l = Instant::now();
                    }
                }
            })
        };
        let mut captures = Vec::new();
        for c in &self.s.captures {
            let iface = c.interface.clone();
            let opened = self
                .lab
                .run_in(&c.host, || PacketSocket::open(iface.as_deref()));
            let cap = match opened {
                Ok(Ok(sock)) => Capture::from_socket(
                    sock,
                    CaptureConfig::new(&c.host, c.interface.as_deref()).live(tx.clone()),
                )
                .map_err(|e| e.to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match cap {
                Ok(cap) => captures.push(cap),
                Err(e) => {
                    result.error = Some(format!("cannot capture on {}: {e}", c.host));
                    return;
                }
            }
        }
        drop(tx);
        if !captures.is_empty() {
            let points: Vec<String> = self
                .s
                .captures
                .iter()
                .map(|c| format!("{} ({})", c.host, c.interface.as_deref().unwrap_or("any")))
                .collect();
            self.progress.line(
                &name,
                &format!("capturing on {} (armed)", points.join(", ")),
            );
        }

        let scenario = self.s;
        let total = scenario.steps.len();
        let mut failed = false;
        for step in &scenario.steps {
            let what = describe_step(step);
            if failed || cancelled() {
                result.steps.push(StepResult {
                    index: step.index,
                    what,
                    status: StepStatus::Skipped,
                    detail: if failed {
                        "an earlier step failed".into()
                    } else {
                        "interrupted".into()
                    },
                    ms: 0,
                });
                continue;
            }
            let t = Instant::now();
            let (status, detail) = match self.step(step) {
                Ok((true, d)) => (StepStatus::Ok, d),
                Ok((false, d)) => (StepStatus::TimedOut, d),
                Err(d) => {
                    failed = true;
                    (StepStatus::Failed, d)
                }
            };
            let ms = t.elapsed().as_millis() as u64;
            let word = match status {
                StepStatus::Ok => "ok",
                StepStatus::TimedOut => "timed out",
                StepStatus::Failed => "FAILED",
                StepStatus::Skipped => "skipped",
            };
            self.progress.line(
                &name,
                &format!("{}/{total} {what}: {word}: {detail} ({ms} ms)", step.index),
            );
            result.steps.push(StepResult {
                index: step.index,
                what,
                status,
                detail,
                ms,
            });
        }

        // Let in-flight packets land: stop once every capture point has been quiet for
        // `settle` (bounded by `settle_max`).
        let t = Instant::now();
        loop {
            let quiet = last_frame.lock().map(|l| l.elapsed()).unwrap_or_default();
            if quiet >= self.s.trace.settle || t.elapsed() >= self.s.trace.settle_max || cancelled()
            {
                break;
            }
            std::thread::sleep((self.s.trace.settle - quiet).min(Duration::from_millis(20)));
        }
        let mut points: Vec<CapturePoint> = Vec::new();
        for cap in captures {
            match cap.stop() {
                Ok(p) => points.push(p),
                Err(e) => {
                    result.error.get_or_insert(format!("capture failed: {e}"));
                }
            }
        }
        let _ = watcher.join();
        for p in &points {
            let file = format!(
                "{}-{}.pcap",
                p.host,
                p.interface.as_deref().unwrap_or("any")
            );
            let path = self.lab.artifact_dir().join(file);
            if write_pcap_file(p, &path).is_ok() {
                self.artifacts.push((format!("pcap {}", p.label()), path));
            }
            if p.stats.kernel_drops > 0 {
                result.error.get_or_insert(format!(
                    "capture on {} lost {} frames (socket buffer full): the trace is incomplete",
                    p.label(),
                    p.stats.kernel_drops
                ));
            }
        }
        // IGMP is hidden by the trace's default options (and bridges send none of their own).
        let names = NameMap::of_plan(&self.s.plan);
        let options = TraceOptions {
            arp: self.s.trace.arp,
            direction: self.s.trace.direction,
            tcp_options: self.s.trace.tcp_options,
            ordering: self.s.trace.ordering,
            ..TraceOptions::default()
        };
        if !points.is_empty() {
            let trace = Trace::build(&points, &names, &options).to_string();
            let ladder = Ladder::build(&points, &names, &options).to_string();
            for (what, text) in [("trace", &trace), ("ladder", &ladder)] {
                let path = self.lab.artifact_dir().join(format!("{what}.txt"));
                if std::fs::write(&path, text).is_ok() {
                    self.artifacts.push((what.to_string(), path));
                }
            }
            result.trace = Some(trace);
            result.ladder = Some(ladder);
        }

        // Expectations read the listeners' final counts: stop nothing before this.
        let evaluate = !failed && result.error.is_none() && !cancelled();
        for e in &scenario.expects {
            let what = describe_expect(&e.kind);
            let mut r = ExpectResult {
                index: e.index,
                line: e.line,
                what,
                verdict: Verdict::NotEvaluated,
                detail: String::new(),
                diff: None,
            };
            if !evaluate {
                r.detail = if cancelled() {
                    "interrupted".into()
                } else {
                    "not evaluated: the scenario did not run to the end".into()
                };
            } else if let Some(range) = e.kernel.as_ref().filter(|r| !r.contains(kernel)) {
                r.verdict = Verdict::NotApplicable;
                r.detail = format!(
                    "kernel {} is outside {range}: {}",
                    kernel.short(),
                    e.elsewhere.as_deref().unwrap_or_default()
                );
            } else {
                let (v, d, diff) = self.expect(&e.kind, result);
                r.verdict = v;
                r.detail = d;
                r.diff = diff;
            }
            result.expects.push(r);
        }
    }

    /// Runs one step: Ok((true, detail)) done, Ok((false, detail)) a wait timed out (the run
    /// goes on), Err(detail) failed.
    fn step(&mut self, step: &Step) -> Result<(bool, String), String> {
        match &step.kind {
            StepKind::StartLb { host, name, args } => {
                let lb = find_lb(self.opts.lb_bin.as_deref())?;
                let mut argv = vec![lb.display().to_string()];
                argv.extend(args.iter().cloned());
                let p = self
                    .lab
                    .spawn(host, name, &argv)
                    .map_err(|e| e.to_string())?;
                self.artifacts.push((format!("{name} log"), p.log.clone()));
                self.processes.insert(name.clone(), p);
                Ok((true, "started".into()))
            }
            StepKind::StartCommand { host, name, argv } => {
                let p = self
                    .lab
                    .spawn(host, name, argv)
                    .map_err(|e| e.to_string())?;
                self.artifacts.push((format!("{name} log"), p.log.clone()));
                self.processes.insert(name.clone(), p);
                Ok((true, "started".into()))
            }
            StepKind::TcpListener {
                host,
                name,
                addr,
                reply,
            } => {
                let log = self.log(host, name)?;
                let t = tcp_listener(&self.lab, host, name, *addr, reply.clone(), log)?;
                self.listeners.insert(name.clone(), t);
                Ok((true, format!("listening on {addr}")))
            }
            StepKind::UdpListener { host, name, addr } => {
                let log = self.log(host, name)?;
                let t = udp_listener(&self.lab, host, name, *addr, log)?;
                self.listeners.insert(name.clone(), t);
                Ok((true, format!("bound to {addr}")))
            }
            StepKind::NfqHolder {
                host,
                name,
                queue,
                count,
                delay,
                verdict,
            } => {
                let log = self.log(host, name)?;
                let spec = HoldSpec {
                    queue: *queue,
                    count: *count,
                    delay: *delay,
                    verdict: *verdict,
                };
                let t = nfq_holder(&self.lab, host, name, spec, log)?;
                self.holders.insert(name.clone(), t);
                Ok((true, format!("queue {queue} bound")))
            }
            StepKind::WaitLog {
                process,
                text,
                timeout,
            } => {
                let p = self.processes[process].clone();
                let mut log = String::new();
                let printed = poll_until(*timeout, || {
                    log = std::fs::read_to_string(&p.log).unwrap_or_default();
                    if log.lines().any(|l| l.contains(text.as_str())) {
                        return Ok(Some(()));
                    }
                    match self.lab.exit_status(&p) {
                        Some(status) => Err(format!(
                            "{process} exited ({status}) before printing `{text}`; its log: {}",
                            tail(&log)
                        )),
                        None => Ok(None),
                    }
                })?;
                match printed {
                    Some(()) => Ok((true, format!("{process} printed `{text}`"))),
                    None => Err(format!(
                        "{process} did not print `{text}` within {} ms; its log: {}",
                        timeout.as_millis(),
                        tail(&log)
                    )),
                }
            }
            StepKind::WaitListening {
                host,
                proto,
                addr,
                timeout,
            } => {
                let listening = poll_until(*timeout, || {
                    let ok = self
                        .lab
                        .run_in(host, || is_listening(*proto, *addr))
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("{host}: reading sockets: {e}"))?;
                    Ok(ok.then_some(()))
                })?;
                match listening {
                    Some(()) => Ok((true, format!("{proto} {addr} is listening in {host}"))),
                    None => Err(format!(
                        "nothing listens on {proto} {addr} in {host} after {} ms",
                        timeout.as_millis()
                    )),
                }
            }
            StepKind::WaitQueue {
                host,
                queue,
                timeout,
            } => {
                let bound = poll_until(*timeout, || {
                    let bound = self
                        .lab
                        .run_in(host, bound_queues)
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("{host}: reading nfnetlink_queue: {e}"))?;
                    Ok(bound.contains(queue).then_some(()))
                })?;
                match bound {
                    Some(()) => Ok((true, format!("queue {queue} is bound in {host}"))),
                    None => Err(format!(
                        "queue {queue} is not bound in {host} after {} ms",
                        timeout.as_millis()
                    )),
                }
            }
            StepKind::WaitDatagrams {
                listener,
                count,
                timeout,
            } => {
                let t = &self.listeners[listener];
                let (st, ok) = t.wait_for(*timeout, |s| s.datagrams >= *count);
                let detail = format!("{listener} has {} of {count} datagrams", st.datagrams);
                Ok((ok, detail))
            }
            StepKind::Telnet {
                host,
                name,
                addr,
                send,
                server,
                wait_reply,
                timeout,
            } => {
                let plan = TelnetPlan {
                    send: send.clone(),
                    wait_reply: *wait_reply,
                };
                let listener = server.as_ref().map(|l| (l, &self.listeners[l]));
                let before = listener.map(|(_, t)| t.stats());
                let r = telnet(
                    &self.lab,
                    host,
                    *addr,
                    &plan,
                    *timeout,
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
                )?;
                let mut detail = format!("{} ({})", r.outcome, r.message);
                if r.outcome == super::model::TelnetOutcome::Connected {
                    detail.push_str(&format!(
                        "; sent {} line(s), read {} bytes, {}",
                        send.len(),
                        r.received.len(),
                        if r.closed_by_peer {
                            "closed by the server"
                        } else {
                            "the server did not close"
                        }
                    ));
                }
                self.telnets.insert(name.clone(), r);
                Ok((true, detail))
            }
            StepKind::UdpBurst {
                host,
                to,
                source_port,
                count,
                interval,
                payload,
                ..
            } => {
                let sent = udp_burst(
                    &self.lab,
                    host,
                    *to,
                    *source_port,
                    *count,
                    *interval,
                    payload,
                )?;
                Ok((true, format!("sent {sent} datagram(s) to {to}")))
            }
            StepKind::Conntrack { host, name, filter } => {
                let counters = self
                    .lab
                    .run_in(host, read_counters)
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("{host}: {e}"))?;
                let entries = self.conntrack_list(host, name, filter, &counters);
                let detail = match &entries {
                    Ok(n) => format!("{} counters, {n} matching entries", counters.len()),
                    Err(e) => format!("{} counters; entries unknown: {e}", counters.len()),
                };
                self.readings
                    .insert(name.clone(), Reading { counters, entries });
                Ok((true, detail))
            }
            StepKind::Sleep { duration, why } => {
                if !pause(*duration) {
                    return Err("interrupted".into());
                }
                Ok((true, format!("slept {} ms: {why}", duration.as_millis())))
            }
            StepKind::Stop { process, signal } => {
                let p = self.processes[process].clone();
                let sig = match signal {
                    StopSignal::Term => nix::sys::signal::Signal::SIGTERM,
                    StopSignal::Int => nix::sys::signal::Signal::SIGINT,
                    StopSignal::Kill => nix::sys::signal::Signal::SIGKILL,
                };
                if let Some(status) = self.lab.exit_status(&p) {
                    return Err(format!("{process} had already exited ({status})"));
                }
                if p.id.alive() {
                    // The process group: the process and anything it started.
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(p.id.pid), sig);
                }
                let end = Instant::now() + Duration::from_secs(5);
                loop {
                    if let Some(status) = self.lab.exit_status(&p) {
                        return Ok((true, format!("{signal} sent; {process} ended ({status})")));
                    }
                    if Instant::now() >= end {
                        return Err(format!("{process} still runs 5 s after {signal}"));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            StepKind::Exec {
                host,
                name,
                argv,
                timeout,
                status,
            } => {
                let path = self.lab.artifact_dir().join(format!("{host}-{name}.log"));
                let out =
                    std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let err = out.try_clone().map_err(|e| e.to_string())?;
                self.artifacts.push((format!("{name} log"), path.clone()));
                let mut cmd = self
                    .lab
                    .command(host, &argv[0])
                    .map_err(|e| e.to_string())?;
                let mut child = cmd
                    .args(&argv[1..])
                    .stdin(std::process::Stdio::null())
                    .stdout(out)
                    .stderr(err)
                    .spawn()
                    .map_err(|e| format!("cannot run `{}` in {host}: {e}", argv.join(" ")))?;
                let ended = poll_until(*timeout, || child.try_wait().map_err(|e| e.to_string()))?;
                let Some(code) = ended else {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "`{}` did not finish within {} ms",
                        argv.join(" "),
                        timeout.as_millis()
                    ));
                };
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if code.code() != Some(*status) {
                    return Err(format!(
                        "`{}` ended with {code}, expected exit status {status}; output: {}",
                        argv.join(" "),
                        tail(&text)
                    ));
                }
                Ok((true, format!("exit status {status}")))
            }
        }
    }

    /// `conntrack -L <filter>` in `host`: the number of entries; the listing goes to a file.
    fn conntrack_list(
        &mut self,
        host: &str,
        name: &str,
        filter: &[String],
        counters: &Counters,
    ) -> Result<u64, String> {
        let mut cmd = self
            .lab
            .command(host, "conntrack")
            .map_err(|e| e.to_string())?;
        let out = match cmd.arg("-L").args(filter).output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(
                    "`conntrack` is not installed (apt-get install conntrack, or ci/setup.sh)"
                        .into(),
                );
            }
            Err(e) => return Err(format!("conntrack -L: {e}")),
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let path = self
            .lab
            .artifact_dir()
            .join(format!("{host}-conntrack-{name}.txt"));
        let mut text = String::from("# counters (/proc/net/stat/nf_conntrack, summed over CPUs)\n");
        for (k, v) in counters {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text.push_str(&format!("\n# conntrack -L {}\n{stdout}", filter.join(" ")));
        if std::fs::write(&path, text).is_ok() {
            self.artifacts.push((format!("conntrack {name}"), path));
        }
        if !out.status.success() {
            return Err(format!(
                "conntrack -L {} failed: {}",
                filter.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(stdout.lines().filter(|l| !l.trim().is_empty()).count() as u64)
    }

    fn expect(
        &self,
        kind: &ExpectKind,
        result: &ScenarioResult,
    ) -> (Verdict, String, Option<String>) {
        let verdict = |ok: bool| if ok { Verdict::Pass } else { Verdict::Fail };
        match kind {
            ExpectKind::Telnet {
                step,
                outcome,
                received,
            } => {
                let Some(r) = self.telnets.get(step) else {
                    return (
                        Verdict::Fail,
                        format!("telnet step `{step}` did not run"),
                        None,
                    );
                };
                let mut ok = true;
                let mut found = vec![format!("outcome {}", r.outcome)];
                if let Some(o) = outcome {
                    ok &= r.outcome == *o;
                }
                if let Some(text) = received {
                    ok &= r.received == text.as_bytes();
                    found.push(format!("received \"{}\"", printable(&r.received)));
                }
                (verdict(ok), found.join(", "), None)
            }
            ExpectKind::Listener {
                name,
                received,
                bytes,
                connections,
                datagrams,
            } => {
                let st = self
                    .listeners
                    .get(name)
                    .map(|t| t.stats())
                    .unwrap_or_default();
                let mut ok = true;
                let mut found = Vec::new();
                if let Some(text) = received {
                    ok &= st.received == text.as_bytes();
                    found.push(format!("received \"{}\"", printable(&st.received)));
                }
                if let Some(b) = bytes {
                    ok &= st.bytes == *b;
                    found.push(format!("{} bytes", st.bytes));
                }
                if let Some(c) = connections {
                    ok &= st.connections == *c;
                    found.push(format!("{} connection(s)", st.connections));
                }
                if let Some(d) = datagrams {
                    ok &= st.datagrams == *d;
                    found.push(format!("{} datagram(s)", st.datagrams));
                }
                (verdict(ok), found.join(", "), None)
            }
            ExpectKind::Conntrack {
                read,
                since,
                delta,
                entries,
            } => {
                let Some(now) = self.readings.get(read) else {
                    return (
                        Verdict::Fail,
                        format!("conntrack reading `{read}` was not taken"),
                        None,
                    );
                };
                let mut ok = true;
                let mut found = Vec::new();
                if let Some(since) = since {
                    let before = &self.readings[since];
                    for (counter, want) in delta {
                        let a = before.counters.get(counter);
                        let b = now.counters.get(counter);
                        match (a, b) {
                            (Some(a), Some(b)) => {
                                let d = *b as i64 - *a as i64;
                                ok &= d == *want;
                                found.push(format!("{counter} {d:+}"));
                            }
                            _ => {
                                ok = false;
                                found.push(format!("{counter}: not reported by this kernel"));
                            }
                        }
                    }
                }
                if let Some(want) = entries {
                    match &now.entries {
                        Ok(n) => {
                            ok &= n == want;
                            found.push(format!(
                                "{n} matching entr{}",
                                if *n == 1 { "y" } else { "ies" }
                            ));
                        }
                        Err(e) => {
                            ok = false;
                            found.push(format!("entries unknown: {e}"));
                        }
                    }
                }
                (verdict(ok), found.join(", "), None)
            }
            ExpectKind::Trace { snapshot, ladder } => {
                let Some(trace) = &result.trace else {
                    return (
                        Verdict::Fail,
                        "no trace: the scenario captures nothing".into(),
                        None,
                    );
                };
                let mut content = trace.clone();
                if *ladder && let Some(l) = &result.ladder {
                    content.push('\n');
                    content.push_str(l);
                }
                let path = self.s.snapshot_path(snapshot);
                let source = self
                    .s
                    .path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match check(&path, &source, &content, self.opts.snapshots) {
                    Ok(SnapshotCheck::Matches) => {
                        (Verdict::Pass, format!("matches {}", path.display()), None)
                    }
                    Ok(SnapshotCheck::Updated { existed }) => (
                        Verdict::Updated,
                        format!(
                            "{} {}",
                            if existed { "updated" } else { "created" },
                            path.display()
                        ),
                        None,
                    ),
                    Ok(SnapshotCheck::Differs {
                        diff,
                        existed,
                        written,
                    }) => {
                        let mut d = if existed {
                            format!("differs from {}", path.display())
                        } else {
                            format!("{} does not exist", path.display())
                        };
                        match written {
                            Some(w) => d.push_str(&format!(
                                "; this run's trace is in {} (review: cargo insta review, or lab run --accept)",
                                w.display()
                            )),
                            None => d.push_str("; nothing written (CI or INSTA_UPDATE=no)"),
                        }
                        (Verdict::Fail, d, Some(diff))
                    }
                    Err(e) => (Verdict::Fail, format!("{}: {e}", path.display()), None),
                }
            }
        }
    }
}

/// The last lines of a log, on one line, for error messages.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "(empty)".into();
    }
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// A step as one line: `telnet h3 → 10.0.0.50:8080`.
pub fn describe_step(step: &Step) -> String {
    match &step.kind {
        StepKind::StartLb { host, args, .. } => format!("start in {host}: lb {}", args.join(" ")),
        StepKind::StartCommand { host, argv, .. } => format!("start in {host}: {}", argv.join(" ")),
        StepKind::TcpListener {
            host, name, addr, ..
        } => format!("start tcp-listener `{name}` in {host} on {addr}"),
        StepKind::UdpListener { host, name, addr } => {
            format!("start udp-listener `{name}` in {host} on {addr}")
        }
        StepKind::NfqHolder {
            host,
            queue,
            count,
            delay,
            verdict,
            ..
        } => format!(
            "start nfq-holder in {host}: queue {queue}, hold {count}, {verdict} together after {} ms",
            delay.as_millis()
        ),
        StepKind::WaitLog { process, text, .. } => format!("wait for `{text}` in {process}'s log"),
        StepKind::WaitListening {
            host, proto, addr, ..
        } => format!("wait until {proto} {addr} listens in {host}"),
        StepKind::WaitQueue { host, queue, .. } => {
            format!("wait until queue {queue} is bound in {host}")
        }
        StepKind::WaitDatagrams {
            listener, count, ..
        } => format!("wait for {count} datagram(s) at `{listener}`"),
        StepKind::Telnet { host, addr, .. } => format!("telnet from {host} to {addr}"),
        StepKind::UdpBurst {
            host,
            to,
            count,
            interval,
            ..
        } => {
            if interval.is_zero() {
                format!("udp-burst from {host} to {to}: {count} datagram(s) back to back")
            } else {
                format!(
                    "udp-burst from {host} to {to}: {count} datagram(s), {} ms apart",
                    interval.as_millis()
                )
            }
        }
        StepKind::Conntrack { host, name, .. } => format!("conntrack reading `{name}` in {host}"),
        StepKind::Sleep { duration, .. } => format!("sleep {} ms", duration.as_millis()),
        StepKind::Stop { process, signal } => format!("stop {process} with {signal}"),
        StepKind::Exec { host, argv, .. } => format!("exec in {host}: {}", argv.join(" ")),
    }
}

/// An expectation as one line.
pub fn describe_expect(kind: &ExpectKind) -> String {
    match kind {
        ExpectKind::Telnet {
            step,
            outcome,
            received,
        } => {
            let mut v = Vec::new();
            if let Some(o) = outcome {
                v.push(format!("outcome {o}"));
            }
            if let Some(r) = received {
                v.push(format!("received \"{}\"", printable(r.as_bytes())));
            }
            format!("telnet `{step}`: {}", v.join(", "))
        }
        ExpectKind::Listener {
            name,
            received,
            bytes,
            connections,
            datagrams,
        } => {
            let mut v = Vec::new();
            if let Some(r) = received {
                v.push(format!("received \"{}\"", printable(r.as_bytes())));
            }
            if let Some(b) = bytes {
                v.push(format!("{b} bytes"));
            }
            if let Some(c) = connections {
                v.push(format!("{c} connection(s)"));
            }
            if let Some(d) = datagrams {
                v.push(format!("{d} datagram(s)"));
            }
            format!("listener `{name}`: {}", v.join(", "))
        }
        ExpectKind::Conntrack {
            read,
            since,
            delta,
            entries,
        } => {
            let mut v: Vec<String> = delta.iter().map(|(k, d)| format!("{k} {d:+}")).collect();
            if let Some(e) = entries {
                v.push(format!(
                    "{e} matching entr{}",
                    if *e == 1 { "y" } else { "ies" }
                ));
            }
            match since {
                Some(s) => format!("conntrack `{s}` → `{read}`: {}", v.join(", ")),
                None => format!("conntrack `{read}`: {}", v.join(", ")),
            }
        }
        ExpectKind::Trace { snapshot, ladder } => {
            format!(
                "trace{} matches snapshot `{snapshot}`",
                if *ladder { " and ladder" } else { "" }
            )
        }
    }
}

/// Calls `check` every 5 ms until it gives a value; `Ok(None)` once `timeout` has passed or the
/// run is cancelled (Ctrl-C). An error from `check` ends the wait at once.
fn poll_until<T>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> Result<Option<T>, String> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = check()? {
            return Ok(Some(v));
        }
        if Instant::now() >= end || cancelled() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
