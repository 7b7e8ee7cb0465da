//! The `lb ctl` protocol, typed: one JSON object per line on the operator's unix socket.
//!
//! A request is `{"cmd":"drain","name":"h2","deadline":"30s"}` on the wire (the shape of the
//! first, untyped version, kept so old clients still work) and a [`Request`] in code. An answer
//! is `{"ok":true,…}` or `{"ok":false,"error":"…"}`, typed too: [`Refusal`] and [`Done`] are
//! the two answers every command shares, [`StateAnswer`] (a [`ServerState`] or an
//! [`AgentStatus`]) answers `state` and [`Backends`] answers `backends`; [`Answer`] is any of
//! them, as a process sends it. A client knows from its request which one to read. Which
//! commands a process serves depends on its [`Role`].

use crate::config::{BackendEntry, parse_backend_flag};
use crate::duration;
use crate::protocol::agent::AgentState;
use crate::registry::Status;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// One `lb ctl` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireRequest", into = "WireRequest")]
pub enum Request {
    /// Server or agent: what the process is doing, with its counters.
    State,
    /// Server: every backend with its status and traffic.
    Backends,
    /// Server: the counters in the Prometheus text exposition format.
    Metrics,
    /// Server: a static backend more, taking new flows at once.
    Add {
        /// The backend, as `--backend` gives it.
        backend: BackendEntry,
    },
    /// Server: a static backend less; its tracked flows move to the others.
    Remove {
        /// The backend.
        name: String,
    },
    /// Server: no new flows to `name`; tracked flows kept until they end or the deadline.
    Drain {
        /// The backend.
        name: String,
        /// How long tracked flows are kept (default: the server's `drain_timeout`).
        deadline: Option<Duration>,
    },
    /// Server: end a drain.
    Undrain {
        /// The backend.
        name: String,
    },
    /// Agent: ask the server for no new flows (`PAUSE`).
    Pause,
    /// Agent: take new flows again (`RESUME`).
    Resume,
    /// Agent: leave the server and stay out.
    Deregister,
    /// Agent: register again after `deregister`.
    Register,
}

/// Which end of the socket serves a request (`"server"`, `"agent"` in a `state` answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `lb server`.
    Server,
    /// `lb agent`.
    Agent,
}

impl Role {
    /// The role's name in answers and errors.
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }

    /// The verbs this role serves, in the order errors list them.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Role::Server => &[
                "state", "backends", "metrics", "add", "remove", "drain", "undrain",
            ],
            Role::Agent => &["state", "pause", "resume", "deregister", "register"],
        }
    }
}

impl Request {
    /// The request's verb, as in `"cmd"`.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::State => "state",
            Request::Backends => "backends",
            Request::Metrics => "metrics",
            Request::Add { .. } => "add",
            Request::Remove { .. } => "remove",
            Request::Drain { .. } => "drain",
            Request::Undrain { .. } => "undrain",
            Request::Pause => "pause",
            Request::Resume => "resume",
            Request::Deregister => "deregister",
            Request::Register => "register",
        }
    }

    /// The role that serves this request (`state` is served by both; [`Role::Server`] here).
    pub fn role(&self) -> Role {
        match self {
            Request::State
            | Request::Backends
            | Request::Metrics
            | Request::Add { .. }
            | Request::Remove { .. }
            | Request::Drain { .. }
            | Request::Undrain { .. } => Role::Server,
            Request::Pause | Request::Resume | Request::Deregister | Request::Register => {
                Role::Agent
            }
        }
    }

    /// The refusal a process in `role` gives a request it does not serve, or `None`.
    pub fn refused_by(&self, role: Role) -> Option<Refusal> {
        if matches!(self, Request::State) || self.role() == role {
            return None;
        }
        Some(Refusal::new(RequestError::NotServed {
            verb: self.verb().to_string(),
            role,
        }))
    }
}

