//! `lab run FILE|DIR…`: runs scenario files, each in a fresh lab of its own, several at once;
//! prints each step as it finishes, then per scenario the ladder, the expectations (with a
//! diff for a snapshot that differs) and where the artifacts are.

use anyhow::{Context, Result};
use clap::Args;
use lab::scenario::Progress as _;
use lab::scenario::{
    self, ReportOptions, RunOptions, Scenario, ScenarioResult, SnapshotMode, discover, load_all,
    render,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

/// `lab run [--jobs N] [--accept] [--trace] FILE|DIR…`
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Scenario files, or directories of them (`*.toml`, not recursive).
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
    /// Scenarios run at the same time, each in its own lab (default: all, at most 4).
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: Option<u32>,
    /// Write missing or different snapshots (like INSTA_UPDATE=always) instead of failing.
    #[arg(long)]
    accept: bool,
    /// Also print each scenario's normalized trace.
    #[arg(long)]
    trace: bool,
    /// Leave out the ladder diagrams.
    #[arg(long)]
    no_ladder: bool,
    /// Write the comparable results (no times, lab names or paths) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
    /// The `lb` binary (default: LB_BIN, else next to this `lab` executable).
    #[arg(long, value_name = "PATH")]
    lb: Option<PathBuf>,
    /// Run in the simulator: no root, no namespaces, virtual time, deterministic by seed.
    #[arg(long, conflicts_with_all = ["backend", "switch"])]
    pub sim: bool,
    #[command(flatten)]
    build: super::BuildArgs,
    /// The kernel whose behaviour the simulator shows (`3.6`, `4.18`, `6.12`; default: the
    /// running kernel's). Needs --sim.
    #[arg(long, value_name = "VERSION", requires = "sim")]
    kernel: Option<String>,
    /// The simulator's seed (default 1). Needs --sim.
    #[arg(long, value_name = "N", requires = "sim")]
    seed: Option<u64>,
    /// Run each scenario under every ordering of simultaneous events the simulator allows, at
    /// most N runs, and report the distinct outcomes with an ordering that replays each.
    /// Needs --sim.
    #[arg(long, value_name = "N", requires = "sim", conflicts_with = "ordering", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    explore: Option<u64>,
    /// Replay one ordering that --explore printed (`0`, `3:1,7:2`). Needs --sim.
    #[arg(long, value_name = "ID", requires = "sim")]
    ordering: Option<String>,
}

extern "C" fn on_signal(_: libc::c_int) {
    lab::cancel::cancel();
}

/// SIGINT/SIGTERM ask every running scenario to stop (its lab is then removed); a second one
/// ends the process at once (`lab clean` removes what is left).
fn install_signal_handlers() -> Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.context("installing the Ctrl-C handler")?;
    }
    Ok(())
}

struct Printer(Mutex<()>);

impl scenario::Progress for Printer {
    fn line(&self, scenario: &str, text: &str) {
        let _g = self.0.lock();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "[{scenario}] {text}");
        let _ = out.flush();
    }
}

