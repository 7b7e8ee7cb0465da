//! The runner against a recording backend: a second backend plugs in without touching the
//! runner. `Recorder` is a fake used only here: it builds nothing, answers from a script,
//! keeps virtual time, and writes down every call the runner makes, so the test can assert
//! what the runner asked of the network for one scenario (seed post 1's fix). No root needed.

use lab::Plan;
use lab::backend::{
    Backend, BurstSpec, CaptureSpec, ConntrackReading, ExecResult, ExecSpec, ListenerStats,
    Network, Probe, Program, Started, StopSignal, TelnetOutcome, TelnetResult, TelnetSpec,
};
use lab::capture::CapturePoint;
use lab::kernel::KernelVersion;
use lab::scenario::{RunOptions, Scenario, Silent, SnapshotMode, Verdict, run_on};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Calls = Arc<Mutex<Vec<String>>>;

/// Builds `Recording` networks that share one call list.
struct Recorder {
    calls: Calls,
    dir: PathBuf,
}

impl Backend for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn kernel(&self) -> KernelVersion {
        KernelVersion::parse("6.18.0-test").expect("a kernel release")
    }

    fn build(&self, plan: &Plan, hint: &str) -> Result<Box<dyn Network>, String> {
        let hosts: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
        self.calls
            .lock()
            .unwrap()
            .push(format!("build {hint}: {}", hosts.join(" ")));
        Ok(Box::new(Recording {
            calls: Arc::clone(&self.calls),
            dir: self.dir.clone(),
            now: Duration::ZERO,
            started: vec![],
            captures: vec![],
        }))
    }
}

/// A network that records calls; time passes only when the runner sleeps.
struct Recording {
    calls: Calls,
    dir: PathBuf,
    now: Duration,
    started: Vec<(String, Program)>,
    captures: Vec<CaptureSpec>,
}