/// Why a request line is not a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `cmd` names no command (or one the answering role does not serve).
    #[error("{verb:?} is not a{} {} command ({})", if matches!(role, Role::Agent) { "n" } else { "" }, role.name(), role.verbs().join(", "))]
    NotServed {
        /// The verb given.
        verb: String,
        /// The role that refused it.
        role: Role,
    },
    /// `cmd` names no command of either role.
    #[error(
        "{0:?} is not a command (state, backends, metrics, add, remove, drain, undrain, pause, resume, deregister, register)"
    )]
    Unknown(String),
    /// `drain`, `undrain` or `remove` without `name`.
    #[error("{0}: give a backend name")]
    MissingName(&'static str),
    /// `add` without `backend`, or with one that does not parse.
    #[error("add: {0}")]
    Backend(String),
    /// `deadline` is not a duration.
    #[error("deadline: {0}")]
    Deadline(#[from] duration::DurationError),
}

/// The wire shape of a request: the verb as a string, every argument optional. A server reads
/// this first and then [`WireRequest::for_role`], so that an unknown verb is refused with the
/// verbs that role serves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireRequest {
    /// The verb.
    pub cmd: String,
    /// The backend (`drain`, `undrain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How long a drain keeps tracked flows, in the [`crate::duration`] grammar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// The backend to add, `NAME=IP[,weight=W][,mac=MAC]` (`add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl WireRequest {
    /// The typed request, with an unknown verb refused in `role`'s words.
    pub fn for_role(self, role: Role) -> Result<Request, RequestError> {
        Request::try_from(self).map_err(|e| match e {
            RequestError::Unknown(verb) => RequestError::NotServed { verb, role },
            e => e,
        })
    }
}

impl TryFrom<WireRequest> for Request {
    type Error = RequestError;

    fn try_from(r: WireRequest) -> Result<Self, RequestError> {
        let name = |verb| r.name.clone().ok_or(RequestError::MissingName(verb));
        Ok(match r.cmd.as_str() {
            "state" => Request::State,
            "backends" => Request::Backends,
            "metrics" => Request::Metrics,
            "add" => Request::Add {
                backend: r
                    .backend
                    .as_deref()
                    .ok_or_else(|| {
                        RequestError::Backend("give a backend, NAME=IP[,weight=W][,mac=MAC]".into())
                    })
                    .and_then(|b| parse_backend_flag(b).map_err(RequestError::Backend))?,
            },
            "remove" => Request::Remove {
                name: name("remove")?,
            },
            "drain" => Request::Drain {
                name: name("drain")?,
                deadline: r.deadline.as_deref().map(duration::parse).transpose()?,
            },
            "undrain" => Request::Undrain {
                name: name("undrain")?,
            },
            "pause" => Request::Pause,
            "resume" => Request::Resume,
            "deregister" => Request::Deregister,
            "register" => Request::Register,
            _ => return Err(RequestError::Unknown(r.cmd)),
        })
    }
}

impl From<Request> for WireRequest {
    fn from(r: Request) -> Self {
        let cmd = r.verb().to_string();
        match r {
            Request::Drain { name, deadline } => WireRequest {
                cmd,
                name: Some(name),
                deadline: deadline.map(duration::format),
                ..WireRequest::default()
            },
            Request::Undrain { name } | Request::Remove { name } => WireRequest {
                cmd,
                name: Some(name),
                ..WireRequest::default()
            },
            Request::Add { backend } => WireRequest {
                cmd,
                backend: Some(backend.to_flag()),
                ..WireRequest::default()
            },
            _ => WireRequest {
                cmd,
                ..WireRequest::default()
            },
        }
    }
}

/// The answer to a refused request: `{"ok":false,"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Always false.
    pub ok: bool,
    /// Why, for a person.
    pub error: String,
}

impl Refusal {
    /// A refusal saying `why`.
    pub fn new(why: impl fmt::Display) -> Refusal {
        Refusal {
            ok: false,
            error: why.to_string(),
        }
    }
}

/// The answer to a request that changed something: `{"ok":true,"message":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Always true.
    pub ok: bool,
    /// What happened, for a person.
    pub message: String,
}

