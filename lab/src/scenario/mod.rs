//! Scenarios: declarative bug reproductions. A scenario file names a topology, the processes
//! and steps that run in it, the capture points, and what must come out (outcomes, counts,
//! conntrack counter deltas, trace snapshots), optionally limited to a range of kernels.
//!
//! ```text
//! let s = Scenario::load(Path::new("scenarios/udp-conntrack-race.toml"))?;
//! let result = run(&s, &RunOptions::default(), &Silent);
//! print!("{}", report::render(&result, ReportOptions { ladder: true, trace: false }));
//! ```
//!
//! Pipeline: [`parse`] (TOML → [`model`], validated, no syscalls) → [`run`](run::run) (a fresh lab,
//! captures armed, steps, settle, trace, expectations, lab removed) → [`report`]. The format
//! reference is docs/scenario-format.md; `lab run FILE|DIR…` and the `scenarios` test target
//! run the files in `scenarios/`.

pub mod model;
pub mod parse;
pub mod report;
pub mod result;
pub mod run;
pub mod snapfile;

pub use model::{Scenario, ScenarioError};
pub use report::{ReportOptions, render};
pub use result::{ScenarioResult, StepStatus, Verdict};
pub use run::{Progress, RunOptions, Silent, run, run_on};
pub use snapfile::SnapshotMode;

use std::path::PathBuf;

/// The scenario files named by `paths`: files as given, directories searched (not
/// recursively) for `*.toml`, sorted by name. A path that does not exist is an error.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(format!(
                    "{}: no scenario files (*.toml) in this directory",
                    p.display()
                ));
            }
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else if p.exists() {
            return Err(format!(
                "{}: not a regular file or a directory",
                p.display()
            ));
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    Ok(out)
}

/// Loads every file; the first bad one is the error.
pub fn load_all(files: &[PathBuf]) -> Result<Vec<Scenario>, ScenarioError> {
    let scenarios: Vec<Scenario> = files
        .iter()
        .map(|f| Scenario::load(f))
        .collect::<Result<_, _>>()?;
    let mut seen = std::collections::HashMap::new();
    for s in &scenarios {
        if let Some(other) = seen.insert(s.name.clone(), s.path.clone()) {
            return Err(ScenarioError {
                file: s.path.display().to_string(),
                line: None,
                context: "name".into(),
                message: format!("`{}` is also the name of {}", s.name, other.display()),
            });
        }
    }
    Ok(scenarios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_sorts_and_rejects_missing() {
        let d = std::env::temp_dir().join(format!("lab-discover-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        for f in ["b.toml", "a.toml", "a.snap", "notes.md"] {
            std::fs::write(d.join(f), "").unwrap();
        }
        let found = discover(std::slice::from_ref(&d)).unwrap();
        assert_eq!(found, vec![d.join("a.toml"), d.join("b.toml")]);
        assert!(
            discover(&[d.join("nope.toml")])
                .unwrap_err()
                .contains("no such file")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
