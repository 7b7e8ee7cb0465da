//! Running a scenario: a fresh network from a [`Backend`], captures armed before the first
//! step, the steps in order, a quiet period, the trace and ladder, the expectations, the
//! artifacts, and the network removed (also when a step fails or the run is interrupted).
//!
//! The runner owns the semantics: what each step means ([`step`]), how waits poll and time out,
//! what the expectations check ([`expect`]), the trace and the report. It touches the network
//! only through [`Network`], and its clock only through [`Network::now`] and
//! [`Network::sleep`], so a backend with virtual time runs the same scenario unchanged.

mod expect;
mod step;

use super::model::Scenario;
use super::result::{ExpectResult, ScenarioResult, StepResult, StepStatus, Verdict};
use super::snapfile::SnapshotMode;
use crate::backend::native::Native;
use crate::backend::{Backend, Counters, Network, TelnetResult};
use crate::cancel::cancelled;
use crate::capture::{CapturePoint, write_pcap_file};
use crate::kernel::KernelVersion;
use crate::ladder::Ladder;
use crate::trace::{NameMap, Trace, TraceOptions};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::backend::native::find_lb;

/// How to run scenarios.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What a snapshot mismatch writes.
    pub snapshots: SnapshotMode,
    /// The `lb` binary for the native backend; found next to the running executable when
    /// `None` (or `LB_BIN`).
    pub lb_bin: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            snapshots: SnapshotMode::from_env(),
            lb_bin: None,
        }
    }
}

/// Receives progress lines while a scenario runs (several scenarios may call it at once).
pub trait Progress: Sync {
    /// One line about `scenario`.
    fn line(&self, scenario: &str, text: &str);
}

/// Progress that goes nowhere.
pub struct Silent;

impl Progress for Silent {
    fn line(&self, _: &str, _: &str) {}
}

/// Everything a running scenario holds besides the network's own state.
struct Runtime<'a> {
    s: &'a Scenario,
    opts: &'a RunOptions,
    progress: &'a dyn Progress,
    net: Box<dyn Network>,
    kernel: KernelVersion,
    telnets: HashMap<String, TelnetResult>,
    /// The counters of each reading (conntrack and nfqueue), by name.
    readings: HashMap<String, Counters>,
    /// The matching entries of each conntrack reading, by name.
    entries: HashMap<String, Result<u64, String>>,
    artifacts: Vec<(String, PathBuf)>,
}

/// Runs one scenario on the native backend (namespaces on the running kernel).
pub fn run(s: &Scenario, opts: &RunOptions, progress: &dyn Progress) -> ScenarioResult {
    let native = Native {
        lb_bin: opts.lb_bin.clone(),
        ..Native::default()
    };
    run_on(&native, s, opts, progress)
}