impl Done {
    /// A success saying `what`.
    pub fn new(what: impl fmt::Display) -> Done {
        Done {
            ok: true,
            message: what.to_string(),
        }
    }
}

/// The answer to `state` from `lb server`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerState {
    /// Always true.
    pub ok: bool,
    /// Always [`Role::Server`].
    pub role: Role,
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// One line describing the intake and its queues.
    pub data_path: String,
    /// Where agents register; none: no registration.
    pub control: Option<SocketAddrV4>,
    /// Whether registrations need the shared secret.
    pub auth: bool,
    /// The port of the active checks; none: no checks.
    pub active_checks: Option<u16>,
    /// Seconds since the control plane started.
    pub uptime_s: f64,
    /// Backends known, static and registered.
    pub backends: u64,
    /// Backends registered by agents.
    pub registered: u64,
    /// Control connections in their handshake.
    pub pending_connections: u64,
    /// Flows tracked now, all data paths together.
    pub tracked_flows: u64,
    /// Packets taken from the intake.
    pub received: u64,
    /// Packets sent to backends.
    pub sent: u64,
    /// Sends the kernel refused.
    pub send_failed: u64,
    /// Tracked flows moved off removed or down backends.
    pub flows_moved: u64,
    /// Untracked mid-connection packets sent by the table before a recent backend change
    /// (flows moved here from a dead balancer; `table_grace`).
    #[serde(default)]
    pub previous_table: u64,
    /// Drops by reason (`DropReason` names); reasons never seen are absent.
    pub drops: BTreeMap<String, u64>,
    /// The registrar's counters.
    pub control_counters: ControlCounters,
    /// The fast path's counters (`--fast-path` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<Box<FastPathCounters>>,
    /// The Maglev table's fingerprint (`State::table_fingerprint`, 16 hex digits): balancers
    /// with the same backends, weights, table size, hash mode and key show the same one.
    /// None: no data path answered.
    #[serde(default)]
    pub table_fingerprint: Option<String>,
}

/// The fast path's counters (`fast_path` in a [`ServerState`]), all data paths together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastPathCounters {
    /// Flows the kernel forwards now (elements of its map).
    pub flows: u64,
    /// Flows handed to the kernel so far.
    pub added: u64,
    /// Flows taken back (FIN/RST, idle, backend gone or down).
    pub removed: u64,
    /// Packets the kernel forwarded, as its map counted them (read every second).
    pub kernel_packets: u64,
    /// Batches of map changes the kernel refused (a full map): those flows stayed in user space.
    pub refused: u64,
}

/// The registrar's counters (`control_counters` in a [`ServerState`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlCounters {
    /// Connections accepted on the control port.
    pub accepted: u64,
    /// Connections closed at once: too many handshakes under way from their address.
    pub refused_busy: u64,
    /// Handshakes under way closed to make room for a new connection (the oldest go first).
    #[serde(default)]
    pub evicted: u64,
    /// Lines that are not the protocol.
    pub invalid: u64,
    /// Handshakes cut for taking longer than `register_timeout`.
    pub handshake_timeouts: u64,
    /// Handshakes whose shared-secret proof was wrong.
    pub auth_failures: u64,
    /// Registrations accepted.
    pub registrations: u64,
    /// Deregistrations (asked for, or the connection lost).
    pub deregistrations: u64,
    /// Registered agents cut for staying silent.
    pub read_timeouts: u64,
}

