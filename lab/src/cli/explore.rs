//! `lab run --sim --explore N`: each scenario under N seeds. A seed decides how the simulator
//! orders events that fall on the same instant (and the ISNs and ephemeral ports, which the
//! normalized trace hides), so the seeds sample the orderings the model allows; this is a
//! bounded sample, not an enumeration of every ordering. The report groups the runs by their
//! comparable result (steps, verdicts, trace, ladder) and gives, for each distinct outcome, how
//! many seeds gave it, the first seed (`--seed S` replays it) and how it differs from the first.

use lab::backend::sim::Sim;
use lab::scenario::{self, RunOptions, Scenario, Silent, SnapshotMode};
use std::process::ExitCode;

/// One distinct outcome: its comparable result, the seeds that gave it, whether it passed.
struct Outcome {
    json: String,
    seeds: Vec<u64>,
    passed: bool,
    summary: String,
}

/// Runs every scenario under seeds 1..=`seeds` of `sim`'s kernel; exit 0 when every run of
/// every scenario passed.
pub fn explore(scenarios: &[Scenario], sim: &Sim, seeds: u64) -> ExitCode {
    let opts = RunOptions {
        snapshots: SnapshotMode::Compare,
        lb_bin: None,
    };
    let mut all_passed = true;
    for s in scenarios {
        let mut outcomes: Vec<Outcome> = Vec::new();
        for seed in 1..=seeds {
            let backend = Sim {
                kernel: sim.kernel.clone(),
                seed,
            };
            let r = scenario::run_on(&backend, s, &opts, &Silent);
            let json = r.comparable_json();
            let passed = r.passed();
            let keep = match outcomes.iter_mut().find(|o| o.json == json) {
                Some(o) => {
                    o.seeds.push(seed);
                    false
                }
                None => {
                    let failed = r
                        .expects
                        .iter()
                        .filter(|e| e.verdict == scenario::Verdict::Fail)
                        .count();
                    let step = r
                        .steps
                        .iter()
                        .find(|st| st.status == scenario::StepStatus::Failed);
                    let summary = match (passed, &r.error, step) {
                        (true, _, _) => "PASS".into(),
                        (false, Some(e), _) => format!("FAIL: {e}"),
                        (false, None, Some(st)) => {
                            format!("FAIL: step {} ({}): {}", st.index, st.what, st.detail)
                        }
                        (false, None, None) => format!("FAIL: {failed} expectation(s) failed"),
                    };
                    outcomes.push(Outcome {
                        json,
                        seeds: vec![seed],
                        passed,
                        summary,
                    });
                    true
                }
            };
            // The first run of each outcome keeps its artifacts; the others are removed.
            if !keep && let Some(dir) = &r.artifact_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        all_passed &= outcomes.iter().all(|o| o.passed);
        println!(
            "explore {}: {seeds} seed(s) on kernel {}, {} distinct outcome(s)",
            s.name,
            sim.kernel,
            outcomes.len()
        );
        let first = outcomes.first().map(|o| o.json.clone()).unwrap_or_default();
        for (i, o) in outcomes.iter().enumerate() {
            println!(
                "  outcome {}: {} seed(s), replay with --seed {}: {}",
                i + 1,
                o.seeds.len(),
                o.seeds[0],
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
