//! The TOML configuration file shared by `lb server` and `lb agent` (see docs/lb.md for every
//! field). Pure: text in, a validated [`FileConfig`] or a [`ConfigFileError`] naming the file,
//! line and field out. Command-line flags override fields after loading.

use crate::forward::ForwardMode;
use crate::select::hash::HashMode;
use crate::wire::{MacAddr, Protocol};
use serde::{Deserialize, Deserializer};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A span of time written in the [`crate::duration`] grammar (`"250ms"`, `"2s"`, `"1.5s"`, `"1m"`)
/// or as an integer of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// `s` seconds.
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }

    /// `ms` milliseconds.
    pub const fn millis(ms: u64) -> Dur {
        Dur(Duration::from_millis(ms))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur::secs(s)),
            Raw::Text(t) => crate::duration::parse(&t)
                .map(Dur)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A control-plane address, `"IP"` (port 1338) or `"IP:PORT"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint(pub SocketAddrV4);

/// Parses `IP` (port [`crate::protocol::agent::CONTROL_PORT`]) or `IP:PORT`.
pub fn parse_endpoint(s: &str) -> Result<SocketAddrV4, String> {
    if let Ok(sa) = s.parse::<SocketAddrV4>() {
        return Ok(sa);
    }
    s.parse::<Ipv4Addr>()
        .map(|ip| SocketAddrV4::new(ip, crate::protocol::agent::CONTROL_PORT))
        .map_err(|_| format!("{s:?}: want IP or IP:PORT"))
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_endpoint(&s)
            .map(Endpoint)
            .map_err(serde::de::Error::custom)
    }
}

/// How the server receives the VIP's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intake {
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
    /// The verdicts of a receive batch in one `sendmsg`: one `NFQNL_MSG_VERDICT_BATCH` per run of
    /// equal verdicts (the whole batch, except in `dsr-kernel` mode with several backends).
    #[default]
    Batch,
    /// One packet per receive and one verdict per packet, like Caplance's loop (for comparison).
    PerPacket,
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
    pub intake: Intake,
    /// `encap` (Caplance UDP encapsulation to backend:1337), `dsr` (MAC rewrite by `lb`) or
    /// `dsr-kernel` (MAC rewrite by the kernel's routing, chosen by a mark).
    pub forward: ForwardMode,
    /// Interface for the VIP; default: the one whose subnet holds it.
    pub interface: Option<String>,
    /// Protocols queued.
    pub protocols: Vec<Protocol>,
    /// Destination ports queued; empty: all.
    pub ports: Vec<u16>,
    /// `five_tuple` or `src_ip_port` (Caplance's key).
    pub hash: HashMode,
    /// Maglev table size, a prime.
    pub table_size: u32,
    /// Tracked flows; 0 disables the connection table.
    pub conn_capacity: usize,
    /// How long after a backend change an untracked mid-connection TCP packet is sent by the
    /// table before the change (a flow moved here from a dead balancer); 0: never.
    pub table_grace: Dur,
    /// MTU of the path to the backends.
    pub mtu: u16,
    /// Clamp the MSS of forwarded SYNs to fit the encapsulation.
    pub clamp_mss: bool,
    /// The fast path: the kernel forwards a flow's packets after its first, from a map that the
    /// balancer fills (`dsr` and `dsr-kernel`, NFQUEUE intake, connection table on).
    pub fast_path: bool,
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
    /// Static backends (no agent; the only kind for DSR).
    pub backends: Vec<BackendEntry>,
    /// Where agents register (TCP, Caplance's `mngIP:1338`); none: no registration.
    pub control: Option<Endpoint>,
    /// The `lb ctl` socket: `@name` (abstract, in the process's network namespace) or a file.
    pub ctl_socket: PathBuf,
    /// The text the flow-hash key is made from ([`crate::select::hash::HashKey::from_text`]):
    /// balancers that must agree are given the same one; none: the built-in key.
    pub hash_key: Option<String>,
    /// Serve the counters in the Prometheus text format at `http://IP:PORT/metrics`; none:
    /// only `lb ctl metrics`.
    pub metrics: Option<SocketAddrV4>,
    /// Control connections that have not registered yet, at once; more are refused.
    pub max_pending: usize,
    /// Registered backends at most.
    pub max_agents: usize,
    /// How long a drain keeps tracked flows when `lb ctl drain` gives no deadline.
    pub drain_timeout: Dur,
    /// Active health checks.
    pub check: CheckSection,
}

