//! What each step does, grouped by family: starting programs, waiting, traffic, readings, and
//! the run's own control (sleep, stop, exec). A new step kind is one arm here.

use super::{Runtime, tail};
use crate::backend::{CONNECTIONS_COUNTERS, Probe, Started, TelnetOutcome};
use crate::scenario::model::{StepKind, WaitFor};
use std::time::Duration;

/// How a step ended: `Ok((true, detail))` done, `Ok((false, detail))` a wait timed out (the
/// run goes on), `Err(detail)` failed.
pub(super) type StepOutcome = Result<(bool, String), String>;

impl Runtime<'_> {
    /// Runs one step.
    pub(super) fn step(&mut self, kind: &StepKind) -> StepOutcome {
        match kind {
            StepKind::Start {
                host,
                name,
                program,
            } => {
                let started = self.net.start(host, name, program)?;
                Ok((true, self.keep_log(name, started)))
            }
            StepKind::Wait { until, timeout } => self.wait(until, *timeout),
            StepKind::Telnet { host, name, spec } => {
                let r = self.net.telnet(host, spec)?;
                let mut detail = format!("{} ({})", r.outcome, r.message);
                if r.outcome == TelnetOutcome::Connected {
                    detail.push_str(&format!(
                        "; sent {} line(s), read {} bytes, {}",
                        spec.send.len(),
                        r.received.len(),
                        if r.closed_by_peer {
                            "closed by the server"
                        } else {
                            "the server did not close"
                        }
                    ));
                }
                self.telnets.insert(name.clone(), r);
                Ok((true, detail))
            }
            StepKind::Connections { host, name, spec } => {
                let started = self.net.connections(host, name, spec)?;
                Ok((true, self.keep_log(name, started)))
            }
            StepKind::Tally { name, group } => {
                let counters = self.net.tally(group)?;
                // Exchanges depend on timing: they are in the reading, not in the detail, which
                // is the same on every run.
                let detail = CONNECTIONS_COUNTERS
                    .iter()
                    .filter(|k| **k != "exchanges")
                    .map(|k| format!("{k} {}", counters.get(*k).copied().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.readings.insert(name.clone(), counters);
                Ok((true, detail))
            }
            StepKind::UdpBurst { host, spec, .. } => {
                let sent = self.net.udp_burst(host, spec)?;
                Ok((true, format!("sent {sent} datagram(s) to {}", spec.to)))
            }
            StepKind::Conntrack { host, name, filter } => self.conntrack(host, name, filter),
            StepKind::Nfqueue { host, name, queue } => {
                let counters = self.net.nfqueue(host, *queue)?;
                let detail = counters
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.readings.insert(name.clone(), counters);
                Ok((true, detail))
            }
            StepKind::Sleep { duration, why } => {
                if !self.net.sleep(*duration) {
                    return Err("interrupted".into());
                }
                Ok((true, format!("slept {} ms: {why}", duration.as_millis())))
            }
            StepKind::Stop { process, signal } => {
                if let Some(status) = self.net.exit_status(process) {
                    return Err(format!("{process} had already exited ({status})"));
                }
                self.net.signal(process, *signal)?;
                let ended =
                    self.poll_until(Duration::from_secs(5), |net| Ok(net.exit_status(process)))?;
                match ended {
                    Some(status) => {
                        Ok((true, format!("{signal} sent; {process} ended ({status})")))
                    }
                    None => Err(format!("{process} still runs 5 s after {signal}")),
                }
            }
            StepKind::Impair { link, ways, .. } => {
                let mut shown = Vec::new();
                for (way, imp) in ways {
                    self.net.impair(*link, *way, imp)?;
                    let l = &self.s.plan.links[*link];
                    shown.push(format!(
                        "{}: {imp}",
                        crate::impair::rules::way_label(l, *way)
                    ));
                }
                Ok((true, shown.join("; ")))
            }
            StepKind::Exec {
                host,
                name,
                spec,
                status,
            } => {
                let r = self.net.exec(host, name, spec)?;
                if let Some(log) = r.log {
                    self.artifacts.push((format!("{name} log"), log));
                }
                let shown = spec.argv.join(" ");
                match r.code {
                    _ if !r.finished => Err(format!(
                        "`{shown}` did not finish within {} ms",
                        spec.timeout.as_millis()
                    )),
                    Some(code) if code == *status => Ok((true, format!("exit status {status}"))),
                    _ => Err(format!(
                        "`{shown}` ended with {}, expected exit status {status}; output: {}",
                        r.ended,
                        tail(&r.output)
                    )),
                }
            }
        }
    }

    /// Keeps what started as `name` logs as an artifact; returns the step's detail.
    fn keep_log(&mut self, name: &str, started: Started) -> String {
        if let Some(log) = started.log {
            self.artifacts.push((format!("{name} log"), log));
        }
        started.detail
    }

    /// A `wait` step: polls in the network's time until `until` holds or `timeout` passes.
    fn wait(&mut self, until: &WaitFor, timeout: Duration) -> StepOutcome {
        match until {
            WaitFor::Log { process, text } => {
                let mut log = String::new();
                let printed = self.poll_until(timeout, |net| {
                    log = net.output(process)?;
                    if log.lines().any(|l| l.contains(text.as_str())) {
                        return Ok(Some(()));
                    }
                    match net.exit_status(process) {
                        Some(status) => Err(format!(
                            "{process} exited ({status}) before printing `{text}`; its log: {}",
                            tail(&log)
                        )),
                        None => Ok(None),
                    }
                })?;
                match printed {
                    Some(()) => Ok((true, format!("{process} printed `{text}`"))),
                    None => Err(format!(
                        "{process} did not print `{text}` within {} ms; its log: {}",
                        timeout.as_millis(),
                        tail(&log)
                    )),
                }
            }
            WaitFor::Probe { host, probe } => {
                let held =
                    self.poll_until(timeout, |net| Ok(net.probe(host, probe)?.then_some(())))?;
                match (held, probe) {
                    (Some(()), Probe::Listening { proto, addr }) => {
                        Ok((true, format!("{proto} {addr} is listening in {host}")))
                    }
                    (Some(()), Probe::QueueBound { queue }) => {
                        Ok((true, format!("queue {queue} is bound in {host}")))
                    }
                    (None, Probe::Listening { proto, addr }) => Err(format!(
                        "nothing listens on {proto} {addr} in {host} after {} ms",
                        timeout.as_millis()
                    )),
                    (None, Probe::QueueBound { queue }) => Err(format!(
                        "queue {queue} is not bound in {host} after {} ms",
                        timeout.as_millis()
                    )),
                }
            }
            WaitFor::Datagrams { listener, count } => {
                let got = self.poll_until(timeout, |net| {
                    let st = net.listener(listener)?;
                    Ok((st.datagrams >= *count).then_some(()))
                })?;
                let st = self.net.listener(listener)?;
                let detail = format!("{listener} has {} of {count} datagrams", st.datagrams);
                Ok((got.is_some(), detail))
            }
        }
    }

    /// A conntrack reading: counters and matching entries, the listing kept as an artifact.
    fn conntrack(&mut self, host: &str, name: &str, filter: &[String]) -> StepOutcome {
        let reading = self.net.conntrack(host, filter)?;
        let path = self
            .net
            .artifact_dir()
            .join(format!("{host}-conntrack-{name}.txt"));
        let mut text = String::from("# counters (/proc/net/stat/nf_conntrack, summed over CPUs)\n");
        for (k, v) in &reading.counters {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text.push_str(&format!(
            "\n# conntrack -L {}\n{}",
            filter.join(" "),
            reading.listing
        ));
        if std::fs::write(&path, text).is_ok() {
            self.artifacts.push((format!("conntrack {name}"), path));
        }
        let n = reading.counters.len();
        let detail = match &reading.entries {
            Ok(e) => format!("{n} counters, {e} matching entries"),
            Err(e) => format!("{n} counters; entries unknown: {e}"),
        };
        self.readings.insert(name.to_string(), reading.counters);
        self.entries.insert(name.to_string(), reading.entries);
        Ok((true, detail))
    }
}
