//! From what the user typed to what `lb server` and `lb agent` run with: the configuration
//! file read, the flags applied over it, the result validated (no other syscall).

use super::BadInput;
use super::args::{
    AgentArgs, ControlArgs, CtlArgs, CtlVerb, ForwardArg, HashArg, IntakeArg, ProtoArg, ServerArgs,
    VerdictArg,
};
use crate::agent::AgentSettings;
use crate::server::ServerSettings;
use anyhow::{Result, bail};
use lb_core::config::{
    ConfigFileError, ControlSection, Dur, Endpoint, FileConfig, Intake, VerdictMode,
};
use lb_core::protocol::ctl::{Request, Role};
use lb_core::wire::Protocol;
use lb_core::{ForwardMode, HashMode};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

/// The largest configuration or secret file read.
const MAX_INPUT_BYTES: u64 = 1 << 20;

/// The bytes of a file the operator names: a regular file, at most [`MAX_INPUT_BYTES`] (so
/// `-f /dev/zero` is an error, not a process growing without bound).
fn read_input(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    if !std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .is_file()
    {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    match bytes.len() as u64 > MAX_INPUT_BYTES {
        true => Err(format!("larger than {} KiB", MAX_INPUT_BYTES >> 10)),
        false => Ok(bytes),
    }
}

/// The configuration file at `path`, or the defaults without one.
fn load(path: &Option<PathBuf>) -> Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = read_input(path)
        .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8 text".into()))
        .map_err(|e| ConfigFileError {
            origin: path.clone(),
            line: None,
            field: "-".into(),
            message: format!("cannot read: {e}"),
        });
    text.and_then(|t| FileConfig::parse(&t, path))
        .map_err(|e| BadInput(e.to_string()).into())
}

/// `lb server`'s settings: the file, then the flags over it.
pub(crate) fn server_settings(a: ServerArgs) -> Result<ServerSettings> {
    let file = load(&a.config)?;
    let vip = a
        .vip
        .or(file.vip)
        .ok_or_else(|| BadInput("vip: give --vip or `vip` in the config file".into()))?;
    let mut s = file.server;
    if let Some(i) = a.intake {
        s.intake = match i {
            IntakeArg::Nfqueue => Intake::Nfqueue,
            IntakeArg::Packet => Intake::Packet,
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
                ProtoArg::Tcp => Protocol::Tcp,
                ProtoArg::Udp => Protocol::Udp,
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
    if a.hash_key.is_some() {
        s.hash_key = a.hash_key;
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
    if let Some(d) = a.table_grace {
        s.table_grace = Dur(d);
    }
    s.mtu = a.mtu.unwrap_or(s.mtu);
    s.clamp_mss |= a.clamp_mss;
    s.fast_path |= a.fast_path;
    if let Some(c) = a.control {
        s.control = Some(Endpoint(c));
    }
    if a.metrics.is_some() {
        s.metrics = a.metrics;
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
    if let Err(e) = lb_core::State::new(lb_core::Config {
        table_size: merged.server.table_size,
        ..Default::default()
    }) {
        bail!(BadInput(format!("server.{e}")));
    }
    Ok(ServerSettings {
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

fn load_secret(c: &ControlSection) -> Result<Option<lb_core::protocol::agent::Secret>> {
    let Some(path) = &c.secret_file else {
        return Ok(None);
    };
    let text = read_input(path).map_err(|e| {
        BadInput(format!(
            "control.secret_file: cannot read {}: {e}",
            path.display()
        ))
    })?;
    lb_core::protocol::agent::Secret::new(&text)
        .map(Some)
        .map_err(|e| BadInput(format!("control.secret_file: {}: {e}", path.display())).into())
}

/// `lb agent`'s settings: the file, then the flags over it.
pub(crate) fn agent_settings(a: AgentArgs) -> Result<AgentSettings> {
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
    if !a.balancers.is_empty() {
        agent.balancers = a.balancers.clone();
    }
    if agent.server.is_none() && agent.balancers.is_empty() {
        bail!(BadInput(
            "agent: give --balancer IP (the balancer whose encapsulated packets are re-injected) \
             or --server ADDR (register, and take the registered balancer's): an agent that \
             accepts packets from anyone re-injects forged ones"
                .into()
        ));
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
            if !lb_core::protocol::agent::valid_name(&h) {
                bail!(BadInput(format!(
                    "agent.name: the host name {h:?} is no valid backend name; give --name"
                )));
            }
            h
        }
    };
    Ok(AgentSettings {
        vip,
        data_ip,
        port,
        batch: merged.agent.batch,
        server: merged.agent.server.map(|e| e.0),
        balancers: merged.agent.balancers.clone(),
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

/// What `lb ctl` sends, and where.
pub(crate) struct CtlSettings {
    /// The request.
    pub(crate) request: Request,
    /// The socket.
    pub(crate) socket: PathBuf,
    /// Print the answer as JSON.
    pub(crate) json: bool,
}

/// `lb ctl`'s request and socket: the server's by default, the agent's for agent verbs and
/// for `state --agent`.
pub(crate) fn ctl_settings(a: CtlArgs) -> CtlSettings {
    let request = match a.verb {
        CtlVerb::State => Request::State,
        CtlVerb::Backends => Request::Backends,
        CtlVerb::Metrics => Request::Metrics,
        CtlVerb::Add { backend } => Request::Add { backend },
        CtlVerb::Remove { name } => Request::Remove { name },
        CtlVerb::Drain { name, deadline } => Request::Drain { name, deadline },
        CtlVerb::Undrain { name } => Request::Undrain { name },
        CtlVerb::Pause => Request::Pause,
        CtlVerb::Resume => Request::Resume,
        CtlVerb::Deregister => Request::Deregister,
        CtlVerb::Register => Request::Register,
    };
    let agent = match request {
        Request::State => a.agent,
        ref r => r.role() == Role::Agent,
    };
    let socket = a.socket.unwrap_or_else(|| {
        PathBuf::from(match agent {
            true => "@lb/agent",
            false => "@lb/server",
        })
    });
    CtlSettings {
        request,
        socket,
        json: a.json,
    }
}
