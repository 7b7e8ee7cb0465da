//! The validator's state: the file, the topology, and the names earlier steps claimed.

use super::context::{Cx, unknown_host, valid_name};
use crate::resolve::Plan;
use crate::scenario::model::ScenarioError;
use std::collections::HashMap;

/// What a name refers to, and which step made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Named {
    Process,
    TcpListener,
    UdpListener,
    Holder,
    Telnet,
    Burst,
    Conntrack,
    Nfqueue,
    Exec,
    Echo,
    Connections,
    Tally,
}

impl Named {
    /// As an error message says it.
    pub(super) fn what(self) -> &'static str {
        match self {
            Named::Process => "a started process",
            Named::TcpListener => "a tcp-listener",
            Named::UdpListener => "a udp-listener",
            Named::Holder => "an nfq-holder",
            Named::Telnet => "a telnet step",
            Named::Burst => "a udp-burst",
            Named::Conntrack => "a conntrack reading",
            Named::Nfqueue => "an nfqueue reading",
            Named::Exec => "an exec step",
            Named::Echo => "a tcp-echo server",
            Named::Connections => "a connections group",
            Named::Tally => "a tally reading",
        }
    }
}

/// Validates steps and expectations in order, tracking the names they claim.
pub(super) struct Validator<'a> {
    pub(super) cx: &'a Cx<'a>,
    pub(super) plan: &'a Plan,
    pub(super) names: HashMap<String, (Named, usize)>,
}

impl Validator<'_> {
    /// `host`, if the topology has it.
    pub(super) fn host(
        &self,
        line: Option<usize>,
        ctx: &str,
        host: &str,
    ) -> Result<String, ScenarioError> {
        if self.plan.host(host).is_none() {
            return Err(self.cx.err(line, ctx, unknown_host(self.plan, host)));
        }
        Ok(host.to_string())
    }

    /// Claims `name` for what this step makes; names are unique in a scenario.
    pub(super) fn claim(
        &mut self,
        line: Option<usize>,
        ctx: &str,
        name: &str,
        what: Named,
        index: usize,
    ) -> Result<String, ScenarioError> {
        if !valid_name(name) {
            return Err(self.cx.err(
                line,
                ctx,
                format!("name `{name}`: use 1-32 characters from a-z, 0-9, `-` and `_`"),
            ));
        }
        if let Some((_, at)) = self.names.get(name) {
            return Err(self.cx.err(
                line,
                ctx,
                format!("name `{name}` is already used by step {at}: give this step its own `name = \"...\"`"),
            ));
        }
        self.names.insert(name.to_string(), (what, index));
        Ok(name.to_string())
    }

    /// Checks that `name` was claimed by an earlier step of one of the `allowed` kinds.
    pub(super) fn refer(
        &self,
        line: Option<usize>,
        ctx: &str,
        name: &str,
        allowed: &[Named],
    ) -> Result<(), ScenarioError> {
        match self.names.get(name) {
            Some((k, _)) if allowed.contains(k) => Ok(()),
            Some((k, at)) => Err(self.cx.err(
                line,
                ctx,
                format!(
                    "`{name}` (step {at}) is {}, not {}",
                    k.what(),
                    allowed
                        .iter()
                        .map(|a| a.what())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )),
            None => {
                let mut known: Vec<&str> = self
                    .names
                    .iter()
                    .filter(|(_, (k, _))| allowed.contains(k))
                    .map(|(n, _)| n.as_str())
                    .collect();
                known.sort();
                Err(self.cx.err(
                    line,
                    ctx,
                    format!(
                        "no earlier step is named `{name}` (known: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ))
            }
        }
    }
}
