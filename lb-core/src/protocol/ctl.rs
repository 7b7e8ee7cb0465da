//! The `lb ctl` protocol, typed: one JSON object per line on the operator's unix socket.
//!
//! A request is `{"cmd":"drain","name":"h2","deadline":"30s"}` on the wire (the shape of the
//! first, untyped version, kept so old clients still work) and a [`Request`] in code. An answer
//! is `{"ok":true,…}` or `{"ok":false,"error":"…"}`; [`Refusal`] and [`Done`] are the two
//! answers every command shares. Which commands a process serves depends on its [`Role`].

use crate::duration;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// One `lb ctl` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireRequest", into = "WireRequest")]
pub enum Request {
    /// Server or agent: what the process is doing, with its counters.
    State,
    /// Server: every backend with its status and traffic.
    Backends,
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

/// Which end of the socket serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            Role::Server => &["state", "backends", "drain", "undrain"],
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
        "{0:?} is not a command (state, backends, drain, undrain, pause, resume, deregister, register)"
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
            "\"nope\" is not a server command (state, backends, drain, undrain)"
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
            Some("\"pause\" is not a server command (state, backends, drain, undrain)".into())
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
}
