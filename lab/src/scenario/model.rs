//! The scenario format's types: a [`Scenario`] with its topology plan, capture points, trace
//! settings, [`Step`]s and [`Expect`]ations, as [`super::parse`] produces them. No syscalls.
//! The format reference is docs/scenario-format.md.

use crate::backend::{
    BurstSpec, CaptureSpec, ConnectionsSpec, ExecSpec, Probe, Program, StopSignal, TelnetOutcome,
    TelnetSpec,
};
use crate::kernel::KernelRange;
use crate::resolve::Plan;
use crate::trace::Ordering;
use indexmap::IndexMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A scenario file that cannot be used: where (file, line) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file as given.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Which part: `step 3 (telnet)`, `expect 2`, `capture[1]`, or empty.
    pub context: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: ", self.file, l)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if !self.context.is_empty() {
            write!(f, "{}: ", self.context)?;
        }
        f.write_str(&self.message)
    }
}

/// A parsed and validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name: the `name` field or the file stem.
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// One line saying what it shows.
    pub summary: Option<String>,
    /// Why the simulator cannot run it yet (`not-simulated`): `lab run --sim` skips it, saying
    /// so; the test suite checks that the simulator still refuses it.
    pub not_simulated: Option<String>,
    /// Why Mininet cannot build its lab (`not-mininet`): `lab run --backend mininet` skips it,
    /// saying so; the test suite checks that the Mininet backend still refuses it.
    pub not_mininet: Option<String>,
    /// The resolved topology.
    pub plan: Plan,
    /// Capture points, in trace order.
    pub captures: Vec<CaptureSpec>,
    /// How traces are written.
    pub trace: TraceSettings,
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// Expectations, in order.
    pub expects: Vec<Expect>,
}

/// Trace settings of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// Line order within a section.
    pub ordering: Ordering,
    /// `In`/`Out` prefixes.
    pub direction: bool,
    /// TCP option kinds.
    pub tcp_options: bool,
    /// Show ARP.
    pub arp: bool,
    /// How long every capture point must be silent before the captures stop.
    pub settle: Duration,
    /// Upper bound of that wait.
    pub settle_max: Duration,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            ordering: Ordering::Captured,
            direction: false,
            tcp_options: false,
            arp: false,
            settle: Duration::from_millis(300),
            settle_max: Duration::from_secs(3),
        }
    }
}

/// One step, with where it was written.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based position.
    pub index: usize,
    /// Line in the file.
    pub line: Option<usize>,
    /// What it does.
    pub kind: StepKind,
}

/// What a step does. Programs and exchanges are described in the backend's vocabulary
/// ([`crate::backend`]), so the runner hands them to the network as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// Starts a program in a host, in the background (`start = "lb" | "command" |
    /// "tcp-listener" | "udp-listener" | "nfq-holder"`).
    Start {
        /// Host.
        host: String,
        /// Name of what it starts (log file `<host>-<name>.log`).
        name: String,
        /// What runs.
        program: Program,
    },
    /// Waits until something holds, `timeout` at most.
    Wait {
        /// What is waited for.
        until: WaitFor,
        /// How long at most.
        timeout: Duration,
    },
    /// Connects like telnet, sends lines, half-closes, reads until the peer closes.
    Telnet {
        /// Host.
        host: String,
        /// Name.
        name: String,
        /// The session.
        spec: TelnetSpec,
    },
    /// Opens long-lived connections that exchange lines with an echo server until the end.
    Connections {
        /// Host.
        host: String,
        /// Name of the group.
        name: String,
        /// The connections.
        spec: ConnectionsSpec,
    },
    /// Reads the counters of a connections group.
    Tally {
        /// Name of the reading.
        name: String,
        /// The group read.
        group: String,
    },
    /// Sends datagrams from one socket (one 5-tuple).
    UdpBurst {
        /// Host.
        host: String,
        /// Name.
        name: String,
        /// The datagrams.
        spec: BurstSpec,
    },
    /// Reads conntrack counters (and entries) inside a host.
    Conntrack {
        /// Host.
        host: String,
        /// Name of the reading.
        name: String,
        /// Arguments for `conntrack -L` that select the entries counted.
        filter: Vec<String>,
    },
    /// Reads the counters of an NFQUEUE inside a host.
    Nfqueue {
        /// Host.
        host: String,
        /// Name of the reading.
        name: String,
        /// The queue number.
        queue: u16,
    },
    /// Waits because time itself is the subject.
    Sleep {
        /// How long.
        duration: Duration,
        /// Why (required).
        why: String,
    },
    /// Sends a signal to a started process and waits for it to end.
    Stop {
        /// Process name.
        process: String,
        /// The signal.
        signal: StopSignal,
    },
    /// Changes a link's impairments (`impair = "h1:eth0"`, with `egress`/`ingress`/`both`).
    Impair {
        /// The end as written (`h1:eth0`).
        end: String,
        /// The link's index in the plan.
        link: usize,
        /// The new impairment of each way that changes (`Forward` is the plan's a→b).
        ways: Vec<(crate::impair::Way, crate::impair::Impairment)>,
    },
    /// Runs a command in a host to completion; its output goes to a log.
    Exec {
        /// Host.
        host: String,
        /// Name (log file).
        name: String,
        /// The command and its timeout.
        spec: ExecSpec,
        /// Exit status the step requires.
        status: i32,
    },
}

