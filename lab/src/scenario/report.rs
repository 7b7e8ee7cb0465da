//! The human report of a scenario run: steps, ladder, expectations with diffs, artifacts.

use super::result::{ScenarioResult, StepStatus, Verdict};
use std::fmt::Write as _;

/// What the report includes besides steps, expectations and artifacts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportOptions {
    /// The ladder diagram.
    pub ladder: bool,
    /// The normalized trace.
    pub trace: bool,
}

/// Renders one scenario's result.
pub fn render(r: &ScenarioResult, o: ReportOptions) -> String {
    let mut out = String::new();
    let title = match &r.summary {
        Some(s) => format!("{} — {s}", r.name),
        None => r.name.clone(),
    };
    let _ = writeln!(out, "=== {title}");
    let _ = writeln!(out, "file    {}", r.file.display());
    let _ = writeln!(out, "kernel  {}", r.kernel);
    if !r.lab.is_empty() {
        let _ = writeln!(out, "lab     {} (removed)", r.lab);
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "ERROR   {e}");
    }
    if !r.steps.is_empty() {
        let _ = writeln!(out, "\nsteps");
        for s in &r.steps {
            let word = match s.status {
                StepStatus::Ok => "ok",
                StepStatus::TimedOut => "timed out",
                StepStatus::Failed => "FAILED",
                StepStatus::Skipped => "skipped",
            };
            let _ = writeln!(out, "  {:>2}  {}", s.index, s.what);
            let _ = writeln!(out, "      {word}: {} ({} ms)", s.detail, s.ms);
        }
    }
    if o.trace
        && let Some(t) = &r.trace
    {
        let _ = writeln!(out, "\ntrace");
        for l in t.lines() {
            let _ = writeln!(out, "  {l}");
        }
    }
    if o.ladder
        && let Some(l) = &r.ladder
    {
        let _ = writeln!(out, "\nladder");
        for line in l.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    if !r.expects.is_empty() {
        let _ = writeln!(out, "\nexpectations");
        for e in &r.expects {
            let word = match e.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::NotApplicable => "N/A ",
                Verdict::NotEvaluated => "----",
                Verdict::Updated => "NEW ",
            };
            let _ = writeln!(out, "  {word}  {:>2}  {}", e.index, e.what);
            // A pass whose finding is what was expected says nothing new: only show the rest.
            let says_nothing_new = e.verdict == Verdict::Pass && e.what.contains(&e.detail);
            if !e.detail.is_empty() && !says_nothing_new {
                let _ = writeln!(out, "            {}", e.detail);
            }
            if let Some(d) = &e.diff {
                for l in d.lines() {
                    let _ = writeln!(out, "            {l}");
                }
            }
        }
    }
    if let Some(dir) = &r.artifact_dir {
        let _ = writeln!(out, "\nartifacts in {}", dir.display());
        for (what, path) in &r.artifacts {
            let shown = path
                .strip_prefix(dir)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| path.display().to_string());
            let _ = writeln!(out, "  {what:<20} {shown}");
        }
    }
    let counted = r
        .expects
        .iter()
        .filter(|e| e.verdict != Verdict::NotApplicable)
        .count();
    let passed = r
        .expects
        .iter()
        .filter(|e| matches!(e.verdict, Verdict::Pass | Verdict::Updated))
        .count();
    let na = r.expects.len() - counted;
    let _ = writeln!(
        out,
        "\n{} {} ({passed} of {counted} expectations{}; {:.1} s)",
        if r.passed() {
            "PASS"
        } else if r.interrupted {
            "INTERRUPTED"
        } else {
            "FAIL"
        },
        r.name,
        if na > 0 {
            format!(", {na} not applicable to this kernel")
        } else {
            String::new()
        },
        r.ms as f64 / 1e3
    );
    out
}
