//! `lb`: the load balancer binary: `lb server` (the balancer) and `lb agent` (its backend side).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use lb::HashMode;
use lb::config::{
    BackendEntry, ControlSection, Dur, Endpoint, FileConfig, IntakeKind, Proto, VerdictMode,
    parse_backend_flag, parse_duration, parse_endpoint,
};
use lb::encap::ForwardMode;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod agent;
mod control_agent;
mod control_server;
mod ctl;
mod intake;
mod lines;
mod pathctl;
mod server;
mod sys;

/// Layer-4 load balancer: NFQUEUE intake, Maglev with a connection table, Caplance-compatible
/// UDP encapsulation or L2 direct server return.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum IntakeArg {
    /// NFQUEUE rules on the VIP, DROP verdict after forwarding (the kernel never answers).
    Nfqueue,
    /// AF_PACKET, no rule: the kernel answers the VIP's SYNs with RST (seed bug, on purpose).
    Packet,
}

#[derive(Clone, Copy, ValueEnum)]
enum ForwardArg {
    /// The whole packet in a UDP datagram to backend:1337 (Caplance's wire format).
    Encap,
    /// Destination MAC rewritten to the backend's; the backend holds the VIP on lo.
    Dsr,
    /// DSR sent by the kernel: accept verdict with a per-backend mark, policy routing.
    DsrKernel,
}

#[derive(Clone, Copy, ValueEnum)]
enum VerdictArg {
    /// The verdicts of a receive batch in one sendmsg (one NFQNL_MSG_VERDICT_BATCH per run of equal verdicts).
    Batch,
    /// One packet per receive, one verdict per packet.
    PerPacket,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProtoArg {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, ValueEnum)]
enum HashArg {
    /// Source and destination address and port, and the protocol.
    FiveTuple,
    /// Source address and port only (Caplance).
    SrcIpPort,
}

#[derive(Subcommand)]
enum Cmd {
    /// Balance a VIP's packets over backends until SIGINT/SIGTERM.
    Server(ServerArgs),
    /// Backend side of the encapsulation: VIP on lo, re-inject what arrives on :1337;
    /// with --server, register with the balancer and keep the health beat.
    Agent(AgentArgs),
    /// Ask a running server or agent over its unix socket.
    Ctl(CtlArgs),
}