/// What a `wait` step waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFor {
    /// A process printed a line containing `text` (`wait = "log"`).
    Log {
        /// Process name.
        process: String,
        /// Text the line contains.
        text: String,
    },
    /// A readiness probe in a host holds (`wait = "listening" | "queue"`).
    Probe {
        /// Host.
        host: String,
        /// The probe.
        probe: Probe,
    },
    /// A UDP listener counted `count` datagrams (`wait = "datagrams"`); the run goes on when
    /// this times out.
    Datagrams {
        /// Listener name.
        listener: String,
        /// Datagrams to wait for.
        count: u64,
    },
}

impl StepKind {
    /// The step's short kind, as in messages: `start lb`, `telnet`, …
    pub fn kind(&self) -> &'static str {
        match self {
            StepKind::Start { program, .. } => match program {
                Program::Lb { .. } => "start lb",
                Program::Command { .. } => "start command",
                Program::TcpListener { .. } => "start tcp-listener",
                Program::UdpListener { .. } => "start udp-listener",
                Program::NfqHolder(_) => "start nfq-holder",
                Program::TcpEcho { .. } => "start tcp-echo",
            },
            StepKind::Wait { until, .. } => match until {
                WaitFor::Log { .. } => "wait log",
                WaitFor::Probe {
                    probe: Probe::Listening { .. },
                    ..
                } => "wait listening",
                WaitFor::Probe {
                    probe: Probe::QueueBound { .. },
                    ..
                } => "wait queue",
                WaitFor::Datagrams { .. } => "wait datagrams",
            },
            StepKind::Telnet { .. } => "telnet",
            StepKind::Connections { .. } => "connections",
            StepKind::Tally { .. } => "tally",
            StepKind::UdpBurst { .. } => "udp-burst",
            StepKind::Conntrack { .. } => "conntrack",
            StepKind::Nfqueue { .. } => "nfqueue",
            StepKind::Sleep { .. } => "sleep",
            StepKind::Stop { .. } => "stop",
            StepKind::Exec { .. } => "exec",
            StepKind::Impair { .. } => "impair",
        }
    }

    /// The name this step gives to what it creates, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            StepKind::Start { name, .. }
            | StepKind::Telnet { name, .. }
            | StepKind::Connections { name, .. }
            | StepKind::Tally { name, .. }
            | StepKind::UdpBurst { name, .. }
            | StepKind::Conntrack { name, .. }
            | StepKind::Nfqueue { name, .. }
            | StepKind::Exec { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The host the step acts in, if it names one.
    pub fn host(&self) -> Option<&str> {
        match self {
            StepKind::Start { host, .. }
            | StepKind::Wait {
                until: WaitFor::Probe { host, .. },
                ..
            }
            | StepKind::Telnet { host, .. }
            | StepKind::Connections { host, .. }
            | StepKind::UdpBurst { host, .. }
            | StepKind::Conntrack { host, .. }
            | StepKind::Nfqueue { host, .. }
            | StepKind::Exec { host, .. } => Some(host),
            _ => None,
        }
    }
}

