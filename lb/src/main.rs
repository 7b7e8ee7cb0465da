//! `lb`: the load balancer binary: `lb server` (the balancer) and `lb agent` (its backend side).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use lb::HashMode;
use lb::config::{BackendEntry, FileConfig, IntakeKind, Proto, VerdictMode, parse_backend_flag};
use lb::encap::ForwardMode;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;

mod agent;
mod intake;
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
}

#[derive(Clone, Copy, ValueEnum)]
enum VerdictArg {
    /// One NFQNL_MSG_VERDICT_BATCH per receive batch.
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
    /// Backend side of the encapsulation: VIP on lo, re-inject what arrives on :1337.
    Agent(AgentArgs),
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
    let merged = FileConfig {
        vip: Some(vip),
        server: s,
        agent: file.agent,
    };
    if let Err((field, msg)) = merged.validate() {
        bail!(BadInput(format!("{field}: {msg}")));
    }
    if let Err(e) = lb::State::new(lb::Config {
        table_size: merged.server.table_size,
        ..Default::default()
    }) {
        bail!(BadInput(format!("server.{e}")));
    }
    Ok(server::ServerSettings {
        vip,
        server: merged.server,
    })
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
    Ok(agent::AgentSettings {
        vip,
        data_ip,
        port,
        batch: file.agent.batch,
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Server(a) => server::run(server_settings(a)?).context("lb server"),
        Cmd::Agent(a) => agent::run(agent_settings(a)?).context("lb agent"),
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