/// The registration protocol's flags, shared by server and agent.
#[derive(clap::Args)]
struct ControlArgs {
    /// File holding the shared secret (≥ 16 bytes) that agents must prove.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Silence that ends a registration (e.g. 30s, 500ms).
    #[arg(long, value_parser = parse_duration)]
    read_timeout: Option<Duration>,
    /// Time allowed from connect to REGISTERED.
    #[arg(long, value_parser = parse_duration)]
    register_timeout: Option<Duration>,
    /// How often an agent sends HEALTH.
    #[arg(long, value_parser = parse_duration)]
    health_interval: Option<Duration>,
    /// The `lb ctl` socket.
    #[arg(long)]
    ctl_socket: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// TOML configuration (see docs/lb.md); flags override its fields.
    #[arg(long, short = 'f')]
    config: Option<PathBuf>,
    /// The virtual IP.
    #[arg(long)]
    vip: Option<Ipv4Addr>,
    /// How the VIP's packets are received.
    #[arg(long, value_enum)]
    intake: Option<IntakeArg>,
    /// How packets are forwarded.
    #[arg(long, value_enum)]
    forward: Option<ForwardArg>,
    /// A backend: NAME=IP[,weight=W][,mac=MAC]; repeatable; replaces the file's backends.
    #[arg(long = "backend", value_parser = parse_backend_flag)]
    backends: Vec<BackendEntry>,
    /// Interface for the VIP (default: the one whose subnet holds it).
    #[arg(long)]
    interface: Option<String>,
    /// Queue only these protocols (repeatable; default tcp and udp).
    #[arg(long = "proto", value_enum)]
    protocols: Vec<ProtoArg>,
    /// Queue only these destination ports (repeatable; default all).
    #[arg(long = "port")]
    ports: Vec<u16>,
    /// Which fields pick a new flow's backend.
    #[arg(long, value_enum)]
    hash: Option<HashArg>,
    /// First NFQUEUE number.
    #[arg(long)]
    queue: Option<u16>,
    /// Number of queues and data-path threads.
    #[arg(long)]
    queues: Option<u16>,
    /// Kernel queue length per queue.
    #[arg(long)]
    queue_len: Option<u32>,
    /// Accept packets instead of dropping them when a queue is full.
    #[arg(long)]
    fail_open: bool,
    /// Let the kernel accept packets while no balancer is bound (iptables --queue-bypass).
    #[arg(long)]
    queue_bypass: bool,
    /// Packets per receive batch.
    #[arg(long)]
    batch: Option<usize>,
    /// NFQUEUE verdicts: one per batch, or one per packet like Caplance (for comparison).
    #[arg(long, value_enum)]
    verdict: Option<VerdictArg>,
    /// Maglev table size (prime).
    #[arg(long)]
    table_size: Option<u32>,
    /// Tracked flows (0: no connection table, Maglev only, like Caplance).
    #[arg(long)]
    conn_capacity: Option<usize>,
    /// MTU of the path to the backends.
    #[arg(long)]
    mtu: Option<u16>,
    /// Clamp forwarded SYNs' MSS to fit the encapsulation.
    #[arg(long)]
    clamp_mss: bool,
    /// Accept agent registrations on IP[:PORT] (TCP, default port 1338).
    #[arg(long, value_parser = parse_endpoint)]
    control: Option<SocketAddrV4>,
    /// Unregistered control connections served at once.
    #[arg(long)]
    max_pending: Option<usize>,
    /// Active checks: TCP connect to this port on each backend.
    #[arg(long)]
    check_port: Option<u16>,
    /// Time between two checks of a backend.
    #[arg(long, value_parser = parse_duration)]
    check_interval: Option<Duration>,
    /// How long a check's connect may take.
    #[arg(long, value_parser = parse_duration)]
    check_timeout: Option<Duration>,
    /// Successes that bring a backend back up.
    #[arg(long)]
    check_rise: Option<u32>,
    /// Failures that take a backend down.
    #[arg(long)]
    check_fall: Option<u32>,
    /// How long `lb ctl drain` keeps tracked flows by default.
    #[arg(long, value_parser = parse_duration)]
    drain_timeout: Option<Duration>,
    #[command(flatten)]
    ctl: ControlArgs,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// TOML configuration (see docs/lb.md); flags override its fields.
    #[arg(long, short = 'f')]
    config: Option<PathBuf>,
    /// The virtual IP.
    #[arg(long)]
    vip: Option<Ipv4Addr>,
    /// Where encapsulated packets arrive: IP or IP:PORT (default 0.0.0.0:1337).
    #[arg(long)]
    listen: Option<String>,
    /// Register with the server at IP[:PORT] (default port 1338).
    #[arg(long, value_parser = parse_endpoint)]
    server: Option<SocketAddrV4>,
    /// The name to register (default: the host name).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    ctl: ControlArgs,
}

#[derive(clap::Args)]
struct CtlArgs {
    /// The socket (default: /run/lb/server.sock, or /run/lb/agent.sock for agent commands).
    #[arg(long, short = 's', global = true)]
    socket: Option<PathBuf>,
    /// Talk to the agent's default socket.
    #[arg(long, global = true)]
    agent: bool,
    /// Print the answer as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    verb: CtlVerb,
}

#[derive(Subcommand)]
enum CtlVerb {
    /// State and counters.
    State,
    /// Server: backends with health, traffic and tracked flows.
    Backends,
    /// Server: no new flows to NAME; tracked flows kept until they end or the deadline.
    Drain {
        /// The backend.
        name: String,
        /// How long tracked flows are kept (default: the server's drain_timeout).
        #[arg(long)]
        deadline: Option<String>,
    },
    /// Server: end a drain.
    Undrain {
        /// The backend.
        name: String,
    },
    /// Agent: ask the server for no new flows (PAUSE).
    Pause,
    /// Agent: take new flows again (RESUME).
    Resume,
    /// Agent: leave the server (DEREGISTER) and stay out until `register`.
    Deregister,
    /// Agent: register again after `deregister`.
    Register,
}

/// Bad input: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

fn load(path: &Option<PathBuf>) -> Result<FileConfig> {
    match path {
        Some(p) => FileConfig::load(p).map_err(|e| BadInput(e.to_string()).into()),
        None => Ok(FileConfig::default()),
    }
}