impl Recording {
    fn note(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

impl Network for Recording {
    fn name(&self) -> &str {
        "recording"
    }

    fn artifact_dir(&self) -> &Path {
        &self.dir
    }

    fn now(&self) -> Duration {
        self.now
    }

    fn sleep(&mut self, d: Duration) -> bool {
        self.now += d;
        true
    }

    fn arm_captures(&mut self, points: &[CaptureSpec]) -> Result<(), String> {
        let shown: Vec<String> = points
            .iter()
            .map(|p| format!("{}:{}", p.host, p.interface.as_deref().unwrap_or("any")))
            .collect();
        self.note(format!("arm captures {}", shown.join(" ")));
        self.captures = points.to_vec();
        Ok(())
    }

    fn captures_quiet(&self) -> Duration {
        // Nothing is ever sent here: quiet from the start.
        Duration::from_secs(3600)
    }

    fn collect_captures(&mut self) -> Result<Vec<CapturePoint>, String> {
        self.note("collect captures".into());
        Ok(self
            .captures
            .iter()
            .map(|c| CapturePoint::new(&c.host, c.interface.as_deref()))
            .collect())
    }

    fn start(&mut self, host: &str, name: &str, program: &Program) -> Result<Started, String> {
        self.note(format!("start {name} in {host}: {program:?}"));
        self.started.push((name.to_string(), program.clone()));
        Ok(Started {
            detail: "started".into(),
            log: None,
        })
    }

    fn probe(&mut self, host: &str, probe: &Probe) -> Result<bool, String> {
        self.note(format!("probe {host}: {probe:?}"));
        Ok(true)
    }

    fn output(&self, name: &str) -> Result<String, String> {
        // `lb` prints `ready:` once it runs; the recorder's processes do so at once.
        match self.started.iter().find(|(n, _)| n == name) {
            Some((_, Program::Lb { .. })) => Ok("ready: serving\n".into()),
            Some(_) => Ok(String::new()),
            None => Err(format!("no process named `{name}`")),
        }
    }

    fn exit_status(&mut self, _name: &str) -> Option<String> {
        None
    }

    fn signal(&mut self, name: &str, signal: StopSignal) -> Result<(), String> {
        self.note(format!("signal {name} {signal}"));
        Ok(())
    }

    fn listener(&self, name: &str) -> Result<ListenerStats, String> {
        // What nc at h2 saw in the seed post.
        self.note(format!("read listener {name}"));
        Ok(ListenerStats {
            connections: 1,
            bytes: 17,
            received: b"Is this working?\n".to_vec(),
            ..ListenerStats::default()
        })
    }

    fn telnet(&mut self, host: &str, spec: &TelnetSpec) -> Result<TelnetResult, String> {
        self.note(format!(
            "telnet from {host} to {} send {:?} paced by {:?} wait-reply {} within {:?}",
            spec.addr, spec.send, spec.server, spec.wait_reply, spec.timeout
        ));
        Ok(TelnetResult {
            outcome: TelnetOutcome::Connected,
            message: format!("Connected to {}.", spec.addr.ip()),
            received: b"It is!!!!\n".to_vec(),
            closed_by_peer: true,
        })
    }

    fn udp_burst(&mut self, host: &str, spec: &BurstSpec) -> Result<usize, String> {
        self.note(format!("udp-burst from {host}: {spec:?}"));
        Ok(spec.count)
    }

    fn exec(&mut self, host: &str, name: &str, spec: &ExecSpec) -> Result<ExecResult, String> {
        self.note(format!("exec {name} in {host}: {spec:?}"));
        Err("the recorder runs no commands".into())
    }

    fn conntrack(&mut self, host: &str, filter: &[String]) -> Result<ConntrackReading, String> {
        self.note(format!("conntrack in {host}: {filter:?}"));
        Err("the recorder has no conntrack".into())
    }

    fn nfqueue(&mut self, host: &str, queue: u16) -> Result<lab::backend::Counters, String> {
        self.note(format!("nfqueue {queue} in {host}"));
        Err("the recorder has no queues".into())
    }

    fn connections(
        &mut self,
        host: &str,
        name: &str,
        spec: &lab::backend::ConnectionsSpec,
    ) -> Result<lab::backend::Started, String> {
        self.note(format!("connections {name} from {host}: {spec:?}"));
        Err("the recorder opens no connections".into())
    }

    fn tally(&mut self, name: &str) -> Result<lab::backend::Counters, String> {
        self.note(format!("tally {name}"));
        Err("the recorder opens no connections".into())
    }

    fn impair(
        &mut self,
        link: usize,
        way: lab::impair::Way,
        imp: &lab::impair::Impairment,
    ) -> Result<(), String> {
        self.note(format!("impair link {link} {way}: {imp}"));
        Ok(())
    }

    fn down(self: Box<Self>) -> Result<(), String> {
        self.note("down".into());
        Ok(())
    }
}

#[test]
fn the_runner_asks_the_network_for_exactly_the_scenarios_steps() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/nfqueue-fixes-reset.toml");
    let s = Scenario::load(&file).expect("the scenario loads");
    let dir = std::env::temp_dir().join(format!("lab-recorder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let calls: Calls = Arc::default();
    let backend = Recorder {
        calls: Arc::clone(&calls),
        dir: dir.clone(),
    };
    let opts = RunOptions {
        // Compare only: a test never writes snapshots into the source tree.
        snapshots: SnapshotMode::Compare,
        lb_bin: None,
    };
    let r = run_on(&backend, &s, &opts, &Silent);
    std::fs::remove_dir_all(&dir).unwrap();

    let calls = calls.lock().unwrap().clone();
    let expected = [
        "build nfqueue-fixes-reset: h1 h2 h3",
        "arm captures h3:h3-eth0 h1:h1-eth0 h2:any",
        r#"start agent in h2: Lb { args: ["agent", "--vip", "10.0.0.50", "--balancer", "10.0.0.1"] }"#,
        r#"start nc in h2: TcpListener { addr: 10.0.0.50:8080, reply: Some("It is!!!!") }"#,
        r#"start balancer in h1: Lb { args: ["server", "--vip", "10.0.0.50", "--intake", "nfqueue", "--forward", "encap", "--backend", "h2=10.0.0.2"] }"#,
        "probe h1: QueueBound { queue: 0 }",
        r#"telnet from h3 to 10.0.0.50:8080 send ["Is this working?"] paced by Some("nc") wait-reply true within 2s"#,
        "collect captures",
        "read listener nc",
        "down",
    ];
    assert_eq!(calls, expected, "the runner's calls, in order");

    // Steps: all ran, the log waits answered from the network's output.
    let steps: Vec<String> = r
        .steps
        .iter()
        .map(|s| format!("{}: {:?}: {}", s.what, s.status, s.detail))
        .collect();
    assert_eq!(steps.len(), 7, "{steps:#?}");
    assert!(steps[1].contains("agent printed `ready:`"), "{steps:#?}");
    assert!(
        steps[6].starts_with("telnet from h3 to 10.0.0.50:8080: Ok: connected"),
        "{steps:#?}"
    );
    assert_eq!(r.lab, "recording");
    assert_eq!(r.kernel, "6.18.0-test");

    // Expectations: judged by the runner from what the network reported. The recorder saw no
    // packets, so the trace differs from the stored snapshot: the runner really compares.
    let verdicts: Vec<Verdict> = r.expects.iter().map(|e| e.verdict).collect();
    assert_eq!(
        verdicts,
        [Verdict::Pass, Verdict::Pass, Verdict::Fail],
        "{:#?}",
        r.expects
    );
    assert!(r.expects[2].diff.is_some());
}

#[test]
fn a_network_that_cannot_be_built_is_the_results_error() {
    struct Broken;
    impl Backend for Broken {
        fn name(&self) -> &'static str {
            "broken"
        }
        fn kernel(&self) -> KernelVersion {
            KernelVersion::parse("6.18.0").expect("a kernel release")
        }
        fn build(&self, _: &Plan, _: &str) -> Result<Box<dyn Network>, String> {
            Err("cannot create the lab: no bridges today".into())
        }
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/nfqueue-fixes-reset.toml");
    let s = Scenario::load(&file).expect("the scenario loads");
    let r = run_on(&Broken, &s, &RunOptions::default(), &Silent);
    assert_eq!(
        r.error.as_deref(),
        Some("cannot create the lab: no bridges today")
    );
    assert!(r.steps.is_empty() && !r.passed());
}
