//! `lab`: build network namespace labs from topology files, run things in them, remove them.

use anyhow::Result;
use clap::{Parser, Subcommand};
use lab::topology::TopologyError;
use lab::{Lab, LabError};
use std::process::ExitCode;

mod cli;

use cli::rootless::Need;
use cli::{capture, doctor, impair, lifecycle, list, rootless, run};

/// A network namespace test lab: hosts, switches and links from a topology file.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a lab from a topology file or a built-in (default: single,3, the seed's network).
    Up {
        /// Topology file (TOML) or built-in: single,K | linear,K | minimal.
        topology: Option<String>,
        /// Built-in topology, Mininet style (same as the positional argument); with --custom,
        /// a topology of that file: NAME[,ARGS] as `mn --topo` takes it.
        #[arg(long, conflicts_with = "topology")]
        topo: Option<String>,
        /// A Mininet custom topology file (`mn --custom FILE.py`): --topo names one of its
        /// `topos`.
        #[arg(long, value_name = "FILE.py", requires = "topo")]
        custom: Option<std::path::PathBuf>,
        /// Lab name (a-z, 0-9, -); generated when omitted.
        #[arg(long)]
        name: Option<String>,
        /// Check that every host reaches every other host (UDP) after creating the lab.
        #[arg(long)]
        check: bool,
        /// Keep the lab only while this command runs: remove it on Ctrl-C or SIGTERM.
        #[arg(long)]
        hold: bool,
        #[command(flatten)]
        build: cli::BuildArgs,
    },
    /// Remove a lab (its processes, namespaces, links and record).
    Down {
        /// Lab name.
        #[arg(required_unless_present = "all")]
        name: Option<String>,
        /// Remove every lab.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
    /// List labs with their hosts, addresses, owner and age.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside a host: `lab exec h3 -- telnet 10.0.0.50 8080`.
    Exec {
        /// Lab name (optional when only one lab is up).
        #[arg(long = "lab")]
        lab: Option<String>,
        /// Host to run in.
        host: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Show or change a link's impairments: `lab impair h3:eth0 delay=50ms loss=20%`.
    Impair(impair::ImpairArgs),
    /// One impaired direction's engine (started by the lab itself).
    #[command(hide = true)]
    ImpairEngine(impair::EngineArgs),
    /// Check that every host of a lab reaches every other host.
    Check {
        /// Lab name (optional when only one lab is up).
        #[arg(long = "lab")]
        lab: Option<String>,
    },
    /// Remove labs whose owning process is gone (with --all: every lab).
    Clean {
        /// Remove every lab, including persistent ones from `lab up`.
        #[arg(long)]
        all: bool,
        /// Also delete the artifact directories (pcaps, logs, traces under /var/tmp/lab, or
        /// LAB_ARTIFACTS) of labs that no longer exist.
        #[arg(long)]
        artifacts: bool,
    },
    /// Check that this machine can run labs; print the command that fixes each problem.
    Doctor,
    /// Capture a host's packets and print them live with the lab's names (tcpdump-like).
    Capture(capture::CaptureArgs),
    /// Run scenario files (each in a fresh lab): steps, ladders, expectations, artifacts.
    Run(run::RunArgs),
    /// Print a Mininet custom topology as a topology file: what `lab up --custom` runs.
    Convert {
        /// The Mininet custom topology file (`mn --custom FILE.py`).
        #[arg(long, value_name = "FILE.py")]
        custom: std::path::PathBuf,
        /// One of its `topos`: NAME[,ARGS] as `mn --topo` takes it.
        #[arg(long, value_name = "NAME[,ARGS]")]
        topo: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LAB_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let cli = Cli::parse();
    // An ordinary user's lab enters a user namespace now, while this process has one thread.
    let entered = match &cli.command {
        // `lab doctor` reports a failure to enter instead of failing.
        Cmd::Doctor => Ok(rootless::enter(need(&cli.command))
            .err()
            .map(|e| e.to_string())),
        cmd => rootless::enter(need(cmd)).map(|()| None),
    };
    let outcome = entered.and_then(|failure| dispatch(cli, failure));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lab: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// 2 for bad input (a topology, name or host that is wrong), 1 for a failure of the system.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.downcast_ref::<TopologyError>().is_some() {
            return 2;
        }
        if let Some(le) = cause.downcast_ref::<LabError>() {
            return match le {
                LabError::BadName(_)
                | LabError::NameTaken(_)
                | LabError::NoSuchLab(_)
                | LabError::NoSuchNode { .. }
                | LabError::RootSwitch { .. }
                | LabError::Unsupported(_)
                | LabError::BadImpairment(_)
                | LabError::Ambiguous(_)
                | LabError::NotRoot => 2,
                _ => 1,
            };
        }
    }
    1
}

/// The namespaces a command needs when an ordinary user runs it.
fn need(cmd: &Cmd) -> Need {
    match cmd {
        Cmd::Up { hold: false, .. } => Need::Holder,
        // The simulator needs no namespace, and runs where user namespaces are refused.
        Cmd::Run(args) if args.sim => Need::Nothing,
        Cmd::Up { hold: true, .. } | Cmd::Run(_) | Cmd::Doctor => Need::Private,
        Cmd::Exec { lab, .. } | Cmd::Check { lab } => Need::Join(lab.clone()),
        Cmd::Capture(args) => Need::Join(args.lab.clone()),
        Cmd::Impair(args) => Need::Join(args.lab.clone()),
        // Started by a lab, inside its namespaces already.
        Cmd::ImpairEngine(_) => Need::Nothing,
        Cmd::Down {
            name: Some(name),
            all: false,
        } => Need::Down(name.clone()),
        Cmd::Down { .. } | Cmd::List { .. } | Cmd::Clean { .. } | Cmd::Convert { .. } => {
            Need::Nothing
        }
    }
}

fn dispatch(cli: Cli, rootless_failure: Option<String>) -> Result<ExitCode> {
    match cli.command {
        Cmd::Up {
            topology,
            topo,
            name,
            check,
            hold,
            build,
            custom,
        } => {
            let builder = build.builder().map_err(LabError::Unsupported)?;
            let topology = match (custom, topology.or(topo)) {
                (Some(file), Some(spec)) => lab::mininet::custom::load(&file, &spec)?,
                (_, spec) => lab::Topology::load(spec.as_deref().unwrap_or("single,3"))?,
            };
            lifecycle::up(topology, name, check, hold, builder)
        }
        Cmd::Convert { custom, topo } => {
            print!("{}", lab::mininet::custom::convert(&custom, &topo)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Down { name, all } => lifecycle::down(name, all),
        Cmd::List { json } => list::list(json),
        Cmd::Exec { lab, host, command } => lifecycle::exec(lab, &host, &command),
        Cmd::Check { lab } => {
            let lab = Lab::attach_or_only(lab.as_deref())?;
            lifecycle::check(&lab)
        }
        Cmd::Clean { all, artifacts } => lifecycle::clean(all, artifacts),
        Cmd::Doctor => Ok(doctor::doctor(rootless_failure)),
        Cmd::Capture(args) => capture::run(args),
        Cmd::Impair(args) => impair::impair(args),
        Cmd::ImpairEngine(args) => impair::engine(args),
        Cmd::Run(args) => run::run(args),
    }
}