fn server_settings(a: ServerArgs) -> Result<server::ServerSettings> {
    let file = load(&a.config)?;
    let vip = a
        .vip
        .or(file.vip)
        .ok_or_else(|| BadInput("vip: give --vip or `vip` in the config file".into()))?;
    let mut s = file.server;
    if let Some(i) = a.intake {
        s.intake = match i {
            IntakeArg::Nfqueue => IntakeKind::Nfqueue,
            IntakeArg::Packet => IntakeKind::Packet,
        };
    }
    if let Some(f) = a.forward {
        s.forward = match f {
            ForwardArg::Encap => ForwardMode::UdpEncap,
            ForwardArg::Dsr => ForwardMode::Dsr,
            ForwardArg::DsrKernel => ForwardMode::DsrKernel,
        };
    }
    if !a.backends.is_empty() {
        s.backends = a.backends;
    }
    if a.interface.is_some() {
        s.interface = a.interface;
    }
    if !a.protocols.is_empty() {
        s.protocols = a
            .protocols
            .iter()
            .map(|p| match p {
                ProtoArg::Tcp => Proto::Tcp,
                ProtoArg::Udp => Proto::Udp,
            })
            .collect();
        s.protocols.dedup();
    }
    if !a.ports.is_empty() {
        s.ports = a.ports;
    }
    if let Some(h) = a.hash {
        s.hash = match h {
            HashArg::FiveTuple => HashMode::FiveTuple,
            HashArg::SrcIpPort => HashMode::SrcIpPort,
        };
    }
    s.queue = a.queue.unwrap_or(s.queue);
    s.queues = a.queues.unwrap_or(s.queues);
    s.queue_len = a.queue_len.unwrap_or(s.queue_len);
    s.fail_open |= a.fail_open;
    s.queue_bypass |= a.queue_bypass;
    s.batch = a.batch.unwrap_or(s.batch);
    if let Some(v) = a.verdict {
        s.verdict = match v {
            VerdictArg::Batch => VerdictMode::Batch,
            VerdictArg::PerPacket => VerdictMode::PerPacket,
        };
    }
    s.table_size = a.table_size.unwrap_or(s.table_size);
    s.conn_capacity = a.conn_capacity.unwrap_or(s.conn_capacity);
    s.mtu = a.mtu.unwrap_or(s.mtu);
    s.clamp_mss |= a.clamp_mss;
    if let Some(c) = a.control {
        s.control = Some(Endpoint(c));
    }
    s.max_pending = a.max_pending.unwrap_or(s.max_pending);
    if a.check_port.is_some() {
        s.check.port = a.check_port;
    }
    if let Some(d) = a.check_interval {
        s.check.interval = Dur(d);
    }
    if let Some(d) = a.check_timeout {
        s.check.timeout = Dur(d);
    }
    s.check.rise = a.check_rise.unwrap_or(s.check.rise);
    s.check.fall = a.check_fall.unwrap_or(s.check.fall);
    if let Some(d) = a.drain_timeout {
        s.drain_timeout = Dur(d);
    }
    let ctl_socket_given = a.ctl.ctl_socket.is_some();
    if let Some(p) = a.ctl.ctl_socket.clone() {
        s.ctl_socket = p;
    }
    let control = control_section(file.control, &a.ctl);
    let merged = FileConfig {
        vip: Some(vip),
        server: s,
        agent: file.agent,
        control,
    };
    if let Err((field, msg)) = merged.validate() {
        bail!(BadInput(format!("{field}: {msg}")));
    }
    let secret = load_secret(&merged.control)?;
    if let Err(e) = lb::State::new(lb::Config {
        table_size: merged.server.table_size,
        ..Default::default()
    }) {
        bail!(BadInput(format!("server.{e}")));
    }
    Ok(server::ServerSettings {
        vip,
        server: merged.server,
        control: merged.control,
        secret,
        ctl_socket_given,
    })
}

fn control_section(mut c: ControlSection, a: &ControlArgs) -> ControlSection {
    if a.secret_file.is_some() {
        c.secret_file = a.secret_file.clone();
    }
    if let Some(d) = a.read_timeout {
        c.read_timeout = Dur(d);
    }
    if let Some(d) = a.register_timeout {
        c.register_timeout = Dur(d);
    }
    if let Some(d) = a.health_interval {
        c.health_interval = Dur(d);
    }
    c
}

fn load_secret(c: &ControlSection) -> Result<Option<lb::control::Secret>> {
    let Some(path) = &c.secret_file else {
        return Ok(None);
    };
    let text = std::fs::read(path).map_err(|e| {
        BadInput(format!(
            "control.secret_file: cannot read {}: {e}",
            path.display()
        ))
    })?;
    lb::control::Secret::new(&text)
        .map(Some)
        .map_err(|e| BadInput(format!("control.secret_file: {}: {e}", path.display())).into())
}