/// Runs one scenario in a fresh network of `backend` and returns what happened. Never panics
/// on a scenario's behaviour; everything that goes wrong is in the result.
pub fn run_on(
    backend: &dyn Backend,
    s: &Scenario,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> ScenarioResult {
    let t0 = Instant::now();
    let kernel = backend.kernel();
    let mut result = ScenarioResult {
        name: s.name.clone(),
        file: s.path.clone(),
        summary: s.summary.clone(),
        kernel: kernel.release.clone(),
        lab: String::new(),
        error: None,
        steps: vec![],
        expects: vec![],
        trace: None,
        ladder: None,
        artifacts: vec![],
        artifact_dir: None,
        ms: 0,
        interrupted: false,
    };
    let net = match backend.build(&s.plan, &s.name) {
        Ok(n) => n,
        Err(e) => {
            result.error = Some(e);
            result.ms = t0.elapsed().as_millis() as u64;
            return result;
        }
    };
    result.lab = net.name().to_string();
    result.artifact_dir = Some(net.artifact_dir().to_path_buf());
    progress.line(
        &s.name,
        &format!(
            "lab {} up ({} hosts) in {} ms, kernel {}",
            net.name(),
            s.plan.hosts.len(),
            t0.elapsed().as_millis(),
            kernel
        ),
    );
    let mut rt = Runtime {
        s,
        opts,
        progress,
        net,
        kernel,
        telnets: HashMap::new(),
        readings: HashMap::new(),
        entries: HashMap::new(),
        artifacts: vec![],
    };
    rt.run_all(&mut result);
    let artifact_dir = rt.net.artifact_dir().to_path_buf();
    let Runtime { net, artifacts, .. } = rt;
    result.artifacts = artifacts;
    result.interrupted |= cancelled();
    result.ms = t0.elapsed().as_millis() as u64;
    // The result file is written before removal so it is there even if removal fails.
    let result_path = artifact_dir.join("result.json");
    if std::fs::write(&result_path, result.comparable_json()).is_ok() {
        result.artifacts.push(("result".into(), result_path));
    }
    if let Err(e) = net.down() {
        result.error.get_or_insert(format!("removing the lab: {e}"));
    }
    result
}

impl Runtime<'_> {
    fn run_all(&mut self, result: &mut ScenarioResult) {
        let name = self.s.name.clone();
        // Captures: armed (socket bound, reader running) before the first step.
        if let Err(e) = self.net.arm_captures(&self.s.captures) {
            result.error = Some(e);
            return;
        }
        if !self.s.captures.is_empty() {
            let points: Vec<String> = self
                .s
                .captures
                .iter()
                .map(|c| format!("{} ({})", c.host, c.interface.as_deref().unwrap_or("any")))
                .collect();
            self.progress.line(
                &name,
                &format!("capturing on {} (armed)", points.join(", ")),
            );
        }

        let scenario = self.s;
        let total = scenario.steps.len();
        let mut failed = false;
        for step in &scenario.steps {
            let what = step.kind.to_string();
            if failed || cancelled() {
                result.steps.push(StepResult {
                    index: step.index,
                    what,
                    status: StepStatus::Skipped,
                    detail: if failed {
                        "an earlier step failed".into()
                    } else {
                        "interrupted".into()
                    },
                    ms: 0,
                });
                continue;
            }
            let t = self.net.now();
            let (status, detail) = match self.step(&step.kind) {
                Ok((true, d)) => (StepStatus::Ok, d),
                Ok((false, d)) => (StepStatus::TimedOut, d),
                Err(d) => {
                    failed = true;
                    (StepStatus::Failed, d)
                }
            };
            let ms = self.net.now().saturating_sub(t).as_millis() as u64;
            let word = match status {
                StepStatus::Ok => "ok",
                StepStatus::TimedOut => "timed out",
                StepStatus::Failed => "FAILED",
                StepStatus::Skipped => "skipped",
            };
            self.progress.line(
                &name,
                &format!("{}/{total} {what}: {word}: {detail} ({ms} ms)", step.index),
            );
            result.steps.push(StepResult {
                index: step.index,
                what,
                status,
                detail,
                ms,
            });
        }

        let points = self.settle_and_collect(result);
        self.trace(&points, result);

        // Expectations read the listeners' final counts: stop nothing before this.
        let evaluate = !failed && result.error.is_none() && !cancelled();
        for e in &scenario.expects {
            let mut r = ExpectResult {
                index: e.index,
                line: e.line,
                what: e.kind.to_string(),
                verdict: Verdict::NotEvaluated,
                detail: String::new(),
                diff: None,
            };
            if !evaluate {
                r.detail = if cancelled() {
                    "interrupted".into()
                } else {
                    "not evaluated: the scenario did not run to the end".into()
                };
            } else if let Some(range) = e.kernel.as_ref().filter(|r| !r.contains(&self.kernel)) {
                r.verdict = Verdict::NotApplicable;
                r.detail = format!(
                    "kernel {} is outside {range}: {}",
                    self.kernel.short(),
                    e.elsewhere.as_deref().unwrap_or_default()
                );
            } else {
                let (v, d, diff) = self.expect(&e.kind, result);
                r.verdict = v;
                r.detail = d;
                r.diff = diff;
            }
            result.expects.push(r);
        }
    }

    /// Lets in-flight packets land: stops once every capture point has been quiet for
    /// `settle` (bounded by `settle_max`), then collects the points and writes their pcaps.
    fn settle_and_collect(&mut self, result: &mut ScenarioResult) -> Vec<CapturePoint> {
        let settings = &self.s.trace;
        let t = self.net.now();
        loop {
            let quiet = self.net.captures_quiet();
            if quiet >= settings.settle
                || self.net.now().saturating_sub(t) >= settings.settle_max
                || cancelled()
            {
                break;
            }
            self.net
                .sleep((settings.settle - quiet).min(Duration::from_millis(20)));
        }
        let points = match self.net.collect_captures() {
            Ok(p) => p,
            Err(e) => {
                result.error.get_or_insert(e);
                return vec![];
            }
        };
        for p in &points {
            let file = format!(
                "{}-{}.pcap",
                p.host,
                p.interface.as_deref().unwrap_or("any")
            );
            let path = self.net.artifact_dir().join(file);
            if write_pcap_file(p, &path).is_ok() {
                self.artifacts.push((format!("pcap {}", p.label()), path));
            }
            if p.stats.kernel_drops > 0 {
                result.error.get_or_insert(format!(
                    "capture on {} lost {} frames (socket buffer full): the trace is incomplete",
                    p.label(),
                    p.stats.kernel_drops
                ));
            }
        }
        points
    }

    /// The normalized trace and the ladder of what the capture points saw.
    fn trace(&mut self, points: &[CapturePoint], result: &mut ScenarioResult) {
        if points.is_empty() {
            return;
        }
        // IGMP is hidden by the trace's default options (and bridges send none of their own).
        let names = NameMap::of_plan(&self.s.plan);
        let options = TraceOptions {
            arp: self.s.trace.arp,
            direction: self.s.trace.direction,
            tcp_options: self.s.trace.tcp_options,
            ordering: self.s.trace.ordering,
            ..TraceOptions::default()
        };
        let trace = Trace::build(points, &names, &options).to_string();
        let ladder = Ladder::build(points, &names, &options).to_string();
        for (what, text) in [("trace", &trace), ("ladder", &ladder)] {
            let path = self.net.artifact_dir().join(format!("{what}.txt"));
            if std::fs::write(&path, text).is_ok() {
                self.artifacts.push((what.to_string(), path));
            }
        }
        result.trace = Some(trace);
        result.ladder = Some(ladder);
    }

    /// Calls `check` every 5 ms of the network's time until it gives a value; `Ok(None)` once
    /// `timeout` has passed or the run is cancelled. An error from `check` ends the wait at once.
    fn poll_until<T>(
        &mut self,
        timeout: Duration,
        mut check: impl FnMut(&mut dyn Network) -> Result<Option<T>, String>,
    ) -> Result<Option<T>, String> {
        let end = self.net.now() + timeout;
        loop {
            if let Some(v) = check(self.net.as_mut())? {
                return Ok(Some(v));
            }
            if self.net.now() >= end || cancelled() {
                return Ok(None);
            }
            self.net.sleep(Duration::from_millis(5));
        }
    }
}

/// The last lines of a log, on one line, for error messages.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "(empty)".into();
    }
    lines[lines.len().saturating_sub(3)..].join(" | ")
}
