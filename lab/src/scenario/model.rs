//! The scenario file model and its parse + validate step (TOML → [`Scenario`]). No syscalls.
//!
//! The format reference is docs/scenario-format.md. Every mistake is reported with the file,
//! the line of the step or expectation, and what is wrong, as one line.

use crate::backend::{
    BurstSpec, CaptureSpec, ExecSpec, HoldSpec, HoldVerdict, Probe, Program, Proto, StopSignal,
    TelnetOutcome, TelnetSpec,
};
use crate::kernel::KernelRange;
use crate::resolve::{Plan, resolve};
use crate::topology::{Origin, Topology, builtin};
use crate::trace::Ordering;
use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

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
            StepKind::UdpBurst { .. } => "udp-burst",
            StepKind::Conntrack { .. } => "conntrack",
            StepKind::Sleep { .. } => "sleep",
            StepKind::Stop { .. } => "stop",
            StepKind::Exec { .. } => "exec",
        }
    }

    /// The name this step gives to what it creates, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            StepKind::Start { name, .. }
            | StepKind::Telnet { name, .. }
            | StepKind::UdpBurst { name, .. }
            | StepKind::Conntrack { name, .. }
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
            | StepKind::UdpBurst { host, .. }
            | StepKind::Conntrack { host, .. }
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
            StepKind::Sleep { duration, .. } => write!(f, "sleep {} ms", duration.as_millis()),
            StepKind::Stop { process, signal } => write!(f, "stop {process} with {signal}"),
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

// ---- raw TOML ------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Option<String>,
    summary: Option<String>,
    topology: Option<Spanned<toml::Value>>,
    #[serde(default)]
    capture: Vec<Spanned<String>>,
    #[serde(default)]
    trace: Option<Spanned<toml::Table>>,
    #[serde(default)]
    step: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    expect: Vec<Spanned<toml::Table>>,
}

/// Only the inline topology, parsed from the same text so its spans are the file's.
#[derive(Deserialize)]
struct RawInlineTopology {
    topology: Topology,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTrace {
    ordering: Option<String>,
    direction: Option<bool>,
    tcp_options: Option<bool>,
    arp: Option<bool>,
    settle: Option<RawDuration>,
    settle_max: Option<RawDuration>,
}

/// `"2s"`, `"250ms"`, `"1.5s"`, or a number of seconds.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawDuration {
    Text(String),
    Int(i64),
    Float(f64),
}