/// A step as one line: `telnet from h3 to 10.0.0.50:8080`.
impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepKind::Start {
                host,
                name,
                program,
            } => match program {
                Program::Lb { args } => write!(f, "start in {host}: lb {}", args.join(" ")),
                Program::Command { argv } => write!(f, "start in {host}: {}", argv.join(" ")),
                Program::TcpListener { addr, .. } => {
                    write!(f, "start tcp-listener `{name}` in {host} on {addr}")
                }
                Program::UdpListener { addr } => {
                    write!(f, "start udp-listener `{name}` in {host} on {addr}")
                }
                Program::TcpEcho { addr } => {
                    write!(f, "start tcp-echo `{name}` in {host} on {addr}")
                }
                Program::NfqHolder(h) => write!(
                    f,
                    "start nfq-holder in {host}: queue {}, hold {}, {} together after {} ms",
                    h.queue,
                    h.count,
                    h.verdict,
                    h.delay.as_millis()
                ),
            },
            StepKind::Wait { until, .. } => match until {
                WaitFor::Log { process, text } => write!(f, "wait for `{text}` in {process}'s log"),
                WaitFor::Probe {
                    host,
                    probe: Probe::Listening { proto, addr },
                } => write!(f, "wait until {proto} {addr} listens in {host}"),
                WaitFor::Probe {
                    host,
                    probe: Probe::QueueBound { queue },
                } => write!(f, "wait until queue {queue} is bound in {host}"),
                WaitFor::Datagrams { listener, count } => {
                    write!(f, "wait for {count} datagram(s) at `{listener}`")
                }
            },
            StepKind::Telnet { host, spec, .. } => {
                write!(f, "telnet from {host} to {}", spec.addr)
            }
            StepKind::Connections { host, name, spec } => write!(
                f,
                "connections `{name}`: {} from {host} to {}, a line every {} ms",
                spec.count,
                spec.to,
                spec.interval.as_millis()
            ),
            StepKind::Tally { name, group } => {
                write!(f, "tally `{name}` of connections `{group}`")
            }
            StepKind::UdpBurst { host, spec, .. } => {
                let (to, count) = (spec.to, spec.count);
                if spec.interval.is_zero() {
                    write!(
                        f,
                        "udp-burst from {host} to {to}: {count} datagram(s) back to back"
                    )
                } else {
                    write!(
                        f,
                        "udp-burst from {host} to {to}: {count} datagram(s), {} ms apart",
                        spec.interval.as_millis()
                    )
                }
            }
            StepKind::Conntrack { host, name, .. } => {
                write!(f, "conntrack reading `{name}` in {host}")
            }
            StepKind::Nfqueue { host, name, queue } => {
                write!(f, "nfqueue reading `{name}` of queue {queue} in {host}")
            }
            StepKind::Sleep { duration, .. } => write!(f, "sleep {} ms", duration.as_millis()),
            StepKind::Stop { process, signal } => write!(f, "stop {process} with {signal}"),
            StepKind::Impair { end, ways, .. } => {
                let shown: Vec<String> = ways.iter().map(|(w, p)| format!("{w} {p}")).collect();
                write!(f, "impair the link at {end}: {}", shown.join("; "))
            }
            StepKind::Exec { host, spec, .. } => {
                write!(f, "exec in {host}: {}", spec.argv.join(" "))
            }
        }
    }
}

/// One expectation, with where it was written and the kernels it applies to.
#[derive(Debug, Clone)]
pub struct Expect {
    /// 1-based position.
    pub index: usize,
    /// Line in the file.
    pub line: Option<usize>,
    /// Kernels it applies to (all when `None`).
    pub kernel: Option<KernelRange>,
    /// What other kernels do, shown when this kernel is outside the range.
    pub elsewhere: Option<String>,
    /// What is expected.
    pub kind: ExpectKind,
}

