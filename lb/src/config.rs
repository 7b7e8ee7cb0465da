//! The TOML configuration file shared by `lb server` and `lb agent` (see docs/lb.md for every
//! field). Pure: text in, a validated [`FileConfig`] or a [`ConfigFileError`] naming the file,
//! line and field out. Command-line flags override fields after loading.

use crate::encap::ForwardMode;
use crate::hash::HashMode;
use crate::wire::MacAddr;
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// How the server receives the VIP's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntakeKind {
    /// NFQUEUE rules on the VIP and a DROP verdict for every packet: the kernel never answers.
    #[default]
    Nfqueue,
    /// An AF_PACKET socket and no rule: the pre-NFQUEUE design whose kernel answers the VIP's
    /// SYNs with RST (seed post 1). Kept to reproduce that bug.
    Packet,
}

/// How NFQUEUE packets are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictMode {
    /// One `NFQNL_MSG_VERDICT_BATCH` per receive batch.
    #[default]
    Batch,
    /// One packet per receive and one verdict per packet, like Caplance's loop (for comparison).
    PerPacket,
}

/// A transport protocol the server queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The iptables name.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One backend of the server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendEntry {
    /// Name shown in logs and counters.
    pub name: String,
    /// Data-plane address (the agent's address for encapsulation; an on-link host for DSR).
    pub addr: Ipv4Addr,
    /// Maglev weight (≥ 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// MAC for DSR; resolved through ARP when omitted.
    #[serde(default)]
    pub mac: Option<MacAddr>,
}

fn one() -> u32 {
    1
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// `nfqueue` or `packet`.
    pub intake: IntakeKind,
    /// `encap` (Caplance UDP encapsulation to backend:1337) or `dsr` (MAC rewrite).
    pub forward: ForwardMode,
    /// Interface for the VIP; default: the one whose subnet holds it.
    pub interface: Option<String>,
    /// Protocols queued.
    pub protocols: Vec<Proto>,
    /// Destination ports queued; empty: all.
    pub ports: Vec<u16>,
    /// `five_tuple` or `src_ip_port` (Caplance's key).
    pub hash: HashMode,
    /// Maglev table size, a prime.
    pub table_size: u32,
    /// Tracked flows; 0 disables the connection table.
    pub conn_capacity: usize,
    /// MTU of the path to the backends.
    pub mtu: u16,
    /// Clamp the MSS of forwarded SYNs to fit the encapsulation.
    pub clamp_mss: bool,
    /// First NFQUEUE number.
    pub queue: u16,
    /// Number of queues (one thread each; `--queue-balance` spreads flows).
    pub queues: u16,
    /// Kernel queue length per queue.
    pub queue_len: u32,
    /// Accept packets instead of dropping them when the queue is full.
    pub fail_open: bool,
    /// Accept packets when no balancer is bound to the queue (iptables `--queue-bypass`).
    pub queue_bypass: bool,
    /// Packets per receive batch.
    pub batch: usize,
    /// `batch` or `per_packet` verdicts.
    pub verdict: VerdictMode,
    /// Socket receive buffer in bytes.
    pub rcvbuf: usize,
    /// Backends.
    pub backends: Vec<BackendEntry>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            intake: IntakeKind::Nfqueue,
            forward: ForwardMode::UdpEncap,
            interface: None,
            protocols: vec![Proto::Tcp, Proto::Udp],
            ports: Vec::new(),
            hash: HashMode::FiveTuple,
            table_size: crate::maglev::DEFAULT_TABLE_SIZE,
            conn_capacity: 1 << 20,
            mtu: 1500,
            clamp_mss: false,
            queue: 0,
            queues: 1,
            queue_len: 4096,
            fail_open: false,
            queue_bypass: false,
            batch: 64,
            verdict: VerdictMode::Batch,
            rcvbuf: 16 << 20,
            backends: Vec::new(),
        }
    }
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSection {
    /// Address to receive encapsulated packets on (default: any).
    pub data_ip: Option<Ipv4Addr>,
    /// UDP port of the encapsulation.
    pub port: u16,
    /// Datagrams per receive batch.
    pub batch: usize,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            data_ip: None,
            port: crate::encap::ENCAP_PORT,
            batch: 64,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// The virtual IP.
    pub vip: Option<Ipv4Addr>,
    /// Server settings.
    pub server: ServerSection,
    /// Agent settings.
    pub agent: AgentSection,
}

/// A configuration error: where and which field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {field}: {message}", origin.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigFileError {
    /// The file (or `<flags>`).
    pub origin: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted field path, e.g. `server.backends[1].weight`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The key written on line `line` (`key = …`), or the table header's name.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?.trim();
    if let Some(h) = l.strip_prefix('[') {
        return Some(h.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    }
    let (k, _) = l.split_once('=')?;
    Some(k.trim().to_string())
}