/// `[server.check]`: a TCP connect from the balancer to each backend's application.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckSection {
    /// The application's port on the backend's address; none: no active checks.
    pub port: Option<u16>,
    /// Time between checks of one backend.
    pub interval: Dur,
    /// How long a connect may take.
    pub timeout: Dur,
    /// Consecutive successes that bring a down backend back.
    pub rise: u32,
    /// Consecutive failures that take a backend down.
    pub fall: u32,
}

impl Default for CheckSection {
    fn default() -> Self {
        Self {
            port: None,
            interval: Dur::secs(2),
            timeout: Dur::secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

/// `[control]`: the registration protocol's timing and secret, shared by server and agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSection {
    /// A file holding the shared secret (≥ 16 bytes); none: Caplance's open registration.
    pub secret_file: Option<PathBuf>,
    /// The agent sends `HEALTH 200` this often (Caplance's `healthRate`).
    pub health_interval: Dur,
    /// Silence that ends a registration (Caplance's `readTimeout`); the agent also gives up
    /// on a server silent this long and registers again.
    pub read_timeout: Dur,
    /// A line that cannot be written in this long ends the connection.
    pub write_timeout: Dur,
    /// The whole handshake, from connect to `REGISTERED`, must fit in this.
    pub register_timeout: Dur,
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            secret_file: None,
            health_interval: Dur::secs(20),
            read_timeout: Dur::secs(30),
            write_timeout: Dur::secs(10),
            register_timeout: Dur::secs(10),
        }
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            intake: Intake::Nfqueue,
            forward: ForwardMode::UdpEncap,
            interface: None,
            protocols: vec![Protocol::Tcp, Protocol::Udp],
            ports: Vec::new(),
            hash: HashMode::FiveTuple,
            table_size: crate::select::maglev::DEFAULT_TABLE_SIZE,
            conn_capacity: 1 << 20,
            table_grace: Dur::secs(10),
            mtu: 1500,
            clamp_mss: false,
            fast_path: false,
            queue: 0,
            queues: 1,
            queue_len: 4096,
            fail_open: false,
            queue_bypass: false,
            batch: 64,
            verdict: VerdictMode::Batch,
            rcvbuf: 16 << 20,
            backends: Vec::new(),
            control: None,
            ctl_socket: PathBuf::from("@lb/server"),
            hash_key: None,
            metrics: None,
            max_pending: 64,
            max_agents: 1024,
            drain_timeout: Dur::secs(300),
            check: CheckSection::default(),
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
    /// The server to register with (Caplance's `connectIP`); none: no registration.
    pub server: Option<Endpoint>,
    /// The name to register (default: the host name).
    pub name: Option<String>,
    /// Balancers whose encapsulated packets are re-injected (besides the one registered with).
    pub balancers: Vec<Ipv4Addr>,
    /// The `lb ctl` socket: `@name` (abstract, in the process's network namespace) or a file.
    pub ctl_socket: PathBuf,
    /// Longest wait between two registration attempts (they back off up to this).
    pub retry_max: Dur,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            data_ip: None,
            port: crate::forward::ENCAP_PORT,
            batch: 64,
            server: None,
            name: None,
            balancers: Vec::new(),
            ctl_socket: PathBuf::from("@lb/agent"),
            retry_max: Dur::secs(5),
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
    /// Registration protocol settings shared by both.
    pub control: ControlSection,
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
        if s.hash_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return err("server.hash_key", "is empty".into());
        }
        if s.ports.contains(&0) {
            return err("server.ports", "port 0 cannot be queued".into());
        }
        if s.fast_path {
            let why = match (s.forward, s.intake) {
                (ForwardMode::UdpEncap, _) => Some(
                    "needs forward = \"dsr\" or \"dsr-kernel\": the kernel here cannot encapsulate (no fou, ipip or gre)",
                ),
                (_, Intake::Packet) => Some("needs the nfqueue intake"),
                _ if s.conn_capacity == 0 => {
                    Some("needs the connection table (conn_capacity above 0)")
                }
                _ => None,
            };
            if let Some(why) = why {
                return err("server.fast_path", why.into());
            }
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
            if Some(b.addr) == self.vip {
                return err(
                    &format!("server.backends[{i}].addr"),
                    format!(
                        "{} is the VIP: its packets would loop through the balancer",
                        b.addr
                    ),
                );
            }
            if b.addr.is_unspecified()
                || b.addr.is_broadcast()
                || b.addr.is_multicast()
                || b.addr.is_loopback()
            {
                return err(
                    &format!("server.backends[{i}].addr"),
                    format!("{} cannot be a backend's address", b.addr),
                );
            }
            if s.backends[..i].iter().any(|o| o.addr == b.addr) {
                return err(
                    &format!("server.backends[{i}].addr"),
                    format!("{} is used twice", b.addr),
                );
            }
        }
        if s.forward == ForwardMode::DsrKernel && s.intake != Intake::Nfqueue {
            return err(
                "server.forward",
                "dsr-kernel needs intake = \"nfqueue\" (the verdict carries the mark)".into(),
            );
        }
        if s.control.is_some() && s.forward.is_dsr() {
            return err(
                "server.control",
                "registration needs forward = \"encap\" (agents receive on :1337); DSR backends are static".into(),
            );
        }
        if s.max_pending == 0 {
            return err("server.max_pending", "must be at least 1".into());
        }
        let c = &s.check;
        if c.port == Some(0) {
            return err("server.check.port", "port 0 cannot be checked".into());
        }
        if c.interval.0.is_zero() {
            return err("server.check.interval", "must be above 0".into());
        }
        if c.timeout.0.is_zero() || c.timeout > c.interval {
            return err(
                "server.check.timeout",
                format!(
                    "must be above 0 and at most server.check.interval ({:?})",
                    c.interval.0
                ),
            );
        }
        if c.rise == 0 || c.fall == 0 {
            let f = if c.rise == 0 { "rise" } else { "fall" };
            return err(&format!("server.check.{f}"), "must be at least 1".into());
        }
        let k = &self.control;
        for (f, d) in [
            ("control.health_interval", k.health_interval),
            ("control.read_timeout", k.read_timeout),
            ("control.write_timeout", k.write_timeout),
            ("control.register_timeout", k.register_timeout),
        ] {
            if d.0 < Duration::from_millis(10) {
                return err(f, format!("{:?} is below 10ms", d.0));
            }
        }
        if k.read_timeout <= k.health_interval {
            return err(
                "control.read_timeout",
                format!(
                    "{:?} must exceed control.health_interval ({:?}), or every agent times out",
                    k.read_timeout.0, k.health_interval.0
                ),
            );
        }
        if let Some(n) = &self.agent.name
            && !crate::protocol::agent::valid_name(n)
        {
            return err(
                "agent.name",
                format!("{n:?}: want 1 to 64 of A-Z a-z 0-9 . _ -"),
            );
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
impl BackendEntry {
    /// As `--backend` and `lb ctl add` take it: `NAME=IP[,weight=W][,mac=MAC]`.
    pub fn to_flag(&self) -> String {
        let mut s = format!("{}={}", self.name, self.addr);
        if self.weight != 1 {
            s.push_str(&format!(",weight={}", self.weight));
        }
        if let Some(m) = self.mac {
            s.push_str(&format!(",mac={m}"));
        }
        s
    }
}

/// Parses `NAME=IP[,weight=W][,mac=MAC]` (`--backend`, `lb ctl add`).
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
        assert_eq!(c.server.intake, Intake::Packet);
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

    /// `--backend v=10.0.0.50` made a datagram loop through the balancer 52 times, 28 bytes
    /// longer each pass (issue 13, case 6): the VIP is refused as a backend, as registration
    /// already refused it.
    #[test]
    fn the_vip_and_unusable_addresses_are_refused_as_backends() {
        let e =
            parse("vip = \"10.0.0.50\"\n[[server.backends]]\nname = \"v\"\naddr = \"10.0.0.50\"\n")
                .unwrap_err();
        assert_eq!(e.field, "server.backends[0].addr");
        assert!(e.message.contains("10.0.0.50 is the VIP"), "{e}");
        for bad in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1"] {
            let e = parse(&format!(
                "vip = \"10.0.0.50\"\n[[server.backends]]\nname = \"b\"\naddr = \"{bad}\"\n"
            ))
            .unwrap_err();
            assert_eq!(e.field, "server.backends[0].addr", "{bad}");
            assert!(e.message.contains("cannot be a backend's address"), "{e}");
        }
        assert!(
            parse("vip = \"10.0.0.50\"\n[[server.backends]]\nname = \"b\"\naddr = \"10.0.0.2\"\n")
                .is_ok()
        );
    }

