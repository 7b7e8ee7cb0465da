//! What the user typed: the clap types of `lb server`, `lb agent` and `lb ctl` (no syscalls).

use clap::{Parser, Subcommand, ValueEnum};
use lb_core::config::BackendEntry;
use lb_core::config::{parse_backend_flag, parse_endpoint};
use lb_core::duration;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// Layer-4 load balancer: NFQUEUE intake, Maglev with a connection table, Caplance-compatible
/// UDP encapsulation or L2 direct server return.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum IntakeArg {
    /// NFQUEUE rules on the VIP, DROP verdict after forwarding (the kernel never answers).
    Nfqueue,
    /// AF_PACKET, no rule: the kernel answers the VIP's SYNs with RST (seed bug, on purpose).
    Packet,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ForwardArg {
    /// The whole packet in a UDP datagram to backend:1337 (Caplance's wire format).
    Encap,
    /// Destination MAC rewritten to the backend's; the backend holds the VIP on lo.
    Dsr,
    /// DSR sent by the kernel: accept verdict with a per-backend mark, policy routing.
    DsrKernel,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum VerdictArg {
    /// The verdicts of a receive batch in one sendmsg (one NFQNL_MSG_VERDICT_BATCH per run of equal verdicts).
    Batch,
    /// One packet per receive, one verdict per packet.
    PerPacket,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ProtoArg {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum HashArg {
    /// Source and destination address and port, and the protocol.
    FiveTuple,
    /// Source address and port only (Caplance).
    SrcIpPort,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Balance a VIP's packets over backends until SIGINT/SIGTERM.
    Server(Box<ServerArgs>),
    /// Backend side of the encapsulation: VIP on lo, re-inject what arrives on :1337;
    /// with --server, register with the balancer and keep the health beat.
    Agent(AgentArgs),
    /// Ask a running server or agent over its unix socket.
    Ctl(CtlArgs),
}

/// The registration protocol's flags, shared by server and agent.
#[derive(clap::Args)]
pub(crate) struct ControlArgs {
    /// File holding the shared secret (≥ 16 bytes) that agents must prove.
    #[arg(long)]
    pub(crate) secret_file: Option<PathBuf>,
    /// Silence that ends a registration (e.g. 30s, 500ms).
    #[arg(long, value_parser = duration::parse)]
    pub(crate) read_timeout: Option<Duration>,
    /// Time allowed from connect to REGISTERED.
    #[arg(long, value_parser = duration::parse)]
    pub(crate) register_timeout: Option<Duration>,
    /// How often an agent sends HEALTH.
    #[arg(long, value_parser = duration::parse)]
    pub(crate) health_interval: Option<Duration>,
    /// The `lb ctl` socket: `@NAME` (abstract, scoped to this network namespace; default
    /// @lb/server or @lb/agent) or a file path.
    #[arg(long)]
    pub(crate) ctl_socket: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct ServerArgs {
    /// TOML configuration (see docs/lb.md); flags override its fields.
    #[arg(long, short = 'f')]
    pub(crate) config: Option<PathBuf>,
    /// The virtual IP.
    #[arg(long)]
    pub(crate) vip: Option<Ipv4Addr>,
    /// How the VIP's packets are received.
    #[arg(long, value_enum)]
    pub(crate) intake: Option<IntakeArg>,
    /// How packets are forwarded.
    #[arg(long, value_enum)]
    pub(crate) forward: Option<ForwardArg>,
    /// A backend: NAME=IP[,weight=W][,mac=MAC]; repeatable; replaces the file's backends.
    #[arg(long = "backend", value_parser = parse_backend_flag)]
    pub(crate) backends: Vec<BackendEntry>,
    /// Interface for the VIP (default: the one whose subnet holds it).
    #[arg(long)]
    pub(crate) interface: Option<String>,
    /// Queue only these protocols (repeatable; default tcp and udp).
    #[arg(long = "proto", value_enum)]
    pub(crate) protocols: Vec<ProtoArg>,
    /// Queue only these destination ports (repeatable; default all).
    #[arg(long = "port")]
    pub(crate) ports: Vec<u16>,
    /// Which fields pick a new flow's backend.
    #[arg(long, value_enum)]
    pub(crate) hash: Option<HashArg>,
    /// The text the flow-hash key is made from: balancers that must agree get the same one.
    #[arg(long, value_name = "TEXT")]
    pub(crate) hash_key: Option<String>,
    /// First NFQUEUE number.
    #[arg(long)]
    pub(crate) queue: Option<u16>,
    /// Number of queues and data-path threads.
    #[arg(long)]
    pub(crate) queues: Option<u16>,
    /// Kernel queue length per queue.
    #[arg(long)]
    pub(crate) queue_len: Option<u32>,
    /// Accept packets instead of dropping them when a queue is full.
    #[arg(long)]
    pub(crate) fail_open: bool,
    /// Let the kernel accept packets while no balancer is bound (iptables --queue-bypass).
    #[arg(long)]
    pub(crate) queue_bypass: bool,
    /// Packets per receive batch.
    #[arg(long)]
    pub(crate) batch: Option<usize>,
    /// NFQUEUE verdicts: one per batch, or one per packet like Caplance (for comparison).
    #[arg(long, value_enum)]
    pub(crate) verdict: Option<VerdictArg>,
    /// Maglev table size (prime).
    #[arg(long)]
    pub(crate) table_size: Option<u32>,
    /// Tracked flows (0: no connection table, Maglev only, like Caplance).
    #[arg(long)]
    pub(crate) conn_capacity: Option<usize>,
    /// After a backend change, untracked mid-connection TCP packets go by the earlier table
    /// for this long (flows moved here from a dead balancer; 0: never).
    #[arg(long, value_parser = duration::parse)]
    pub(crate) table_grace: Option<Duration>,
    /// MTU of the path to the backends.
    #[arg(long)]
    pub(crate) mtu: Option<u16>,
    /// Clamp forwarded SYNs' MSS to fit the encapsulation.
    #[arg(long)]
    pub(crate) clamp_mss: bool,
    /// The fast path: only a flow's first packet (and its FIN/RST) crosses user space; the kernel
    /// forwards the rest from a flow map the balancer fills (dsr, dsr-kernel).
    #[arg(long)]
    pub(crate) fast_path: bool,
    /// Accept agent registrations on IP[:PORT] (TCP, default port 1338).
    #[arg(long, value_parser = parse_endpoint)]
    pub(crate) control: Option<SocketAddrV4>,
    /// Serve the counters in the Prometheus text format at http://IP:PORT/metrics.
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) metrics: Option<SocketAddrV4>,
    /// Unregistered control connections served at once.
    #[arg(long)]
    pub(crate) max_pending: Option<usize>,
    /// Active checks: TCP connect to this port on each backend.
    #[arg(long)]
    pub(crate) check_port: Option<u16>,
    /// Time between two checks of a backend.
    #[arg(long, value_parser = duration::parse)]
    pub(crate) check_interval: Option<Duration>,
    /// How long a check's connect may take.
    #[arg(long, value_parser = duration::parse)]
    pub(crate) check_timeout: Option<Duration>,
    /// Successes that bring a backend back up.
    #[arg(long)]
    pub(crate) check_rise: Option<u32>,
    /// Failures that take a backend down.
    #[arg(long)]
    pub(crate) check_fall: Option<u32>,
    /// How long `lb ctl drain` keeps tracked flows by default.
    #[arg(long, value_parser = duration::parse)]
    pub(crate) drain_timeout: Option<Duration>,
    #[command(flatten)]
    pub(crate) ctl: ControlArgs,
}

#[derive(clap::Args)]
pub(crate) struct AgentArgs {
    /// TOML configuration (see docs/lb.md); flags override its fields.
    #[arg(long, short = 'f')]
    pub(crate) config: Option<PathBuf>,
    /// The virtual IP.
    #[arg(long)]
    pub(crate) vip: Option<Ipv4Addr>,
    /// Where encapsulated packets arrive: IP or IP:PORT (default 0.0.0.0:1337).
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// Register with the server at IP[:PORT] (default port 1338).
    #[arg(long, value_parser = parse_endpoint)]
    pub(crate) server: Option<SocketAddrV4>,
    /// The name to register (default: the host name).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// A balancer whose encapsulated packets are re-injected (repeatable). Without --server,
    /// at least one is required: packets from any other source are dropped and counted.
    #[arg(long = "balancer", value_name = "IP")]
    pub(crate) balancers: Vec<Ipv4Addr>,
    #[command(flatten)]
    pub(crate) ctl: ControlArgs,
}

#[derive(clap::Args)]
pub(crate) struct CtlArgs {
    /// The socket: `@NAME` (abstract, in this network namespace) or a file (default: @lb/server,
    /// or @lb/agent for agent commands).
    #[arg(long, short = 's', global = true)]
    pub(crate) socket: Option<PathBuf>,
    /// Talk to the agent's default socket.
    #[arg(long, global = true)]
    pub(crate) agent: bool,
    /// Print the answer as JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) verb: CtlVerb,
}

#[derive(Subcommand)]
pub(crate) enum CtlVerb {
    /// State and counters.
    State,
    /// Server: backends with health, traffic and tracked flows.
    Backends,
    /// Server: the counters in the Prometheus text format (what --metrics serves at /metrics).
    Metrics,
    /// Server: a static backend more, NAME=IP[,weight=W][,mac=MAC]: new flows reach it at once.
    Add {
        /// The backend, as --backend takes it.
        #[arg(value_parser = parse_backend_flag)]
        backend: BackendEntry,
    },
    /// Server: a static backend less; its tracked flows go to the other backends.
    Remove {
        /// The backend.
        name: String,
    },
    /// Server: no new flows to NAME; tracked flows kept until they end or the deadline.
    Drain {
        /// The backend.
        name: String,
        /// How long tracked flows are kept (default: the server's drain_timeout).
        #[arg(long, value_parser = duration::parse)]
        deadline: Option<Duration>,
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
