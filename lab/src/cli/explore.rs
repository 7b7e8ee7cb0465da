//! `lab run --sim --explore N`: each scenario under every ordering of simultaneous events the
//! simulator allows, up to N runs. An ordering is a choice at each *choice point*: an instant
//! at which several distinct events of one host or one bridge are due (events of different
//! hosts at one instant commute, so only those of one are tried both ways; a packet parked
//! between two hooks may be overtaken by any event, as by another CPU). The search is
//! stateless, as loom and CHESS do it for threads: run, note the choice points met, and queue
//! the orderings that take one more alternative after the run's last one. It goes breadth
//! first by the number of alternatives taken (CHESS's preemption bounding): every ordering
//! with one deviation from the seed's order runs before any with two, so a bound still covers
//! the likely races. It stops when every ordering has run or at the bound. The report groups
//! the runs by
//! their comparable result (steps, verdicts, trace, ladder) and gives, for each distinct
//! outcome, how many orderings gave it, one that replays it (`--seed S --ordering ID`) and how
//! it differs from the first.

use lab::backend::sim::{Sim, ordering_id};
use lab::scenario::{self, RunOptions, Scenario, Silent, SnapshotMode};
use std::process::ExitCode;

/// One distinct outcome: its comparable result, the orderings that gave it, whether it passed.
struct Outcome {
    json: String,
    orderings: Vec<String>,
    passed: bool,
    summary: String,
}

/// Explores every scenario under `sim`'s kernel and seed, at most `bound` runs each; exit 0
/// when every run of every scenario passed.
pub fn explore(scenarios: &[Scenario], sim: &Sim, bound: u64) -> ExitCode {
    let opts = RunOptions {
        snapshots: SnapshotMode::Compare,
        lb_bin: None,
    };
    let mut all_passed = true;
    for s in scenarios {
        let mut outcomes: Vec<Outcome> = Vec::new();
        // Orderings to run: the choices to take, by the number of alternatives taken.
        let mut todo: std::collections::VecDeque<Vec<u32>> = [Vec::new()].into();
        let mut runs = 0u64;
        let mut points = 0usize;
        let complete = loop {
            let Some(prefix) = todo.pop_front() else {
                break true;
            };
            if runs >= bound || lab::cancel::cancelled() {
                break false;
            }
            let backend = Sim {
                ordering: Some(prefix.clone()),
                explored: Default::default(),
                ..sim.clone()
            };
            let r = scenario::run_on(&backend, s, &opts, &Silent);
            runs += 1;
            let choices = backend
                .explored
                .lock()
                .map(|c| c.clone())
                .unwrap_or_default();
            points = points.max(choices.len());
            let id = ordering_id(&choices);
            let json = r.comparable_json();
            let keep = match outcomes.iter_mut().find(|o| o.json == json) {
                Some(o) => {
                    o.orderings.push(id);
                    false
                }
                None => {
                    outcomes.push(Outcome {
                        json,
                        orderings: vec![id],
                        passed: r.passed(),
                        summary: summary(&r),
                    });
                    true
                }
            };
            // The first run of each outcome keeps its artifacts; the others are removed.
            if !keep && let Some(dir) = &r.artifact_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            // Its children: one more alternative taken at a point after the prefix's last.
            for (j, c) in choices.iter().enumerate().skip(prefix.len()) {
                for alt in c.chosen + 1..c.alternatives {
                    let mut child: Vec<u32> = choices[..j].iter().map(|c| c.chosen).collect();
                    child.push(alt);
                    todo.push_back(child);
                }
            }
        };
        all_passed &= outcomes.iter().all(|o| o.passed);
        let extent = match complete {
            true => "every ordering the model allows".to_string(),
            false => format!("the bound (--explore {bound}); more orderings exist"),
        };
        println!(
            "explore {}: kernel {}, seed {}: {runs} ordering(s), {extent}; up to {points} choice point(s) per run; {} distinct outcome(s)",
            s.name,
            sim.kernel,
            sim.seed,
            outcomes.len()
        );
        let first = outcomes.first().map(|o| o.json.clone()).unwrap_or_default();
        for (i, o) in outcomes.iter().enumerate() {
            println!(
                "  outcome {}: {} ordering(s), replay with --seed {} --ordering {}: {}",
                i + 1,
                o.orderings.len(),
                sim.seed,
                o.orderings[0],
                o.summary
            );
            if i > 0 {
                let diff = similar::TextDiff::from_lines(&first, &o.json)
                    .unified_diff()
                    .context_radius(1)
                    .header("outcome 1", &format!("outcome {}", i + 1))
                    .to_string();
                for line in diff.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `PASS`, or the first reason the run failed.
fn summary(r: &scenario::ScenarioResult) -> String {
    let failed = r
        .expects
        .iter()
        .filter(|e| e.verdict == scenario::Verdict::Fail)
        .count();
    let step = r
        .steps
        .iter()
        .find(|st| st.status == scenario::StepStatus::Failed);
    match (r.passed(), &r.error, step) {
        (true, _, _) => "PASS".into(),
        (false, Some(e), _) => format!("FAIL: {e}"),
        (false, None, Some(st)) => format!("FAIL: step {} ({}): {}", st.index, st.what, st.detail),
        (false, None, None) => format!("FAIL: {failed} expectation(s) failed"),
    }
}
