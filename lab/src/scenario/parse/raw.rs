//! The format as serde reads it: one raw struct per table kind, before any validation.

use crate::topology::Topology;
use indexmap::IndexMap;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) name: Option<String>,
    pub(super) summary: Option<String>,
    #[serde(rename = "not-simulated")]
    pub(super) not_simulated: Option<String>,
    #[serde(rename = "not-mininet")]
    pub(super) not_mininet: Option<String>,
    pub(super) topology: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) capture: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) trace: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub(super) step: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    pub(super) expect: Vec<Spanned<toml::Table>>,
}

/// Only the inline topology, parsed from the same text so its spans are the file's.
#[derive(Deserialize)]
pub(super) struct RawInlineTopology {
    pub(super) topology: Topology,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawTrace {
    pub(super) ordering: Option<String>,
    pub(super) direction: Option<bool>,
    pub(super) tcp_options: Option<bool>,
    pub(super) arp: Option<bool>,
    pub(super) settle: Option<RawDuration>,
    pub(super) settle_max: Option<RawDuration>,
}

/// A duration in the workspace's one grammar (`lb_core::duration`: `"250ms"`, `"2s"`, `"1.5s"`,
/// `"1m"`), or a TOML number of seconds.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum RawDuration {
    Text(String),
    Int(i64),
    Float(f64),
}

impl RawDuration {
    /// The duration, or why it is not one.
    pub(super) fn get(&self) -> Result<Duration, String> {
        match self {
            RawDuration::Int(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
            RawDuration::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1e6 => {
                Ok(Duration::from_secs_f64(*f))
            }
            RawDuration::Text(s) => lb_core::duration::parse(s).map_err(|e| e.to_string()),
            _ => Err("a duration must not be negative".into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStart {
    pub(super) start: String,
    pub(super) host: String,
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) args: Vec<String>,
    pub(super) listen: Option<String>,
    pub(super) reply: Option<String>,
    pub(super) queue: Option<u16>,
    pub(super) count: Option<usize>,
    pub(super) delay: Option<RawDuration>,
    pub(super) verdict: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWait {
    pub(super) wait: String,
    pub(super) host: Option<String>,
    pub(super) process: Option<String>,
    pub(super) line: Option<String>,
    pub(super) tcp: Option<String>,
    pub(super) udp: Option<String>,
    pub(super) queue: Option<u16>,
    pub(super) listener: Option<String>,
    pub(super) count: Option<u64>,
    pub(super) timeout: Option<RawDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawTelnet {
    pub(super) telnet: String,
    pub(super) host: String,
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) send: Vec<String>,
    pub(super) server: Option<String>,
    pub(super) wait_reply: Option<bool>,
    pub(super) timeout: Option<RawDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawBurst {
    pub(super) udp_burst: String,
    pub(super) host: String,
    pub(super) name: Option<String>,
    pub(super) count: Option<usize>,
    pub(super) source_port: Option<u16>,
    pub(super) interval: Option<RawDuration>,
    pub(super) payload: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnections {
    pub(super) connections: String,
    pub(super) host: String,
    pub(super) to: String,
    pub(super) count: Option<usize>,
    pub(super) interval: Option<RawDuration>,
    pub(super) stall: Option<RawDuration>,
    pub(super) timeout: Option<RawDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTally {
    pub(super) tally: String,
    pub(super) of: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConntrack {
    pub(super) conntrack: String,
    pub(super) host: String,
    #[serde(default)]
    pub(super) filter: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNfqueue {
    pub(super) nfqueue: String,
    pub(super) host: String,
    #[serde(default)]
    pub(super) queue: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSleep {
    pub(super) sleep: RawDuration,
    pub(super) why: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStop {
    pub(super) stop: String,
    pub(super) signal: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExec {
    pub(super) exec: Vec<String>,
    pub(super) host: String,
    pub(super) name: Option<String>,
    pub(super) timeout: Option<RawDuration>,
    pub(super) status: Option<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImpair {
    pub(super) impair: String,
    pub(super) egress: Option<toml::Table>,
    pub(super) ingress: Option<toml::Table>,
    pub(super) both: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    pub(super) telnet: Option<String>,
    pub(super) listener: Option<String>,
    pub(super) conntrack: Option<String>,
    pub(super) nfqueue: Option<String>,
    pub(super) tally: Option<String>,
    pub(super) trace: Option<String>,
    pub(super) outcome: Option<String>,
    pub(super) received: Option<String>,
    pub(super) bytes: Option<u64>,
    pub(super) connections: Option<u64>,
    pub(super) datagrams: Option<u64>,
    pub(super) since: Option<String>,
    #[serde(default)]
    pub(super) delta: IndexMap<String, i64>,
    #[serde(default)]
    pub(super) counts: IndexMap<String, u64>,
    pub(super) entries: Option<u64>,
    pub(super) ladder: Option<bool>,
    pub(super) kernel: Option<String>,
    pub(super) elsewhere: Option<String>,
}

/// The keys that name a step's action; a step has exactly one.
pub(super) const STEP_ACTIONS: &[&str] = &[
    "start",
    "wait",
    "telnet",
    "connections",
    "tally",
    "udp-burst",
    "conntrack",
    "nfqueue",
    "sleep",
    "stop",
    "exec",
    "impair",
];