impl RawDuration {
    fn get(&self) -> Result<Duration, String> {
        match self {
            RawDuration::Int(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
            RawDuration::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1e6 => {
                Ok(Duration::from_secs_f64(*f))
            }
            RawDuration::Text(s) => parse_duration(s),
            _ => Err("a duration must not be negative".into()),
        }
    }
}

/// Parses `2s`, `250ms`, `1.5s`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("min") {
        (n, 60.0)
    } else if t == "0" {
        ("0", 1.0)
    } else {
        return Err(format!(
            "`{s}` is not a duration (write it like \"2s\", \"250ms\" or \"1.5s\")"
        ));
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * unit < 1e6 => {
            Ok(Duration::from_secs_f64(v * unit))
        }
        _ => Err(format!(
            "`{s}` is not a duration (write it like \"2s\", \"250ms\" or \"1.5s\")"
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStart {
    start: String,
    host: String,
    name: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    listen: Option<String>,
    reply: Option<String>,
    queue: Option<u16>,
    count: Option<usize>,
    delay: Option<RawDuration>,
    verdict: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWait {
    wait: String,
    host: Option<String>,
    process: Option<String>,
    line: Option<String>,
    tcp: Option<String>,
    udp: Option<String>,
    queue: Option<u16>,
    listener: Option<String>,
    count: Option<u64>,
    timeout: Option<RawDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTelnet {
    telnet: String,
    host: String,
    name: Option<String>,
    #[serde(default)]
    send: Vec<String>,
    server: Option<String>,
    wait_reply: Option<bool>,
    timeout: Option<RawDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBurst {
    udp_burst: String,
    host: String,
    name: Option<String>,
    count: Option<usize>,
    source_port: Option<u16>,
    interval: Option<RawDuration>,
    payload: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConntrack {
    conntrack: String,
    host: String,
    #[serde(default)]
    filter: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSleep {
    sleep: RawDuration,
    why: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStop {
    stop: String,
    signal: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    exec: Vec<String>,
    host: String,
    name: Option<String>,
    timeout: Option<RawDuration>,
    status: Option<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    telnet: Option<String>,
    listener: Option<String>,
    conntrack: Option<String>,
    trace: Option<String>,
    outcome: Option<String>,
    received: Option<String>,
    bytes: Option<u64>,
    connections: Option<u64>,
    datagrams: Option<u64>,
    since: Option<String>,
    #[serde(default)]
    delta: IndexMap<String, i64>,
    entries: Option<u64>,
    ladder: Option<bool>,
    kernel: Option<String>,
    elsewhere: Option<String>,
}

const STEP_ACTIONS: &[&str] = &[
    "start",
    "wait",
    "telnet",
    "udp-burst",
    "conntrack",
    "sleep",
    "stop",
    "exec",
];

// ---- parse + validate ----------------------------------------------------------------------

struct Cx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Cx<'_> {
    fn line(&self, offset: usize) -> Option<usize> {
        let end = offset.min(self.text.len());
        Some(
            self.text.as_bytes()[..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
        )
    }
    fn err(
        &self,
        line: Option<usize>,
        context: impl Into<String>,
        msg: impl Into<String>,
    ) -> ScenarioError {
        ScenarioError {
            file: self.file.to_string(),
            line,
            context: context.into(),
            message: msg.into(),
        }
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

fn socket_addr(s: &str) -> Result<SocketAddrV4, String> {
    s.parse::<SocketAddrV4>().map_err(|_| {
        format!("`{s}` is not an IPv4 address and port (write it like 10.0.0.50:8080)")
    })
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: shown.clone(),
            line: None,
            context: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates scenario text; `path` names it in errors and locates relative
    /// topology files and snapshots.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let cx = Cx { file: &file, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            cx.err(
                e.span().and_then(|s| cx.line(s.start)),
                "",
                e.message().trim().to_string(),
            )
        })?;
        let name = match raw.name {
            Some(n) => n,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if !valid_name(&name) {
            return Err(cx.err(
                None,
                "name",
                format!("`{name}` is not a usable scenario name: use a-z, 0-9, `-` and `_`"),
            ));
        }

        // Topology: a built-in spec, a file relative to the scenario, or an inline table.
        let plan = match &raw.topology {
            None => resolve(&builtin("single,3").map_err(|e| cx.err(None, "topology", e.to_string()))?),
            Some(t) => match t.get_ref() {
                toml::Value::String(spec) => {
                    let line = cx.line(t.span().start);
                    let topo = if spec.ends_with(".toml") || spec.contains('/') {
                        let p = path.parent().unwrap_or(Path::new(".")).join(spec);
                        Topology::from_file(&p)
                    } else {
                        builtin(spec)
                    }
                    .map_err(|e| cx.err(line, "topology", e.to_string()))?;
                    resolve(&topo)
                }
                toml::Value::Table(_) => {
                    let inline: RawInlineTopology = toml::from_str(text).map_err(|e| {
                        cx.err(e.span().and_then(|s| cx.line(s.start)), "topology", e.message().trim().to_string())
                    })?;
                    let mut topo = inline.topology;
                    topo.origin = Origin::File {
                        path: file.clone(),
                        text: text.to_string(),
                    };
                    if topo.name.is_none() {
                        topo.name = Some(Spanned::new(0..0, name.clone()));
                    }
                    resolve(&topo)
                }
                _ => {
                    return Err(cx.err(
                        cx.line(t.span().start),
                        "topology",
                        "write a built-in (\"single,3\"), a file (\"../fixtures/topologies/router.toml\") or a [topology] table",
                    ));
                }
            },
        }
        .map_err(|e| ScenarioError {
            // The topology error names its own file (this one, for an inline topology) and line.
            file: e.origin.clone(),
            line: e.line,
            context: e.field.clone(),
            message: e.kind.to_string(),
        })?;

        let mut captures = Vec::new();
        for (i, c) in raw.capture.iter().enumerate() {
            let line = cx.line(c.span().start);
            let ctx = format!("capture[{i}]");
            let (host, iface) = match c.get_ref().split_once(':') {
                Some((h, i)) => (h, Some(i)),
                None => (c.get_ref().as_str(), None),
            };
            let interfaces: Vec<String> = if let Some(h) = plan.host(host) {
                h.interfaces.iter().map(|i| i.name.clone()).collect()
            } else if let Some(s) = plan.switches.iter().find(|s| s.name == host) {
                std::iter::once(s.name.clone())
                    .chain(s.ports.iter().map(|p| p.name.clone()))
                    .collect()
            } else {
                return Err(cx.err(line, ctx, unknown_host(&plan, host)));
            };
            let interface = match iface {
                None => None,
                Some(i) => {
                    let full = format!("{host}-{i}");
                    match [i, full.as_str()]
                        .into_iter()
                        .find(|c| *c == "lo" || interfaces.iter().any(|x| x == c))
                    {
                        Some(n) => Some(n.to_string()),
                        None => {
                            return Err(cx.err(
                                line,
                                ctx,
                                format!(
                                    "{host} has no interface `{i}` (interfaces: {}, lo)",
                                    interfaces.join(", ")
                                ),
                            ));
                        }
                    }
                }
            };
            let point = CaptureSpec {
                host: host.to_string(),
                interface,
            };
            if captures.contains(&point) {
                return Err(cx.err(line, ctx, format!("`{}` is captured twice", c.get_ref())));
            }
            captures.push(point);
        }

        let trace = match &raw.trace {
            None => TraceSettings::default(),
            Some(t) => {
                let line = cx.line(t.span().start);
                let r: RawTrace = toml::Value::Table(t.get_ref().clone()).try_into().map_err(
                    |e: toml::de::Error| cx.err(line, "trace", e.message().trim().to_string()),
                )?;
                let d = TraceSettings::default();
                let dur =
                    |v: &Option<RawDuration>, def: Duration| -> Result<Duration, ScenarioError> {
                        v.as_ref()
                            .map(|r| r.get().map_err(|m| cx.err(line, "trace", m)))
                            .unwrap_or(Ok(def))
                    };
                TraceSettings {
                    ordering: match r.ordering.as_deref() {
                        None | Some("captured") => Ordering::Captured,
                        Some("sort-arrivals") => Ordering::SortArrivals,
                        Some(o) => {
                            return Err(cx.err(
                                line,
                                "trace.ordering",
                                format!("unknown ordering `{o}` (captured | sort-arrivals)"),
                            ));
                        }
                    },
                    direction: r.direction.unwrap_or(d.direction),
                    tcp_options: r.tcp_options.unwrap_or(d.tcp_options),
                    arp: r.arp.unwrap_or(d.arp),
                    settle: dur(&r.settle, d.settle)?,
                    settle_max: dur(&r.settle_max, d.settle_max)?,
                }
            }
        };

        let mut v = Validator {
            cx: &cx,
            plan: &plan,
            names: HashMap::new(),
        };
        let mut steps = Vec::new();
        for (i, s) in raw.step.iter().enumerate() {
            let index = i + 1;
            let line = cx.line(s.span().start);
            let kind = v.step(index, line, s.get_ref())?;
            steps.push(Step { index, line, kind });
        }
        let mut expects = Vec::new();
        for (i, e) in raw.expect.iter().enumerate() {
            let index = i + 1;
            let line = cx.line(e.span().start);
            expects.push(v.expect(index, line, e.get_ref())?);
        }
        Ok(Scenario {
            name,
            path: path.to_path_buf(),
            summary: raw.summary,
            plan,
            captures,
            trace,
            steps,
            expects,
        })
    }

    /// Where the snapshot `name` of this scenario is stored: beside the file.
    pub fn snapshot_path(&self, name: &str) -> PathBuf {
        self.path
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("{name}.snap"))
    }
}

fn unknown_host(plan: &Plan, host: &str) -> String {
    let hosts: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
    format!(
        "no host `{host}` in the topology (hosts: {})",
        hosts.join(", ")
    )
}

/// What a name refers to, and which step made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Process,
    TcpListener,
    UdpListener,
    Holder,
    Telnet,
    Burst,
    Conntrack,
    Exec,
}

impl Named {
    fn what(self) -> &'static str {
        match self {
            Named::Process => "a started process",
            Named::TcpListener => "a tcp-listener",
            Named::UdpListener => "a udp-listener",
            Named::Holder => "an nfq-holder",
            Named::Telnet => "a telnet step",
            Named::Burst => "a udp-burst",
            Named::Conntrack => "a conntrack reading",
            Named::Exec => "an exec step",
        }
    }
}

struct Validator<'a> {
    cx: &'a Cx<'a>,
    plan: &'a Plan,
    names: HashMap<String, (Named, usize)>,
}

fn convert<T: serde::de::DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim().replace('\n', " "))
}

impl Validator<'_> {
    fn host(&self, line: Option<usize>, ctx: &str, host: &str) -> Result<String, ScenarioError> {
        if self.plan.host(host).is_none() {
            return Err(self.cx.err(line, ctx, unknown_host(self.plan, host)));
        }
        Ok(host.to_string())
    }

    fn claim(
        &mut self,
        line: Option<usize>,
        ctx: &str,
        name: &str,
        what: Named,
        index: usize,
    ) -> Result<String, ScenarioError> {
        if !valid_name(name) {
            return Err(self.cx.err(
                line,
                ctx,
                format!("name `{name}`: use 1-32 characters from a-z, 0-9, `-` and `_`"),
            ));
        }
        if let Some((_, at)) = self.names.get(name) {
            return Err(self.cx.err(
                line,
                ctx,
                format!("name `{name}` is already used by step {at}: give this step its own `name = \"...\"`"),
            ));
        }
        self.names.insert(name.to_string(), (what, index));
        Ok(name.to_string())
    }

    fn refer(
        &self,
        line: Option<usize>,
        ctx: &str,
        name: &str,
        allowed: &[Named],
    ) -> Result<(), ScenarioError> {
        match self.names.get(name) {
            Some((k, _)) if allowed.contains(k) => Ok(()),
            Some((k, at)) => Err(self.cx.err(
                line,
                ctx,
                format!(
                    "`{name}` (step {at}) is {}, not {}",
                    k.what(),
                    allowed
                        .iter()
                        .map(|a| a.what())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )),
            None => {
                let mut known: Vec<&str> = self
                    .names
                    .iter()
                    .filter(|(_, (k, _))| allowed.contains(k))
                    .map(|(n, _)| n.as_str())
                    .collect();
                known.sort();
                Err(self.cx.err(
                    line,
                    ctx,
                    format!(
                        "no earlier step is named `{name}` (known: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ))
            }
        }
    }

    fn step(
        &mut self,
        index: usize,
        line: Option<usize>,
        t: &toml::Table,
    ) -> Result<StepKind, ScenarioError> {
        let actions: Vec<&str> = STEP_ACTIONS
            .iter()
            .copied()
            .filter(|a| t.contains_key(*a))
            .collect();
        let action = match actions.as_slice() {
            [one] => *one,
            [] => {
                return Err(self.cx.err(
                    line,
                    format!("step {index}"),
                    format!("a step starts with one of: {}", STEP_ACTIONS.join(", ")),
                ));
            }
            many => {
                return Err(self.cx.err(
                    line,
                    format!("step {index}"),
                    format!("a step does one thing; this one has {}", many.join(" and ")),
                ));
            }
        };
        let ctx = format!("step {index} ({action})");
        let e = |m: String| self.cx.err(line, &ctx, m);
        let dur = |d: &Option<RawDuration>, def: Duration| -> Result<Duration, ScenarioError> {
            d.as_ref().map(|d| d.get().map_err(&e)).unwrap_or(Ok(def))
        };
        let wait_default = Duration::from_secs(5);
        Ok(match action {
            "start" => {
                let r: RawStart = convert(t).map_err(&e)?;
                let host = self.host(line, &ctx, &r.host)?;
                let only = |allowed: &[&str]| -> Result<(), ScenarioError> {
                    let given = [
                        ("args", !r.args.is_empty()),
                        ("listen", r.listen.is_some()),
                        ("reply", r.reply.is_some()),
                        ("queue", r.queue.is_some()),
                        ("count", r.count.is_some()),
                        ("delay", r.delay.is_some()),
                        ("verdict", r.verdict.is_some()),
                    ];
                    for (field, set) in given {
                        if set && !allowed.contains(&field) {
                            return Err(e(format!(
                                "`{field}` does not apply to `start = \"{}\"`",
                                r.start
                            )));
                        }
                    }
                    Ok(())
                };
                match r.start.as_str() {
                    "lb" => {
                        only(&["args"])?;
                        if r.args.is_empty() {
                            return Err(e("`start = \"lb\"` needs `args` (e.g. [\"server\", \"--vip\", \"10.0.0.50\", ...])".into()));
                        }
                        let name = self.claim(
                            line,
                            &ctx,
                            r.name.as_deref().unwrap_or("lb"),
                            Named::Process,
                            index,
                        )?;
                        StepKind::Start {
                            host,
                            name,
                            program: Program::Lb { args: r.args },
                        }
                    }
                    "command" => {
                        only(&["args"])?;
                        if r.args.is_empty() {
                            return Err(e(
                                "`start = \"command\"` needs `args`: the program and its arguments"
                                    .into(),
                            ));
                        }
                        let default = r.args[0]
                            .rsplit('/')
                            .next()
                            .unwrap_or("command")
                            .to_string();
                        let name = self.claim(
                            line,
                            &ctx,
                            r.name.as_deref().unwrap_or(&default),
                            Named::Process,
                            index,
                        )?;
                        StepKind::Start {
                            host,
                            name,
                            program: Program::Command { argv: r.args },
                        }
                    }
                    "tcp-listener" | "udp-listener" => {
                        let tcp = r.start == "tcp-listener";
                        only(if tcp {
                            &["listen", "reply"]
                        } else {
                            &["listen"]
                        })?;
                        let Some(listen) = &r.listen else {
                            return Err(e(format!(
                                "`start = \"{}\"` needs `listen = \"ADDRESS:PORT\"`",
                                r.start
                            )));
                        };
                        let addr = socket_addr(listen).map_err(&e)?;
                        let default = if tcp { "tcp-listener" } else { "udp-listener" };
                        let kind = if tcp {
                            Named::TcpListener
                        } else {
                            Named::UdpListener
                        };
                        let name = self.claim(
                            line,
                            &ctx,
                            r.name.as_deref().unwrap_or(default),
                            kind,
                            index,
                        )?;
                        let program = if tcp {
                            Program::TcpListener {
                                addr,
                                reply: r.reply,
                            }
                        } else {
                            Program::UdpListener { addr }
                        };
                        StepKind::Start {
                            host,
                            name,
                            program,
                        }
                    }
                    "nfq-holder" => {
                        only(&["queue", "count", "delay", "verdict"])?;
                        let count = r.count.unwrap_or(1);
                        if count == 0 || count > 1024 {
                            return Err(e(format!("count {count}: hold 1 to 1024 packets")));
                        }
                        let verdict = match r.verdict.as_deref() {
                            None | Some("accept") => HoldVerdict::Accept,
                            Some("drop") => HoldVerdict::Drop,
                            Some(v) => {
                                return Err(e(format!("unknown verdict `{v}` (accept | drop)")));
                            }
                        };
                        let name = self.claim(
                            line,
                            &ctx,
                            r.name.as_deref().unwrap_or("nfq-holder"),
                            Named::Holder,
                            index,
                        )?;
                        StepKind::Start {
                            host,
                            name,
                            program: Program::NfqHolder(HoldSpec {
                                queue: r.queue.unwrap_or(0),
                                count,
                                delay: dur(&r.delay, Duration::ZERO)?,
                                verdict,
                            }),
                        }
                    }
                    other => {
                        return Err(e(format!(
                            "unknown `start = \"{other}\"` (lb | tcp-listener | udp-listener | nfq-holder | command)"
                        )));
                    }
                }
            }
            "wait" => {
                let r: RawWait = convert(t).map_err(&e)?;
                let timeout = dur(&r.timeout, wait_default)?;
                let fields = [
                    ("host", r.host.is_some()),
                    ("process", r.process.is_some()),
                    ("line", r.line.is_some()),
                    ("tcp", r.tcp.is_some()),
                    ("udp", r.udp.is_some()),
                    ("queue", r.queue.is_some()),
                    ("listener", r.listener.is_some()),
                    ("count", r.count.is_some()),
                ];
                let only = |allowed: &[&str]| -> Result<(), ScenarioError> {
                    for (field, set) in fields {
                        if set && !allowed.contains(&field) {
                            return Err(e(format!(
                                "`{field}` does not apply to `wait = \"{}\"`",
                                r.wait
                            )));
                        }
                    }
                    Ok(())
                };
                let until = match r.wait.as_str() {
                    "log" => {
                        only(&["process", "line"])?;
                        let (Some(process), Some(text)) = (r.process, r.line) else {
                            return Err(e("`wait = \"log\"` needs `process` and `line`".into()));
                        };
                        self.refer(line, &ctx, &process, &[Named::Process])?;
                        WaitFor::Log { process, text }
                    }
                    "listening" => {
                        only(&["host", "tcp", "udp"])?;
                        let Some(h) = &r.host else {
                            return Err(e("`wait = \"listening\"` needs `host`".into()));
                        };
                        let host = self.host(line, &ctx, h)?;
                        let (proto, a) = match (&r.tcp, &r.udp) {
                            (Some(a), None) => (Proto::Tcp, a),
                            (None, Some(a)) => (Proto::Udp, a),
                            _ => return Err(e("give exactly one of `tcp = \"ADDR:PORT\"` or `udp = \"ADDR:PORT\"`".into())),
                        };
                        WaitFor::Probe {
                            host,
                            probe: Probe::Listening {
                                proto,
                                addr: socket_addr(a).map_err(&e)?,
                            },
                        }
                    }
                    "queue" => {
                        only(&["host", "queue"])?;
                        let (Some(h), Some(queue)) = (&r.host, r.queue) else {
                            return Err(e("`wait = \"queue\"` needs `host` and `queue`".into()));
                        };
                        WaitFor::Probe {
                            host: self.host(line, &ctx, h)?,
                            probe: Probe::QueueBound { queue },
                        }
                    }
                    "datagrams" => {
                        only(&["listener", "count"])?;
                        let (Some(listener), Some(count)) = (r.listener, r.count) else {
                            return Err(e(
                                "`wait = \"datagrams\"` needs `listener` and `count`".into()
                            ));
                        };
                        self.refer(line, &ctx, &listener, &[Named::UdpListener])?;
                        WaitFor::Datagrams { listener, count }
                    }
                    other => {
                        return Err(e(format!(
                            "unknown `wait = \"{other}\"` (log | listening | queue | datagrams)"
                        )));
                    }
                };
                StepKind::Wait { until, timeout }
            }
            "telnet" => {
                let r: RawTelnet = convert(t).map_err(&e)?;
                let host = self.host(line, &ctx, &r.host)?;
                let addr = socket_addr(&r.telnet).map_err(&e)?;
                if let Some(l) = &r.server {
                    self.refer(line, &ctx, l, &[Named::TcpListener])?;
                }
                let name = self.claim(
                    line,
                    &ctx,
                    r.name.as_deref().unwrap_or("telnet"),
                    Named::Telnet,
                    index,
                )?;
                StepKind::Telnet {
                    host,
                    name,
                    spec: TelnetSpec {
                        addr,
                        send: r.send,
                        server: r.server,
                        wait_reply: r.wait_reply.unwrap_or(false),
                        timeout: dur(&r.timeout, Duration::from_secs(2))?,
                    },
                }
            }
            "udp-burst" => {
                let r: RawBurst = convert(t).map_err(&e)?;
                let host = self.host(line, &ctx, &r.host)?;
                let to = socket_addr(&r.udp_burst).map_err(&e)?;
                let count = r.count.unwrap_or(1);
                if count == 0 || count > 10_000 {
                    return Err(e(format!("count {count}: send 1 to 10000 datagrams")));
                }
                let name = self.claim(
                    line,
                    &ctx,
                    r.name.as_deref().unwrap_or("udp-burst"),
                    Named::Burst,
                    index,
                )?;
                StepKind::UdpBurst {
                    host,
                    name,
                    spec: BurstSpec {
                        to,
                        source_port: r.source_port.unwrap_or(0),
                        count,
                        interval: dur(&r.interval, Duration::ZERO)?,
                        payload: r.payload.unwrap_or_else(|| "datagram {n}\n".into()),
                    },
                }
            }
            "conntrack" => {
                let r: RawConntrack = convert(t).map_err(&e)?;
                let host = self.host(line, &ctx, &r.host)?;
                let name = self.claim(line, &ctx, &r.conntrack, Named::Conntrack, index)?;
                StepKind::Conntrack {
                    host,
                    name,
                    filter: r.filter,
                }
            }
            "sleep" => {
                let r: RawSleep = convert(t).map_err(&e)?;
                let Some(why) = r.why.filter(|w| !w.trim().is_empty()) else {
                    return Err(e(
                        "a sleep needs `why = \"...\"`: sleep only where time itself is the subject; wait for readiness with a `wait` step".into(),
                    ));
                };
                StepKind::Sleep {
                    duration: r.sleep.get().map_err(&e)?,
                    why,
                }
            }
            "stop" => {
                let r: RawStop = convert(t).map_err(&e)?;
                self.refer(line, &ctx, &r.stop, &[Named::Process])?;
                let signal = match r.signal.as_deref() {
                    None | Some("TERM") | Some("SIGTERM") => StopSignal::Term,
                    Some("INT") | Some("SIGINT") => StopSignal::Int,
                    Some("KILL") | Some("SIGKILL") => StopSignal::Kill,
                    Some(s) => return Err(e(format!("unknown signal `{s}` (TERM | INT | KILL)"))),
                };
                StepKind::Stop {
                    process: r.stop,
                    signal,
                }
            }
            "exec" => {
                let r: RawExec = convert(t).map_err(&e)?;
                let host = self.host(line, &ctx, &r.host)?;
                if r.exec.is_empty() {
                    return Err(e("`exec` needs the program and its arguments".into()));
                }
                let default = format!("exec{index}");
                let name = self.claim(
                    line,
                    &ctx,
                    r.name.as_deref().unwrap_or(&default),
                    Named::Exec,
                    index,
                )?;
                StepKind::Exec {
                    host,
                    name,
                    spec: ExecSpec {
                        argv: r.exec,
                        timeout: dur(&r.timeout, wait_default)?,
                    },
                    status: r.status.unwrap_or(0),
                }
            }
            _ => unreachable!("action list and match agree"),
        })
    }

    fn expect(
        &self,
        index: usize,
        line: Option<usize>,
        t: &toml::Table,
    ) -> Result<Expect, ScenarioError> {
        let ctx = format!("expect {index}");
        let e = |m: String| self.cx.err(line, &ctx, m);
        let r: RawExpect = convert(t).map_err(&e)?;
        let subjects = [
            ("telnet", r.telnet.is_some()),
            ("listener", r.listener.is_some()),
            ("conntrack", r.conntrack.is_some()),
            ("trace", r.trace.is_some()),
        ];
        let given: Vec<&str> = subjects.iter().filter(|s| s.1).map(|s| s.0).collect();
        if given.len() != 1 {
            return Err(e(format!(
                "an expectation names exactly one subject: telnet, listener, conntrack or trace (found {})",
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(", ")
                }
            )));
        }
        let subject = given[0];
        let fields = [
            ("outcome", r.outcome.is_some()),
            ("received", r.received.is_some()),
            ("bytes", r.bytes.is_some()),
            ("connections", r.connections.is_some()),
            ("datagrams", r.datagrams.is_some()),
            ("since", r.since.is_some()),
            ("delta", !r.delta.is_empty()),
            ("entries", r.entries.is_some()),
            ("ladder", r.ladder.is_some()),
        ];
        let only = |allowed: &[&str]| -> Result<(), ScenarioError> {
            for (field, set) in fields {
                if set && !allowed.contains(&field) {
                    return Err(e(format!(
                        "`{field}` does not apply to a {subject} expectation"
                    )));
                }
            }
            if !fields.iter().any(|(f, set)| *set && allowed.contains(f)) && subject != "trace" {
                return Err(e(format!(
                    "nothing to check: give one of {}",
                    allowed.join(", ")
                )));
            }
            Ok(())
        };
        let kind = match subject {
            "telnet" => {
                only(&["outcome", "received"])?;
                let step = r.telnet.unwrap_or_default();
                self.refer(line, &ctx, &step, &[Named::Telnet])?;
                let outcome = match r.outcome.as_deref() {
                    None => None,
                    Some(o) => Some(TelnetOutcome::parse(o).ok_or_else(|| {
                        e(format!(
                            "unknown outcome `{o}` (connected | refused | timeout | unreachable)"
                        ))
                    })?),
                };
                ExpectKind::Telnet {
                    step,
                    outcome,
                    received: r.received,
                }
            }
            "listener" => {
                let name = r.listener.unwrap_or_default();
                self.refer(line, &ctx, &name, &[Named::TcpListener, Named::UdpListener])?;
                match self.names.get(&name).map(|n| n.0) {
                    Some(Named::TcpListener) => only(&["received", "bytes", "connections"])?,
                    _ => only(&["bytes", "datagrams"])?,
                }
                ExpectKind::Listener {
                    name,
                    received: r.received,
                    bytes: r.bytes,
                    connections: r.connections,
                    datagrams: r.datagrams,
                }
            }
            "conntrack" => {
                only(&["since", "delta", "entries"])?;
                let read = r.conntrack.unwrap_or_default();
                self.refer(line, &ctx, &read, &[Named::Conntrack])?;
                if let Some(s) = &r.since {
                    self.refer(line, &ctx, s, &[Named::Conntrack])?;
                    let (a, b) = (self.names[s].1, self.names[&read].1);
                    if a >= b {
                        return Err(e(format!(
                            "`since = \"{s}\"` must be a reading taken before `{read}`"
                        )));
                    }
                } else if !r.delta.is_empty() {
                    return Err(e("`delta` needs `since = \"<earlier reading>\"`".into()));
                }
                for k in r.delta.keys() {
                    if !CONNTRACK_COUNTERS.contains(&k.as_str()) {
                        return Err(e(format!(
                            "unknown conntrack counter `{k}` (known: {})",
                            CONNTRACK_COUNTERS.join(", ")
                        )));
                    }
                }
                ExpectKind::Conntrack {
                    read,
                    since: r.since,
                    delta: r.delta,
                    entries: r.entries,
                }
            }
            _ => {
                only(&["ladder"])?;
                let snapshot = r.trace.unwrap_or_default();
                if !valid_name(&snapshot) {
                    return Err(e(format!(
                        "snapshot name `{snapshot}`: use a-z, 0-9, `-` and `_`"
                    )));
                }
                ExpectKind::Trace {
                    snapshot,
                    ladder: r.ladder.unwrap_or(false),
                }
            }
        };
        let kernel = match &r.kernel {
            None => None,
            Some(k) => Some(
                k.parse::<KernelRange>()
                    .map_err(|m| e(format!("kernel: {m}")))?,
            ),
        };
        if kernel.is_some() && r.elsewhere.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(e(
                "an expectation limited to a kernel range needs `elsewhere = \"...\"`: what other kernels do".into(),
            ));
        }
        Ok(Expect {
            index,
            line,
            kernel,
            elsewhere: r.elsewhere,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, Path::new("scenarios/t.toml"))
    }

    const OK: &str = r#"
summary = "two datagrams"
topology = "single,3"
capture = ["h2", "h3:eth0"]

[trace]
ordering = "sort-arrivals"
settle = "100ms"

[[step]]
start = "udp-listener"
host = "h2"
listen = "10.0.0.2:9000"
name = "server"

[[step]]
udp-burst = "10.0.0.2:9000"
host = "h3"
count = 2

[[step]]
wait = "datagrams"
listener = "server"
count = 2
timeout = "1s"

[[step]]
conntrack = "after"
host = "h2"
filter = ["-p", "udp"]

[[expect]]
listener = "server"
datagrams = 2

[[expect]]
conntrack = "after"
entries = 0
kernel = ">=6.12"
elsewhere = "not measured"

[[expect]]
trace = "t"
"#;

    #[test]
    fn parses_a_full_scenario() {
        let s = parse(OK).unwrap();
        assert_eq!(s.name, "t");
        assert_eq!(s.captures.len(), 2);
        assert_eq!(s.captures[1].interface.as_deref(), Some("h3-eth0"));
        assert_eq!(s.trace.ordering, Ordering::SortArrivals);
        assert_eq!(s.trace.settle, Duration::from_millis(100));
        assert_eq!(s.steps.len(), 4);
        assert_eq!(s.steps[1].line, Some(16));
        assert!(matches!(
            &s.steps[1].kind,
            StepKind::UdpBurst { spec, .. } if spec.count == 2 && spec.payload == "datagram {n}\n"
        ));
        assert_eq!(s.expects.len(), 3);
        assert!(s.expects[1].kernel.is_some());
        assert_eq!(s.snapshot_path("t"), Path::new("scenarios/t.snap"));
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_line_and_step() {
        let e = err("[[step]]\nstart = \"udp-listener\"\nhost = \"h9\"\nlisten = \"10.0.0.2:1\"\n");
        assert_eq!(
            e,
            "scenarios/t.toml:1: step 1 (start): no host `h9` in the topology (hosts: h1, h2, h3)"
        );
        let e = err("\n[[step]]\ntelnet = \"10.0.0.50\"\nhost = \"h3\"\n");
        assert!(
            e.starts_with(
                "scenarios/t.toml:2: step 1 (telnet): `10.0.0.50` is not an IPv4 address and port"
            ),
            "{e}"
        );
        let e = err("[[step]]\ntelnet = \"10.0.0.50:1\"\nhost = \"h3\"\nsned = [\"x\"]\n");
        assert!(e.contains("step 1 (telnet): unknown field `sned`"), "{e}");
        let e = err("[[step]]\nhost = \"h3\"\n");
        assert!(e.contains("a step starts with one of: start, wait"), "{e}");
        let e = err("[[step]]\nsleep = \"1s\"\n");
        assert!(e.contains("a sleep needs `why"), "{e}");
        let e = err("bogus = 1\n");
        assert!(
            e.starts_with("scenarios/t.toml:1: unknown field `bogus`"),
            "{e}"
        );
    }

    #[test]
    fn names_must_exist_be_unique_and_of_the_right_kind() {
        let e = err("[[step]]\nwait = \"log\"\nprocess = \"lb\"\nline = \"ready:\"\n");
        assert!(
            e.contains("no earlier step is named `lb` (known: none)"),
            "{e}"
        );
        let two = "[[step]]\nstart = \"lb\"\nhost = \"h1\"\nargs = [\"server\"]\n[[step]]\nstart = \"lb\"\nhost = \"h2\"\nargs = [\"agent\"]\n";
        let e = err(two);
        assert!(
            e.starts_with(
                "scenarios/t.toml:5: step 2 (start): name `lb` is already used by step 1"
            ),
            "{e}"
        );
        let e = err(
            "[[step]]\ntelnet = \"10.0.0.50:1\"\nhost = \"h3\"\n[[expect]]\nlistener = \"telnet\"\nbytes = 1\n",
        );
        assert!(
            e.contains("`telnet` (step 1) is a telnet step, not a tcp-listener or a udp-listener"),
            "{e}"
        );
    }

    #[test]
    fn expectations_are_checked() {
        let base = "[[step]]\nconntrack = \"a\"\nhost = \"h1\"\n[[step]]\nconntrack = \"b\"\nhost = \"h1\"\n";
        let e = err(&format!(
            "{base}[[expect]]\nconntrack = \"b\"\nsince = \"a\"\ndelta = {{ clash = 1 }}\n"
        ));
        assert!(e.contains("unknown conntrack counter `clash`"), "{e}");
        let e = err(&format!(
            "{base}[[expect]]\nconntrack = \"a\"\nsince = \"b\"\ndelta = {{ drop = 0 }}\n"
        ));
        assert!(e.contains("must be a reading taken before"), "{e}");
        let e = err(&format!(
            "{base}[[expect]]\nconntrack = \"b\"\nentries = 1\nkernel = \">=6.12\"\n"
        ));
        assert!(e.contains("needs `elsewhere"), "{e}");
        let e = err(&format!(
            "{base}[[expect]]\nconntrack = \"b\"\noutcome = \"refused\"\n"
        ));
        assert!(
            e.contains("`outcome` does not apply to a conntrack expectation"),
            "{e}"
        );
        let e = err(&format!(
            "{base}[[expect]]\nconntrack = \"b\"\ntrace = \"x\"\n"
        ));
        assert!(e.contains("exactly one subject"), "{e}");
    }

    #[test]
    fn inline_topology_keeps_file_lines() {
        let text = "name = \"x\"\n[topology]\nlinks = [[\"h1:eth0\", \"h9\"]]\n[topology.hosts.h1]\ninterfaces = { eth0 = \"10.0.0.1/24\" }\n";
        let e = err(text);
        assert!(
            e.starts_with("scenarios/t.toml:3: links[0]: unknown node `h9`"),
            "{e}"
        );
        let ok = "[topology]\nlinks = [[\"a:eth0\", \"b:eth0\"]]\n[topology.hosts.a]\ninterfaces = { eth0 = \"10.9.0.1/24\" }\n[topology.hosts.b]\ninterfaces = { eth0 = \"10.9.0.2/24\" }\n";
        let s = parse(ok).unwrap();
        assert_eq!(s.plan.hosts.len(), 2);
        assert_eq!(s.plan.name, "t");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