fn agent_settings(a: AgentArgs) -> Result<agent::AgentSettings> {
    let file = load(&a.config)?;
    let vip = a
        .vip
        .or(file.vip)
        .ok_or_else(|| BadInput("vip: give --vip or `vip` in the config file".into()))?;
    let mut data_ip = file.agent.data_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut port = file.agent.port;
    if let Some(l) = a.listen {
        if let Ok(sa) = l.parse::<SocketAddrV4>() {
            (data_ip, port) = (*sa.ip(), sa.port());
        } else {
            data_ip = l
                .parse()
                .map_err(|_| BadInput(format!("--listen {l:?}: want IP or IP:PORT")))?;
        }
    }
    let mut agent = file.agent;
    if let Some(sv) = a.server {
        agent.server = Some(Endpoint(sv));
    }
    if a.name.is_some() {
        agent.name = a.name.clone();
    }
    let ctl_socket_given = a.ctl.ctl_socket.is_some();
    if let Some(p) = a.ctl.ctl_socket.clone() {
        agent.ctl_socket = p;
    }
    let control = control_section(file.control, &a.ctl);
    let merged = FileConfig {
        vip: Some(vip),
        server: file.server,
        agent,
        control,
    };
    if let Err((field, msg)) = merged.validate() {
        bail!(BadInput(format!("{field}: {msg}")));
    }
    let secret = load_secret(&merged.control)?;
    let name = match merged.agent.name.clone() {
        Some(n) => n,
        None => {
            let h = hostname();
            if !lb::control::valid_name(&h) {
                bail!(BadInput(format!(
                    "agent.name: the host name {h:?} is no valid backend name; give --name"
                )));
            }
            h
        }
    };
    Ok(agent::AgentSettings {
        vip,
        data_ip,
        port,
        batch: merged.agent.batch,
        server: merged.agent.server.map(|e| e.0),
        name,
        ctl_socket: merged.agent.ctl_socket.clone(),
        ctl_socket_given,
        retry_max: merged.agent.retry_max.0,
        control: merged.control,
        secret,
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn ctl_run(a: CtlArgs) -> Result<()> {
    let (req, agent_verb) = match &a.verb {
        CtlVerb::State => (ctl_req("state"), a.agent),
        CtlVerb::Backends => (ctl_req("backends"), false),
        CtlVerb::Drain { name, deadline } => {
            if let Some(d) = deadline {
                parse_duration(d).map_err(|e| BadInput(format!("--deadline {e}")))?;
            }
            (
                ctl::Request {
                    cmd: "drain".into(),
                    name: Some(name.clone()),
                    deadline: deadline.clone(),
                },
                false,
            )
        }
        CtlVerb::Undrain { name } => (
            ctl::Request {
                cmd: "undrain".into(),
                name: Some(name.clone()),
                deadline: None,
            },
            false,
        ),
        CtlVerb::Pause => (ctl_req("pause"), true),
        CtlVerb::Resume => (ctl_req("resume"), true),
        CtlVerb::Deregister => (ctl_req("deregister"), true),
        CtlVerb::Register => (ctl_req("register"), true),
    };
    let path = a.socket.clone().unwrap_or_else(|| {
        PathBuf::from(if agent_verb {
            "/run/lb/agent.sock"
        } else {
            "/run/lb/server.sock"
        })
    });
    let answer = ctl::call(&path, &req)?;
    if answer.get("ok").and_then(serde_json::Value::as_bool) != Some(true) {
        let e = answer
            .get("error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("refused without a reason");
        if a.json {
            println!("{answer}");
        }
        bail!(BadInput(format!("{}: {e}", req.cmd)));
    }
    if a.json {
        println!("{answer}");
    } else {
        print!("{}", ctl::render(&req.cmd, &answer));
    }
    Ok(())
}

fn ctl_req(cmd: &str) -> ctl::Request {
    ctl::Request {
        cmd: cmd.into(),
        ..Default::default()
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Server(a) => server::run(server_settings(a)?).context("lb server"),
        Cmd::Agent(a) => agent::run(agent_settings(a)?).context("lb agent"),
        Cmd::Ctl(a) => ctl_run(a).context("ctl"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb: {e:#}");
            match e.chain().any(|c| c.is::<BadInput>()) {
                true => ExitCode::from(2),
                false => ExitCode::from(1),
            }
        }
    }
}