impl FileConfig {
    /// Parses and validates `text`, read from `origin`.
    pub fn parse(text: &str, origin: &Path) -> Result<FileConfig, ConfigFileError> {
        let cfg: FileConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let field = line
                .and_then(|l| key_on_line(text, l))
                .unwrap_or_else(|| "-".into());
            ConfigFileError {
                origin: origin.to_path_buf(),
                line,
                field,
                message: e.message().trim().to_string(),
            }
        })?;
        cfg.validate().map_err(|(field, message)| {
            let last = field.rsplit('.').next().unwrap_or(&field);
            let last = last.split('[').next().unwrap_or(last);
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with(last) && l.contains('='))
                .map(|i| i + 1);
            ConfigFileError {
                origin: origin.to_path_buf(),
                line,
                field,
                message,
            }
        })?;
        Ok(cfg)
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
            origin: path.to_path_buf(),
            line: None,
            field: "-".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Checks what types cannot: returns `(field, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let s = &self.server;
        let err = |f: &str, m: String| Err((f.to_string(), m));
        if s.protocols.is_empty() {
            return err(
                "server.protocols",
                "give at least one of \"tcp\", \"udp\"".into(),
            );
        }
        if s.queues == 0 {
            return err("server.queues", "must be at least 1".into());
        }
        if u32::from(s.queue) + u32::from(s.queues) > 65536 {
            return err(
                "server.queues",
                format!(
                    "queues {}..{} exceed 65535",
                    s.queue,
                    u32::from(s.queue) + u32::from(s.queues) - 1
                ),
            );
        }
        if s.queue_len == 0 {
            return err("server.queue_len", "must be at least 1".into());
        }
        if !(1..=1024).contains(&s.batch) {
            return err("server.batch", format!("{} is outside 1..=1024", s.batch));
        }
        if s.ports.contains(&0) {
            return err("server.ports", "port 0 cannot be queued".into());
        }
        for (i, b) in s.backends.iter().enumerate() {
            if b.name.is_empty() {
                return err(
                    &format!("server.backends[{i}].name"),
                    "must not be empty".into(),
                );
            }
            if b.weight == 0 {
                return err(
                    &format!("server.backends[{i}].weight"),
                    "must be at least 1".into(),
                );
            }
            if s.backends[..i].iter().any(|o| o.name == b.name) {
                return err(
                    &format!("server.backends[{i}].name"),
                    format!("{:?} is used twice", b.name),
                );
            }
            if s.backends[..i].iter().any(|o| o.addr == b.addr) {
                return err(
                    &format!("server.backends[{i}].addr"),
                    format!("{} is used twice", b.addr),
                );
            }
        }
        if !(1..=1024).contains(&self.agent.batch) {
            return err(
                "agent.batch",
                format!("{} is outside 1..=1024", self.agent.batch),
            );
        }
        Ok(())
    }
}

/// Parses a `--backend` flag: `NAME=IP[,weight=W][,mac=MAC]` or just `IP` (named after it).
pub fn parse_backend_flag(s: &str) -> Result<BackendEntry, String> {
    let mut parts = s.split(',');
    let head = parts.next().unwrap_or_default();
    let (name, addr) = match head.split_once('=') {
        Some((n, a)) => (n.to_string(), a),
        None => (head.to_string(), head),
    };
    let addr: Ipv4Addr = addr.parse().map_err(|_| {
        format!("{addr:?} is not an IPv4 address (want NAME=IP[,weight=W][,mac=MAC])")
    })?;
    let mut b = BackendEntry {
        name,
        addr,
        weight: 1,
        mac: None,
    };
    for p in parts {
        match p.split_once('=') {
            Some(("weight", w)) => {
                b.weight = w
                    .parse()
                    .ok()
                    .filter(|w| *w > 0)
                    .ok_or(format!("weight {w:?}: want an integer ≥ 1"))?
            }
            Some(("mac", m)) => b.mac = Some(m.parse().map_err(|e| format!("{e}"))?),
            _ => return Err(format!("{p:?}: want weight=W or mac=MAC")),
        }
    }
    if b.name.is_empty() {
        return Err("empty backend name".into());
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<FileConfig, ConfigFileError> {
        FileConfig::parse(t, Path::new("lb.toml"))
    }

    #[test]
    fn full_file() {
        let c = parse(
            r#"
vip = "10.0.0.50"
[server]
intake = "packet"
forward = "dsr"
ports = [8080]
queues = 2
[[server.backends]]
name = "h2"
addr = "10.0.0.2"
weight = 3
[[server.backends]]
name = "h3"
addr = "10.0.0.3"
mac = "02:00:00:00:00:03"
[agent]
data_ip = "10.0.0.2"
"#,
        )
        .unwrap();
        assert_eq!(c.vip, Some(Ipv4Addr::new(10, 0, 0, 50)));
        assert_eq!(c.server.intake, IntakeKind::Packet);
        assert_eq!(c.server.forward, ForwardMode::Dsr);
        assert_eq!(c.server.backends[0].weight, 3);
        assert_eq!(c.server.backends[1].weight, 1);
        assert_eq!(c.agent.port, 1337);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse("vip = \"10.0.0.50\"\n[server]\nqueue_len = \"big\"\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.field, "queue_len");
        assert!(e.to_string().starts_with("lb.toml:3: queue_len: "), "{e}");

        let e = parse("[server]\nintake = \"pcap\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(2), "intake"));

        let e = parse("[server]\nbogus = 1\n").unwrap_err();
        assert!(e.message.contains("bogus"), "{e}");

        let e = parse("[server]\nqueues = 0\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "lb.toml:2: server.queues: must be at least 1"
        );

        let e = parse(
            "[[server.backends]]\nname = \"a\"\naddr = \"10.0.0.2\"\n[[server.backends]]\nname = \"a\"\naddr = \"10.0.0.3\"\n",
        )
        .unwrap_err();
        assert_eq!(e.field, "server.backends[1].name");
    }

    #[test]
    fn backend_flags() {
        let b = parse_backend_flag("h2=10.0.0.2,weight=2").unwrap();
        assert_eq!((b.name.as_str(), b.weight), ("h2", 2));
        let b = parse_backend_flag("10.0.0.3").unwrap();
        assert_eq!(b.name, "10.0.0.3");
        assert!(parse_backend_flag("h2=10.0.0.300").is_err());
        assert!(parse_backend_flag("h2=10.0.0.2,weight=0").is_err());
        assert!(parse_backend_flag("h2=10.0.0.2,colour=red").is_err());
    }
}
