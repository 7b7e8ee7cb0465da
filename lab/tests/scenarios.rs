//! One test per scenario file in `scenarios/`, found when the test binary starts (a new file is
//! a new test, no code to touch). Each runs exactly as `lab run FILE` does, in a fresh lab of
//! its own, several at a time; a failing test prints the scenario's whole report (steps,
//! expectations, snapshot diff, artifacts).
//!
//! Privileged: without root each test is reported as ignored with the reason, unless
//! `LAB_REQUIRE_PRIVILEGED=1`, where it fails. Snapshots follow insta's rules (`CI=true`
//! writes nothing; see docs/scenario-format.md). Filter as usual:
//! `cargo test -p lab --test scenarios -- mysterious`.
//!
//! Each file is also run with `--backend mininet` (`mininet::NAME`): Mininet builds the lab,
//! and the same snapshot must match. Privileged, and skipped with the reason where Mininet is
//! not installed (failing instead under LAB_REQUIRE_PRIVILEGED=1: CI installs it).
//!
//! Each file is also run in the simulator (`sim::NAME`, `lab run --sim`, this kernel's
//! behaviour), with no root and the same snapshot. Those never skip: a scenario the simulator
//! refuses ("… cannot be simulated yet") fails, with the simulator's own reason.

// An ordinary user's run enters a user namespace of its own before main, so the privileged
// tests run rootless instead of skipping.
lab::rootless_test_binary!();

use lab::Builder;
use lab::backend::native::Native;
use lab::scenario::{self, ReportOptions, RunOptions, Scenario, Silent, discover, render};
use lab::state::SwitchKind;
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::path::{Path, PathBuf};

fn scenario_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    dir.canonicalize().unwrap_or(dir)
}

fn skip(reason: &str) -> Result<Completion, Failed> {
    if std::env::var("LAB_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        return Err(format!("{reason}, and LAB_REQUIRE_PRIVILEGED=1 forbids skipping").into());
    }
    Ok(Completion::ignored_with(format!(
        "{reason}; set LAB_REQUIRE_PRIVILEGED=1 to fail instead"
    )))
}

fn run_one(file: &Path, builder: Builder) -> Result<Completion, Failed> {
    let s = Scenario::load(file).map_err(|e| Failed::from(e.to_string()))?;
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
    }
    if builder != Builder::Native
        && let Err(e) = lab::mininet::installed(SwitchKind::Lxbr)
    {
        return skip(&e);
    }
    let backend = Native {
        builder,
        ..Native::default()
    };
    let r = scenario::run_on(&backend, &s, &RunOptions::default(), &Silent);
    if let (Some(why), Builder::Mininet(_)) = (&s.not_mininet, builder) {
        // Marked: ignored while the Mininet backend still refuses it, by name.
        let report = render(&r, ReportOptions::default());
        return if !r.passed() && report.contains("cannot create the lab") {
            Ok(Completion::ignored_with(format!("not with Mininet: {why}")))
        } else {
            Err(format!(
                "{} is marked `not-mininet` but the Mininet backend no longer refuses it: remove the mark\n{report}",
                s.name
            )
            .into())
        };
    }
    if r.passed() {
        Ok(Completion::Completed)
    } else {
        Err(render(
            &r,
            ReportOptions {
                ladder: true,
                trace: true,
            },
        )
        .into())
    }
}

/// `lab run --sim FILE`: passes, or fails with the report (a piece the simulator does not
/// model yet is a failure, with its reason in the report). A scenario marked `not-simulated`
/// is ignored with its reason, as long as the simulator still refuses it: once it can run it,
/// the mark must go.
fn run_simulated(file: &Path) -> Result<Completion, Failed> {
    let s = Scenario::load(file).map_err(|e| Failed::from(e.to_string()))?;
    let sim = lab::backend::sim::Sim::new(None, 1).map_err(Failed::from)?;
    let r = scenario::run_on(&sim, &s, &RunOptions::default(), &Silent);
    if let Some(why) = &s.not_simulated {
        let report = render(&r, ReportOptions::default());
        // The simulator's refusals: "… cannot be simulated yet", "…: not simulated".
        let refused =
            report.contains("cannot be simulated yet") || report.contains("not simulated");
        return if !r.passed() && refused {
            Ok(Completion::ignored_with(format!("not simulated: {why}")))
        } else {
            Err(format!(
                "{} is marked `not-simulated` but the simulator no longer refuses it: remove the mark\n{report}",
                s.name
            )
            .into())
        };
    }
    if r.passed() {
        Ok(Completion::Completed)
    } else {
        Err(render(
            &r,
            ReportOptions {
                ladder: true,
                trace: true,
            },
        )
        .into())
    }
}

fn main() {
    let mut args = Arguments::from_args();
    let dir = scenario_dir();
    let files = match discover(std::slice::from_ref(&dir)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("scenarios: {e}");
            std::process::exit(101);
        }
    };
    // Scenarios mostly wait on the network: run several at once unless told otherwise.
    if args.test_threads.is_none() {
        args.test_threads = Some(files.len().clamp(1, 4));
    }
    let trials = files
        .into_iter()
        .flat_map(|f| {
            let name = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (g, m) = (f.clone(), f.clone());
            [
                Trial::ignorable_test(name.clone(), move || run_one(&f, Builder::Native))
                    .with_kind("scenario"),
                Trial::ignorable_test(format!("mininet::{name}"), move || {
                    run_one(&m, Builder::Mininet(SwitchKind::Lxbr))
                })
                .with_kind("mininet"),
                Trial::ignorable_test(format!("sim::{name}"), move || run_simulated(&g))
                    .with_kind("simulated"),
            ]
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
