//! Validation of expectations: one subject each (telnet, listener, conntrack, nfqueue, trace), the
//! fields that subject takes, and the kernels it applies to.

use super::context::{convert, valid_name};
use super::raw::RawExpect;
use super::validator::{Named, Validator};
use crate::backend::{CONNECTIONS_COUNTERS, NFQUEUE_COUNTERS, TelnetOutcome};
use crate::kernel::KernelRange;
use crate::scenario::model::{CONNTRACK_COUNTERS, Expect, ExpectKind, ScenarioError};

impl Validator<'_> {
    /// Validates one `[[expect]]` table.
    pub(super) fn expect(
        &self,
        index: usize,
        line: Option<usize>,
        t: &toml::Table,
    ) -> Result<Expect, ScenarioError> {
        let ctx = format!("expect {index}");
        let e = |m: String| self.cx.err(line, &ctx, m);
        let r: RawExpect = convert(t).map_err(&e)?;
        let subjects = [
            ("telnet", r.telnet.is_some()),
            ("listener", r.listener.is_some()),
            ("conntrack", r.conntrack.is_some()),
            ("nfqueue", r.nfqueue.is_some()),
            ("tally", r.tally.is_some()),
            ("trace", r.trace.is_some()),
        ];
        let given: Vec<&str> = subjects.iter().filter(|s| s.1).map(|s| s.0).collect();
        if given.len() != 1 {
            return Err(e(format!(
                "an expectation names exactly one subject: telnet, listener, conntrack, nfqueue, tally or trace (found {})",
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(", ")
                }
            )));
        }
        let subject = given[0];
        let fields = [
            ("outcome", r.outcome.is_some()),
            ("received", r.received.is_some()),
            ("bytes", r.bytes.is_some()),
            ("connections", r.connections.is_some()),
            ("datagrams", r.datagrams.is_some()),
            ("since", r.since.is_some()),
            ("delta", !r.delta.is_empty()),
            ("counts", !r.counts.is_empty()),
            ("entries", r.entries.is_some()),
            ("ladder", r.ladder.is_some()),
        ];
        let only = |allowed: &[&str]| -> Result<(), ScenarioError> {
            for (field, set) in fields {
                if set && !allowed.contains(&field) {
                    return Err(e(format!(
                        "`{field}` does not apply to a {subject} expectation"
                    )));
                }
            }
            if !fields.iter().any(|(f, set)| *set && allowed.contains(f)) && subject != "trace" {
                return Err(e(format!(
                    "nothing to check: give one of {}",
                    allowed.join(", ")
                )));
            }
            Ok(())
        };
        let kind = match subject {
            "telnet" => {
                only(&["outcome", "received"])?;
                let step = r.telnet.unwrap_or_default();
                self.refer(line, &ctx, &step, &[Named::Telnet])?;
                let outcome = match r.outcome.as_deref() {
                    None => None,
                    Some(o) => Some(TelnetOutcome::parse(o).ok_or_else(|| {
                        e(format!(
                            "unknown outcome `{o}` (connected | refused | timeout | unreachable)"
                        ))
                    })?),
                };
                ExpectKind::Telnet {
                    step,
                    outcome,
                    received: r.received,
                }
            }
            "listener" => {
                let name = r.listener.unwrap_or_default();
                self.refer(
                    line,
                    &ctx,
                    &name,
                    &[Named::TcpListener, Named::UdpListener, Named::Echo],
                )?;
                match self.names.get(&name).map(|n| n.0) {
                    Some(Named::TcpListener) => only(&["received", "bytes", "connections"])?,
                    Some(Named::Echo) => only(&["bytes", "connections"])?,
                    _ => only(&["bytes", "datagrams"])?,
                }
                ExpectKind::Listener {
                    name,
                    received: r.received,
                    bytes: r.bytes,
                    connections: r.connections,
                    datagrams: r.datagrams,
                }
            }
            "conntrack" => {
                only(&["since", "delta", "entries"])?;
                let read = r.conntrack.unwrap_or_default();
                let readings = ("conntrack", Named::Conntrack, CONNTRACK_COUNTERS);
                self.readings(line, &ctx, readings, &read, &r.since, &r.delta)?;
                ExpectKind::Conntrack {
                    read,
                    since: r.since,
                    delta: r.delta,
                    entries: r.entries,
                }
            }
            "nfqueue" => {
                only(&["since", "delta"])?;
                let read = r.nfqueue.unwrap_or_default();
                let readings = ("nfqueue", Named::Nfqueue, NFQUEUE_COUNTERS);
                self.readings(line, &ctx, readings, &read, &r.since, &r.delta)?;
                let Some(since) = r.since else {
                    return Err(e(
                        "an nfqueue expectation compares two readings: give `since` and `delta`"
                            .into(),
                    ));
                };
                ExpectKind::Nfqueue {
                    read,
                    since,
                    delta: r.delta,
                }
            }
            "tally" => {
                only(&["since", "delta", "counts"])?;
                let read = r.tally.unwrap_or_default();
                let readings = ("tally", Named::Tally, CONNECTIONS_COUNTERS);
                self.readings(line, &ctx, readings, &read, &r.since, &r.delta)?;
                if let Some(k) = r
                    .counts
                    .keys()
                    .find(|k| !CONNECTIONS_COUNTERS.contains(&k.as_str()))
                {
                    return Err(e(format!(
                        "unknown tally counter `{k}` (known: {})",
                        CONNECTIONS_COUNTERS.join(", ")
                    )));
                }
                ExpectKind::Tally {
                    read,
                    since: r.since,
                    delta: r.delta,
                    counts: r.counts,
                }
            }
            _ => {
                only(&["ladder"])?;
                let snapshot = r.trace.unwrap_or_default();
                if !valid_name(&snapshot) {
                    return Err(e(format!(
                        "snapshot name `{snapshot}`: use a-z, 0-9, `-` and `_`"
                    )));
                }
                ExpectKind::Trace {
                    snapshot,
                    ladder: r.ladder.unwrap_or(false),
                }
            }
        };
        let kernel = match &r.kernel {
            None => None,
            Some(k) => Some(
                k.parse::<KernelRange>()
                    .map_err(|m| e(format!("kernel: {m}")))?,
            ),
        };
        if kernel.is_some() && r.elsewhere.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(e(
                "an expectation limited to a kernel range needs `elsewhere = \"...\"`: what other kernels do".into(),
            ));
        }
        Ok(Expect {
            index,
            line,
            kernel,
            elsewhere: r.elsewhere,
            kind,
        })
    }
}

impl Validator<'_> {
    /// Checks a reading expectation: `read` (and `since`, which must be taken before it) name
    /// readings of `kind`, `delta` needs `since`, and names only `counters`.
    fn readings(
        &self,
        line: Option<usize>,
        ctx: &str,
        (what, kind, counters): (&str, Named, &[&str]),
        read: &str,
        since: &Option<String>,
        delta: &indexmap::IndexMap<String, i64>,
    ) -> Result<(), ScenarioError> {
        let e = |m: String| self.cx.err(line, ctx, m);
        self.refer(line, ctx, read, &[kind])?;
        if let Some(s) = since {
            self.refer(line, ctx, s, &[kind])?;
            let (a, b) = (self.names[s].1, self.names[read].1);
            if a >= b {
                return Err(e(format!(
                    "`since = \"{s}\"` must be a reading taken before `{read}`"
                )));
            }
        } else if !delta.is_empty() {
            return Err(e("`delta` needs `since = \"<earlier reading>\"`".into()));
        }
        for k in delta.keys() {
            if !counters.contains(&k.as_str()) {
                return Err(e(format!(
                    "unknown {what} counter `{k}` (known: {})",
                    counters.join(", ")
                )));
            }
        }
        Ok(())
    }
}
