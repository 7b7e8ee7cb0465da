//! Parsing and validating a scenario file (TOML → [`Scenario`]). No syscalls.
//!
//! The format reference is docs/scenario-format.md. Every mistake is reported with the file,
//! the line of the step or expectation, and what is wrong, as one line. The file's parts are
//! checked in order: the topology (resolved here), the capture points, the trace settings, then
//! each step ([`step`](step)) and each expectation ([`expect`](expect)).

mod context;
mod expect;
mod raw;
mod step;
#[cfg(test)]
mod tests;
mod validator;

use crate::backend::CaptureSpec;
use crate::resolve::resolve;
use crate::scenario::model::{Scenario, ScenarioError, Step, TraceSettings};
use crate::topology::{Origin, Topology, builtin};
use crate::trace::Ordering;
use context::{Cx, unknown_host, valid_name};
use raw::{RawDuration, RawFile, RawInlineTopology, RawTrace};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;
use validator::Validator;

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = crate::input::read_text(path).map_err(|e| ScenarioError {
            file: shown.clone(),
            line: None,
            context: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates scenario text; `path` names it in errors and locates relative
    /// topology files and snapshots.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let cx = Cx { file: &file, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            cx.err(
                e.span().and_then(|s| cx.line(s.start)),
                "",
                e.message().trim().to_string(),
            )
        })?;
        let name = match raw.name {
            Some(n) => n,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if !valid_name(&name) {
            return Err(cx.err(
                None,
                "name",
                format!("`{name}` is not a usable scenario name: use a-z, 0-9, `-` and `_`"),
            ));
        }

        // Topology: a built-in spec, a file relative to the scenario, or an inline table.
        let plan = match &raw.topology {
            None => resolve(&builtin("single,3").map_err(|e| cx.err(None, "topology", e.to_string()))?),
            Some(t) => match t.get_ref() {
                toml::Value::String(spec) => {
                    let line = cx.line(t.span().start);
                    let topo = if spec.ends_with(".toml") || spec.contains('/') {
                        let p = path.parent().unwrap_or(Path::new(".")).join(spec);
                        Topology::from_file(&p)
                    } else {
                        builtin(spec)
                    }
                    .map_err(|e| cx.err(line, "topology", e.to_string()))?;
                    resolve(&topo)
                }
                toml::Value::Table(_) => {
                    let inline: RawInlineTopology = toml::from_str(text).map_err(|e| {
                        cx.err(e.span().and_then(|s| cx.line(s.start)), "topology", e.message().trim().to_string())
                    })?;
                    let mut topo = inline.topology;
                    topo.origin = Origin::File {
                        path: file.clone(),
                        text: text.to_string(),
                    };
                    if topo.name.is_none() {
                        topo.name = Some(Spanned::new(0..0, name.clone()));
                    }
                    resolve(&topo)
                }
                _ => {
                    return Err(cx.err(
                        cx.line(t.span().start),
                        "topology",
                        "write a built-in (\"single,3\"), a file (\"../fixtures/topologies/router.toml\") or a [topology] table",
                    ));
                }
            },
        }
        .map_err(|e| ScenarioError {
            // The topology error names its own file (this one, for an inline topology) and line.
            file: e.origin.clone(),
            line: e.line,
            context: e.field.clone(),
            message: e.kind.to_string(),
        })?;

        let mut captures = Vec::new();
        for (i, c) in raw.capture.iter().enumerate() {
            let line = cx.line(c.span().start);
            let ctx = format!("capture[{i}]");
            let (host, iface) = match c.get_ref().split_once(':') {
                Some((h, i)) => (h, Some(i)),
                None => (c.get_ref().as_str(), None),
            };
            let interfaces: Vec<String> = if let Some(h) = plan.host(host) {
                h.interfaces.iter().map(|i| i.name.clone()).collect()
            } else if let Some(s) = plan.switches.iter().find(|s| s.name == host) {
                std::iter::once(s.name.clone())
                    .chain(s.ports.iter().map(|p| p.name.clone()))
                    .collect()
            } else {
                return Err(cx.err(line, ctx, unknown_host(&plan, host)));
            };
            let interface = match iface {
                None => None,
                Some(i) => {
                    let full = format!("{host}-{i}");
                    match [i, full.as_str()]
                        .into_iter()
                        .find(|c| *c == "lo" || interfaces.iter().any(|x| x == c))
                    {
                        Some(n) => Some(n.to_string()),
                        None => {
                            return Err(cx.err(
                                line,
                                ctx,
                                format!(
                                    "{host} has no interface `{i}` (interfaces: {}, lo)",
                                    interfaces.join(", ")
                                ),
                            ));
                        }
                    }
                }
            };
            let point = CaptureSpec {
                host: host.to_string(),
                interface,
            };
            if captures.contains(&point) {
                return Err(cx.err(line, ctx, format!("`{}` is captured twice", c.get_ref())));
            }
            captures.push(point);
        }

        let trace = match &raw.trace {
            None => TraceSettings::default(),
            Some(t) => {
                let line = cx.line(t.span().start);
                let r: RawTrace = toml::Value::Table(t.get_ref().clone()).try_into().map_err(
                    |e: toml::de::Error| cx.err(line, "trace", e.message().trim().to_string()),
                )?;
                let d = TraceSettings::default();
                let dur =
                    |v: &Option<RawDuration>, def: Duration| -> Result<Duration, ScenarioError> {
                        v.as_ref()
                            .map(|r| r.get().map_err(|m| cx.err(line, "trace", m)))
                            .unwrap_or(Ok(def))
                    };
                TraceSettings {
                    ordering: match r.ordering.as_deref() {
                        None | Some("captured") => Ordering::Captured,
                        Some("sort-arrivals") => Ordering::SortArrivals,
                        Some(o) => {
                            return Err(cx.err(
                                line,
                                "trace.ordering",
                                format!("unknown ordering `{o}` (captured | sort-arrivals)"),
                            ));
                        }
                    },
                    direction: r.direction.unwrap_or(d.direction),
                    tcp_options: r.tcp_options.unwrap_or(d.tcp_options),
                    arp: r.arp.unwrap_or(d.arp),
                    settle: dur(&r.settle, d.settle)?,
                    settle_max: dur(&r.settle_max, d.settle_max)?,
                }
            }
        };

        let mut v = Validator {
            cx: &cx,
            plan: &plan,
            names: HashMap::new(),
        };
        let mut steps = Vec::new();
        for (i, s) in raw.step.iter().enumerate() {
            let index = i + 1;
            let line = cx.line(s.span().start);
            let kind = v.step(index, line, s.get_ref())?;
            steps.push(Step { index, line, kind });
        }
        let mut expects = Vec::new();
        for (i, e) in raw.expect.iter().enumerate() {
            let index = i + 1;
            let line = cx.line(e.span().start);
            expects.push(v.expect(index, line, e.get_ref())?);
        }
        Ok(Scenario {
            name,
            path: path.to_path_buf(),
            summary: raw.summary,
            not_simulated: raw.not_simulated.filter(|w| !w.trim().is_empty()),
            not_mininet: raw.not_mininet.filter(|w| !w.trim().is_empty()),
            plan,
            captures,
            trace,
            steps,
            expects,
        })
    }
}
