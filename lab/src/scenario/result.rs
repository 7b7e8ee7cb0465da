//! The result of running a scenario: what each step did, each expectation's verdict, the
//! trace, the artifacts, and the kernel it ran on.

use serde::Serialize;
use std::path::PathBuf;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Done.
    Ok,
    /// Done, but a wait ran out of time (the run goes on; expectations will tell).
    TimedOut,
    /// Failed: the remaining steps are skipped and expectations not evaluated.
    Failed,
    /// Not run because an earlier step failed or the run was interrupted.
    Skipped,
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// 1-based position.
    pub index: usize,
    /// What it was, e.g. `telnet h3 → 10.0.0.50:8080`.
    pub what: String,
    /// How it ended.
    pub status: StepStatus,
    /// What happened, the same on every run (no times, no ephemeral ports).
    pub detail: String,
    /// How long it took (not part of the comparable result).
    #[serde(skip)]
    pub ms: u64,
}

/// An expectation's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// As expected.
    Pass,
    /// Not as expected.
    Fail,
    /// This kernel is outside the expectation's range.
    NotApplicable,
    /// Not checked: the steps did not all run.
    NotEvaluated,
    /// A snapshot was missing or different and has been written (accept mode).
    Updated,
}

/// One expectation's result.
#[derive(Debug, Clone, Serialize)]
pub struct ExpectResult {
    /// 1-based position.
    pub index: usize,
    /// Line in the scenario file.
    pub line: Option<usize>,
    /// What is expected, e.g. `telnet \`telnet\`: outcome refused`.
    pub what: String,
    /// The verdict.
    pub verdict: Verdict,
    /// What was found (and, when not applicable, what other kernels do).
    pub detail: String,
    /// A unified diff for snapshots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// The file.
    pub file: PathBuf,
    /// One line saying what it shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The running kernel's release.
    pub kernel: String,
    /// The lab's name (unique per run; not part of the comparable result).
    #[serde(skip)]
    pub lab: String,
    /// A failure before or around the steps (lab creation, captures), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Steps in order.
    pub steps: Vec<StepResult>,
    /// Expectations in order.
    pub expects: Vec<ExpectResult>,
    /// The normalized trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// The ladder diagram.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ladder: Option<String>,
    /// (what, path) of each artifact: pcaps, logs, trace, result.
    #[serde(skip)]
    pub artifacts: Vec<(String, PathBuf)>,
    /// The artifact directory.
    #[serde(skip)]
    pub artifact_dir: Option<PathBuf>,
    /// Total time (not part of the comparable result).
    #[serde(skip)]
    pub ms: u64,
    /// The run was interrupted (Ctrl-C).
    pub interrupted: bool,
}

impl ScenarioResult {
    /// True when nothing failed: every step ran and no expectation failed.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && !self.interrupted
            && self
                .steps
                .iter()
                .all(|s| matches!(s.status, StepStatus::Ok | StepStatus::TimedOut))
            && self.expects.iter().all(|e| {
                matches!(
                    e.verdict,
                    Verdict::Pass | Verdict::NotApplicable | Verdict::Updated
                )
            })
    }

    /// The comparable result as JSON: the same on every run that behaves the same (no times,
    /// lab names or paths).
    pub fn comparable_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