    #[test]
    fn control_plane_fields() {
        let c = parse(
            r#"
vip = "10.0.0.50"
[control]
secret_file = "/etc/lb/secret"
health_interval = "250ms"
read_timeout = 2
register_timeout = "1.5s"
[server]
control = "10.0.0.1"
ctl_socket = "/tmp/s.sock"
drain_timeout = "1m"
[server.check]
port = 8080
interval = "200ms"
timeout = "100ms"
rise = 1
fall = 2
[agent]
server = "10.0.0.1:2000"
name = "h2"
"#,
        )
        .unwrap();
        assert_eq!(c.control.health_interval, Dur::millis(250));
        assert_eq!(c.control.read_timeout, Dur::secs(2));
        assert_eq!(c.control.register_timeout, Dur::millis(1500));
        assert_eq!(
            c.server.control,
            Some(Endpoint("10.0.0.1:1338".parse().unwrap()))
        );
        assert_eq!(c.server.drain_timeout, Dur::secs(60));
        assert_eq!(c.server.check.port, Some(8080));
        assert_eq!(
            c.agent.server,
            Some(Endpoint("10.0.0.1:2000".parse().unwrap()))
        );
        assert_eq!(c.agent.name.as_deref(), Some("h2"));
    }

    #[test]
    fn control_plane_errors_name_the_field() {
        let e = parse("[control]\nread_timeout = \"5s\"\n").unwrap_err();
        assert_eq!(e.field, "control.read_timeout");
        assert!(e.message.contains("health_interval"), "{e}");
        let e = parse("[control]\nhealth_interval = \"2 fortnights\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(2), "health_interval"));
        assert!(e.message.contains("unknown unit"), "{e}");
        let e = parse("[server]\ncontrol = \"10.0.0.1:99999\"\n").unwrap_err();
        assert_eq!(e.field, "control");
        let e = parse("[server]\nforward = \"dsr\"\ncontrol = \"10.0.0.1\"\n").unwrap_err();
        assert_eq!(e.field, "server.control");
        let e = parse("[server]\nforward = \"dsr-kernel\"\ncontrol = \"10.0.0.1\"\n").unwrap_err();
        assert_eq!(e.field, "server.control");
        let e = parse("[server]\nforward = \"dsr-kernel\"\nintake = \"packet\"\n").unwrap_err();
        assert_eq!(e.field, "server.forward");
        assert!(e.message.contains("nfqueue"), "{e}");
        let c = parse("[server]\nforward = \"dsr-kernel\"\n").unwrap();
        assert_eq!(c.server.forward, ForwardMode::DsrKernel);
        let e = parse("[server.check]\ninterval = \"1s\"\ntimeout = \"2s\"\n").unwrap_err();
        assert_eq!(e.field, "server.check.timeout");
        let e = parse("[server.check]\nfall = 0\n").unwrap_err();
        assert_eq!(e.field, "server.check.fall");
        let e = parse("[agent]\nname = \"no spaces\"\n").unwrap_err();
        assert_eq!(e.field, "agent.name");
    }

    #[test]
    fn durations() {
        assert_eq!(
            crate::duration::parse("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(crate::duration::parse("2"), Ok(Duration::from_secs(2)));
        assert_eq!(
            crate::duration::parse("1.5s"),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(crate::duration::parse("1m"), Ok(Duration::from_secs(60)));
        assert!(crate::duration::parse("soon").is_err());
        assert!(crate::duration::parse("-1s").is_err());
        assert!(crate::duration::parse("1e99h").is_err());
        assert_eq!(
            parse_endpoint("10.0.0.1"),
            Ok("10.0.0.1:1338".parse().unwrap())
        );
        assert!(parse_endpoint("host:1338").is_err());
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