/// The answer to `state` from `lb agent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Always true.
    pub ok: bool,
    /// Always [`Role::Agent`].
    pub role: Role,
    /// The name it registers.
    pub name: String,
    /// Where it is in Caplance's states.
    pub state: AgentState,
    /// The server; none: no registration.
    pub server: Option<SocketAddrV4>,
    /// Whether it proves the shared secret.
    pub auth: bool,
    /// The data IP it announced, once known.
    pub data_ip: Option<Ipv4Addr>,
    /// Seconds since the current registration; none: not registered.
    pub registered_for_s: Option<f64>,
    /// Registrations since the start.
    pub registrations: u64,
    /// Whether `lb ctl pause` is in force (also across re-registrations).
    pub pause_requested: bool,
    /// The last registration failure.
    pub last_error: Option<String>,
    /// Datagrams received on the data socket.
    pub received: u64,
    /// Packets re-injected.
    pub injected: u64,
    /// Re-injections the kernel refused.
    pub inject_failed: u64,
    /// Datagrams neither re-injected nor SANITY.
    pub refused: u64,
    /// SANITY datagrams seen.
    pub sanity: u64,
}

/// The answer to `state`, from either role (told apart by `role`; serialized as the one it
/// holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StateAnswer {
    /// From `lb server`.
    Server(ServerState),
    /// From `lb agent`.
    Agent(AgentStatus),
}

/// The answer to `backends`: `{"ok":true,"backends":[…]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backends {
    /// Always true.
    pub ok: bool,
    /// Every backend, in name order.
    pub backends: Vec<BackendRow>,
}

/// One backend in a [`Backends`] answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendRow {
    /// The backend's name.
    pub name: String,
    /// Its data address.
    pub addr: Ipv4Addr,
    /// Configured or registered.
    pub origin: Origin,
    /// What the registry makes of it now.
    pub status: Status,
    /// Its Maglev weight.
    pub weight: u32,
    /// What the active checks say.
    pub health: Health,
    /// Checks done.
    pub checks: u64,
    /// The last check's failure, if the last check failed.
    pub last_check_error: Option<String>,
    /// Seconds until a drain's deadline (0 once passed); none: not drained.
    pub drain_remaining_s: Option<f64>,
    /// Packets forwarded to it.
    pub packets: u64,
    /// IP bytes forwarded to it.
    pub bytes: u64,
    /// Flows assigned to it.
    pub flows: u64,
    /// Flows tracked to it now.
    pub tracked: u64,
}

/// Where a backend came from, in a [`BackendRow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The configuration or `--backend`.
    Static,
    /// An agent's registration.
    Agent,
}

/// What the active checks say of a backend, in a [`BackendRow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The server runs no active checks.
    Unchecked,
    /// The application answers.
    Up,
    /// The application stopped answering.
    Down,
}

impl Origin {
    /// The word, as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Static => "static",
            Origin::Agent => "agent",
        }
    }
}

impl Health {
    /// The word, as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Health::Unchecked => "unchecked",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// The answer to `metrics`: `{"ok":true,"text":"…"}`, the text in the Prometheus text
/// exposition format ([`crate::protocol::metrics`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Always true.
    pub ok: bool,
    /// The exposition, as `/metrics` serves it.
    pub text: String,
}

/// Any answer, as a process writes it on the socket (the variant's own JSON, no tag).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// Refused.
    Refused(Refusal),
    /// Done, with a message.
    Done(Done),
    /// `state`.
    State(Box<StateAnswer>),
    /// `backends`.
    Backends(Backends),
    /// `metrics`.
    Metrics(Metrics),
}

impl From<Refusal> for Answer {
    fn from(r: Refusal) -> Self {
        Answer::Refused(r)
    }
}

impl From<Done> for Answer {
    fn from(d: Done) -> Self {
        Answer::Done(d)
    }
}

impl From<ServerState> for Answer {
    fn from(s: ServerState) -> Self {
        Answer::State(Box::new(StateAnswer::Server(s)))
    }
}

impl From<AgentStatus> for Answer {
    fn from(s: AgentStatus) -> Self {
        Answer::State(Box::new(StateAnswer::Agent(s)))
    }
}

impl From<Backends> for Answer {
    fn from(b: Backends) -> Self {
        Answer::Backends(b)
    }
}

impl From<Metrics> for Answer {
    fn from(m: Metrics) -> Self {
        Answer::Metrics(m)
    }
}

#[cfg(test)]
mod tests;
