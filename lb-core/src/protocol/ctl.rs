//! The `lb ctl` protocol, typed: one JSON object per line on the operator's unix socket.
//!
//! A request is `{"cmd":"drain","name":"h2","deadline":"30s"}` on the wire (the shape of the
//! first, untyped version, kept so old clients still work) and a [`Request`] in code. An answer
//! is `{"ok":true,…}` or `{"ok":false,"error":"…"}`, typed too: [`Refusal`] and [`Done`] are
//! the two answers every command shares, [`StateAnswer`] (a [`ServerState`] or an
//! [`AgentStatus`]) answers `state` and [`Backends`] answers `backends`; [`Answer`] is any of
//! them, as a process sends it. A client knows from its request which one to read. Which
//! commands a process serves depends on its [`Role`].

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
            Role::Server => &["state", "backends", "metrics", "drain", "undrain"],
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
        "{0:?} is not a command (state, backends, metrics, drain, undrain, pause, resume, deregister, register)"
    )]
    Unknown(String),
    /// `drain` or `undrain` without `name`.
    #[error("{0}: give a backend name")]
    MissingName(&'static str),
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
            },
            Request::Undrain { name } => WireRequest {
                cmd,
                name: Some(name),
                deadline: None,
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
mod tests {
    use super::*;

    fn req(line: &str) -> Result<Request, String> {
        serde_json::from_str(line).map_err(|e| e.to_string())
    }

    #[test]
    fn parse() {
        assert_eq!(req(r#"{"cmd":"state"}"#), Ok(Request::State));
        assert_eq!(
            req(r#"{"cmd":"drain","name":"h2","deadline":"30s"}"#),
            Ok(Request::Drain {
                name: "h2".into(),
                deadline: Some(Duration::from_secs(30)),
            })
        );
        assert_eq!(
            req(r#"{"cmd":"undrain","name":"h2"}"#),
            Ok(Request::Undrain { name: "h2".into() })
        );
    }

    #[test]
    fn emit_is_the_first_versions_shape() {
        let line = |r: Request| serde_json::to_string(&r).unwrap();
        assert_eq!(line(Request::Pause), r#"{"cmd":"pause"}"#);
        assert_eq!(
            line(Request::Drain {
                name: "h2".into(),
                deadline: Some(Duration::from_millis(1500)),
            }),
            r#"{"cmd":"drain","name":"h2","deadline":"1500ms"}"#
        );
        for r in [
            Request::State,
            Request::Backends,
            Request::Undrain { name: "h3".into() },
            Request::Register,
        ] {
            assert_eq!(req(&line(r.clone())), Ok(r));
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let wire: WireRequest = serde_json::from_str(r#"{"cmd":"nope"}"#).unwrap();
        assert_eq!(
            wire.for_role(Role::Server).unwrap_err().to_string(),
            "\"nope\" is not a server command (state, backends, metrics, drain, undrain)"
        );
        assert!(
            req(r#"{"cmd":"nope"}"#)
                .unwrap_err()
                .contains("\"nope\" is not a command")
        );
        assert!(
            req(r#"{"cmd":"drain"}"#)
                .unwrap_err()
                .contains("drain: give a backend name")
        );
        assert!(
            req(r#"{"cmd":"drain","name":"h2","deadline":"soon"}"#)
                .unwrap_err()
                .contains("deadline: ")
        );
        assert!(req(r#"{"cmd":"state","extra":1}"#).is_err());
        assert_eq!(
            Request::Pause.refused_by(Role::Server).map(|r| r.error),
            Some(
                "\"pause\" is not a server command (state, backends, metrics, drain, undrain)"
                    .into()
            )
        );
        assert_eq!(Request::State.refused_by(Role::Agent), None);
        assert!(
            Request::Drain {
                name: "x".into(),
                deadline: None
            }
            .refused_by(Role::Agent)
            .unwrap()
            .error
            .starts_with("\"drain\" is not an agent command")
        );
    }

    /// `answer` serialized, then read back as `T`: the same value, and the JSON `want` (the
    /// field names and shapes of the first, untyped version).
    fn round_trip<T>(answer: T, want: serde_json::Value)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug + Into<Answer> + Clone,
    {
        let line = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            want
        );
        assert_eq!(serde_json::from_str::<T>(&line).unwrap(), answer);
        // As any answer, the same line.
        assert_eq!(serde_json::to_string(&answer.clone().into()).unwrap(), line);
    }

    #[test]
    fn refusal_and_done_round_trip() {
        round_trip(
            Refusal::new("no backend h9"),
            serde_json::json!({"ok": false, "error": "no backend h9"}),
        );
        round_trip(
            Done::new("paused"),
            serde_json::json!({"ok": true, "message": "paused"}),
        );
    }

    fn server_state() -> ServerState {
        ServerState {
            ok: true,
            role: Role::Server,
            vip: Ipv4Addr::new(10, 0, 0, 50),
            data_path: "nfqueue 0 (batch verdicts)".into(),
            control: Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1338)),
            auth: false,
            active_checks: None,
            uptime_s: 12.5,
            backends: 2,
            registered: 1,
            pending_connections: 0,
            tracked_flows: 3,
            received: 40,
            sent: 38,
            send_failed: 0,
            flows_moved: 1,
            drops: BTreeMap::from([("not_vip".to_string(), 2)]),
            control_counters: ControlCounters {
                accepted: 1,
                registrations: 1,
                ..ControlCounters::default()
            },
            fast_path: None,
            table_fingerprint: Some("00c0ffee00c0ffee".into()),
        }
    }

    fn agent_status() -> AgentStatus {
        AgentStatus {
            ok: true,
            role: Role::Agent,
            name: "h2".into(),
            state: AgentState::Active,
            server: Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1338)),
            auth: true,
            data_ip: Some(Ipv4Addr::new(10, 0, 0, 2)),
            registered_for_s: Some(1.25),
            registrations: 1,
            pause_requested: false,
            last_error: None,
            received: 5,
            injected: 4,
            inject_failed: 0,
            refused: 0,
            sanity: 1,
        }
    }

    #[test]
    fn server_state_round_trips() {
        round_trip(
            server_state(),
            serde_json::json!({
                "ok": true, "role": "server", "vip": "10.0.0.50",
                "data_path": "nfqueue 0 (batch verdicts)", "control": "0.0.0.0:1338",
                "auth": false, "active_checks": null, "uptime_s": 12.5, "backends": 2,
                "registered": 1, "pending_connections": 0, "tracked_flows": 3, "received": 40,
                "sent": 38, "send_failed": 0, "flows_moved": 1, "drops": {"not_vip": 2},
                "control_counters": {
                    "accepted": 1, "refused_busy": 0, "evicted": 0, "invalid": 0, "handshake_timeouts": 0,
                    "auth_failures": 0, "registrations": 1, "deregistrations": 0,
                    "read_timeouts": 0
                },
                "table_fingerprint": "00c0ffee00c0ffee"
            }),
        );
        let line = serde_json::to_string(&server_state()).unwrap();
        assert_eq!(
            serde_json::from_str::<StateAnswer>(&line).unwrap(),
            StateAnswer::Server(server_state())
        );
    }

    #[test]
    fn agent_status_round_trips() {
        round_trip(
            agent_status(),
            serde_json::json!({
                "ok": true, "role": "agent", "name": "h2", "state": "Active",
                "server": "10.0.0.1:1338", "auth": true, "data_ip": "10.0.0.2",
                "registered_for_s": 1.25, "registrations": 1, "pause_requested": false,
                "last_error": null, "received": 5, "injected": 4, "inject_failed": 0,
                "refused": 0, "sanity": 1
            }),
        );
        let line = serde_json::to_string(&agent_status()).unwrap();
        assert_eq!(
            serde_json::from_str::<StateAnswer>(&line).unwrap(),
            StateAnswer::Agent(agent_status())
        );
    }

    #[test]
    fn backends_round_trip() {
        let row = |name: &str, origin, status, health| BackendRow {
            name: name.into(),
            addr: Ipv4Addr::new(10, 0, 0, 2),
            origin,
            status,
            weight: 1,
            health,
            checks: 0,
            last_check_error: None,
            drain_remaining_s: None,
            packets: 10,
            bytes: 600,
            flows: 2,
            tracked: 1,
        };
        let mut drained = row("s1", Origin::Static, Status::Draining, Health::Down);
        drained.checks = 4;
        drained.last_check_error = Some("connect 10.0.0.2:8080: refused".into());
        drained.drain_remaining_s = Some(29.5);
        round_trip(
            Backends {
                ok: true,
                backends: vec![
                    row("h2", Origin::Agent, Status::Active, Health::Unchecked),
                    drained,
                ],
            },
            serde_json::json!({"ok": true, "backends": [
                {"name": "h2", "addr": "10.0.0.2", "origin": "agent", "status": "active",
                 "weight": 1, "health": "unchecked", "checks": 0, "last_check_error": null,
                 "drain_remaining_s": null, "packets": 10, "bytes": 600, "flows": 2,
                 "tracked": 1},
                {"name": "s1", "addr": "10.0.0.2", "origin": "static", "status": "draining",
                 "weight": 1, "health": "down", "checks": 4,
                 "last_check_error": "connect 10.0.0.2:8080: refused",
                 "drain_remaining_s": 29.5, "packets": 10, "bytes": 600, "flows": 2,
                 "tracked": 1}
            ]}),
        );
        round_trip(
            Backends {
                ok: true,
                backends: vec![],
            },
            serde_json::json!({"ok": true, "backends": []}),
        );
    }
}