/// What an expectation checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectKind {
    /// A telnet step's outcome and what it read.
    Telnet {
        /// Step name.
        step: String,
        /// Required outcome.
        outcome: Option<TelnetOutcome>,
        /// Required text read from the server.
        received: Option<String>,
    },
    /// A TCP or UDP listener's counts.
    Listener {
        /// Listener name.
        name: String,
        /// TCP: the text received over all connections.
        received: Option<String>,
        /// Bytes received.
        bytes: Option<u64>,
        /// TCP: connections accepted.
        connections: Option<u64>,
        /// UDP: datagrams received.
        datagrams: Option<u64>,
    },
    /// Conntrack counters (as deltas between two readings) and entries.
    Conntrack {
        /// The reading checked.
        read: String,
        /// The earlier reading deltas are taken from.
        since: Option<String>,
        /// Counter name → expected delta.
        delta: IndexMap<String, i64>,
        /// Entries matching the reading's filter.
        entries: Option<u64>,
    },
    /// NFQUEUE counters, as deltas between two readings.
    Nfqueue {
        /// The reading checked.
        read: String,
        /// The earlier reading deltas are taken from.
        since: String,
        /// Counter name → expected delta.
        delta: IndexMap<String, i64>,
    },
    /// A connections group's counters: values of one reading, and deltas between two.
    Tally {
        /// The reading checked.
        read: String,
        /// The earlier reading deltas are taken from.
        since: Option<String>,
        /// Counter name → expected delta.
        delta: IndexMap<String, i64>,
        /// Counter name → expected value.
        counts: IndexMap<String, u64>,
    },
    /// The trace (and optionally the ladder) equals the stored snapshot.
    Trace {
        /// Snapshot name: `<scenario dir>/<name>.snap`.
        snapshot: String,
        /// Append the ladder diagram to the snapshot.
        ladder: bool,
    },
}

/// An expectation as one line: `telnet \`telnet\`: outcome refused`.
impl fmt::Display for ExpectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |t: &str| t.as_bytes().escape_ascii().to_string();
        match self {
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
                    v.push(format!("received \"{}\"", text(r)));
                }
                write!(f, "telnet `{step}`: {}", v.join(", "))
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
                    v.push(format!("received \"{}\"", text(r)));
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
                write!(f, "listener `{name}`: {}", v.join(", "))
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
                    Some(s) => write!(f, "conntrack `{s}` → `{read}`: {}", v.join(", ")),
                    None => write!(f, "conntrack `{read}`: {}", v.join(", ")),
                }
            }
            ExpectKind::Nfqueue { read, since, delta } => {
                let v: Vec<String> = delta.iter().map(|(k, d)| format!("{k} {d:+}")).collect();
                write!(f, "nfqueue `{since}` → `{read}`: {}", v.join(", "))
            }
            ExpectKind::Tally {
                read,
                since,
                delta,
                counts,
            } => {
                let mut v: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
                v.extend(delta.iter().map(|(k, d)| format!("{k} {d:+}")));
                match since {
                    Some(s) => write!(f, "tally `{s}` → `{read}`: {}", v.join(", ")),
                    None => write!(f, "tally `{read}`: {}", v.join(", ")),
                }
            }
            ExpectKind::Trace { snapshot, ladder } => write!(
                f,
                "trace{} matches snapshot `{snapshot}`",
                if *ladder { " and ladder" } else { "" }
            ),
        }
    }
}

/// The conntrack counters a scenario can name (columns of /proc/net/stat/nf_conntrack).
pub const CONNTRACK_COUNTERS: &[&str] = &[
    "entries",
    "clash_resolve",
    "found",
    "new",
    "invalid",
    "ignore",
    "delete",
    "chaintoolong",
    "insert",
    "insert_failed",
    "drop",
    "early_drop",
    "icmp_error",
    "expect_new",
    "expect_create",
    "expect_delete",
    "search_restart",
];

impl Scenario {
    /// Where the snapshot `name` of this scenario is stored: beside the file.
    pub fn snapshot_path(&self, name: &str) -> PathBuf {
        self.path
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("{name}.snap"))
    }
}