/// Runs `lab run`. Exit codes: 0 all passed, 1 a scenario failed, 2 bad input, 130 interrupted.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let files = match discover(&args.paths) {
        Ok(f) => f,
        Err(e) => return Ok(bad_input(&e)),
    };
    let scenarios = match load_all(&files) {
        Ok(s) => s,
        Err(e) => return Ok(bad_input(&e.to_string())),
    };
    let sim = if args.sim {
        let ordering = match args
            .ordering
            .as_deref()
            .map(lab::backend::sim::parse_ordering)
        {
            Some(Err(e)) => return Ok(bad_input(&e)),
            Some(Ok(o)) => Some(o),
            None => None,
        };
        match lab::backend::sim::Sim::new(args.kernel.as_deref(), args.seed.unwrap_or(1)) {
            Ok(s) => Some(lab::backend::sim::Sim { ordering, ..s }),
            Err(e) => return Ok(bad_input(&e)),
        }
    } else {
        None
    };
    // The simulator and Mininet skip what they cannot run, by the scenario's own word, and
    // say so.
    let mininet = sim.is_none() && matches!(args.build.builder(), Ok(lab::Builder::Mininet(_)));
    let why_not = |s: &Scenario| match (&sim, mininet) {
        (Some(_), _) => s
            .not_simulated
            .as_ref()
            .map(|w| format!("not simulated: {w}")),
        (None, true) => s
            .not_mininet
            .as_ref()
            .map(|w| format!("not with Mininet: {w}")),
        (None, false) => None,
    };
    let (scenarios, unsimulated): (Vec<Scenario>, Vec<Scenario>) =
        scenarios.into_iter().partition(|s| why_not(s).is_none());
    for s in &unsimulated {
        println!("SKIP {}: {}", s.name, why_not(s).unwrap_or_default());
    }
    if sim.is_none() && !lab::lab::is_root() {
        return Ok(bad_input(
            "this needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run it with sudo",
        ));
    }
    if let (Some(sim), Some(n)) = (&sim, args.explore) {
        return Ok(super::explore::explore(&scenarios, sim, n));
    }
    if let Some(p) = &args.results {
        // Fail now rather than after the runs.
        std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?;
    }
    install_signal_handlers()?;
    let jobs = args
        .jobs
        .map(|j| j as usize)
        .unwrap_or_else(|| scenarios.len().min(4))
        .max(1);
    let builder = match args.build.builder() {
        Ok(b) => b,
        Err(e) => return Ok(bad_input(&e)),
    };
    let native = lab::backend::native::Native {
        lb_bin: args.lb.clone(),
        builder,
    };
    let backend: &dyn lab::backend::Backend = match &sim {
        Some(s) => s,
        None => &native,
    };
    let kernel = backend.kernel();
    println!(
        "running {} scenario(s), {} at a time, on kernel {kernel}{}",
        scenarios.len(),
        jobs.min(scenarios.len()),
        match &sim {
            Some(s) => match &args.ordering {
                Some(o) => format!(", seed {}, ordering {o}", s.seed),
                None => format!(", seed {}", s.seed),
            },
            None => String::new(),
        }
    );
    let opts = RunOptions {
        snapshots: if args.accept {
            SnapshotMode::Accept
        } else {
            SnapshotMode::from_env()
        },
        lb_bin: args.lb.clone(),
    };
    let printer = Printer(Mutex::new(()));
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<ScenarioResult>>> = Mutex::new(vec![None; scenarios.len()]);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(scenarios.len()) {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(s) = scenarios.get(i) else { break };
                    if lab::cancel::cancelled() {
                        break;
                    }
                    let r = scenario::run_on(backend, s, &opts, &printer);
                    printer.line(
                        &s.name,
                        if r.passed() {
                            "done: PASS"
                        } else {
                            "done: FAIL"
                        },
                    );
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let report = ReportOptions {
        ladder: !args.no_ladder,
        trace: args.trace,
    };
    let mut passed = 0;
    let mut ran = Vec::new();
    for r in results.iter().flatten() {
        println!();
        print!("{}", render(r, report));
        passed += usize::from(r.passed());
        ran.push(r);
    }
    if let Some(p) = &args.results {
        let json = serde_json::to_string_pretty(&ran)?;
        std::fs::write(p, json + "\n").with_context(|| format!("cannot write {}", p.display()))?;
    }
    let interrupted = lab::cancel::cancelled();
    let not_run = scenarios.len() - ran.len();
    println!();
    println!(
        "{} scenario(s): {passed} passed, {} failed{}{}{}",
        scenarios.len() + unsimulated.len(),
        ran.len() - passed,
        if not_run > 0 {
            format!(", {not_run} not run")
        } else {
            String::new()
        },
        if unsimulated.is_empty() {
            String::new()
        } else {
            format!(", {} not simulated", unsimulated.len())
        },
        if interrupted { " (interrupted)" } else { "" }
    );
    Ok(if interrupted {
        ExitCode::from(130)
    } else if passed == scenarios.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn bad_input(msg: &str) -> ExitCode {
    eprintln!("lab: {msg}");
    ExitCode::from(2)
}
