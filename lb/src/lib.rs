//! `lb`: the load balancer: `lb server` (the balancer), `lb agent` (its backend side) and `lb
//! ctl` (the operator's client). The pure data path is the `lb-core` crate; this crate is its
//! I/O (NFQUEUE, sockets, netlink) and its command line.
//!
//! As a library it offers what the binary runs ([`main`]) and the command line without the
//! running ([`parse`]): the settings `lb server` and `lb agent` would run with, and the lines
//! they print, for the lab's simulator, whose balancer is `lb-core` driven in virtual time.

use anyhow::{Context, Result};
use clap::Parser;
use cli::BadInput;
use cli::args::{Cli, Cmd};
use cli::settings;
use std::process::ExitCode;

pub mod agent;
pub mod cli;
mod ctl;
mod lines;
pub mod server;
mod sys;

pub use agent::AgentSettings;
pub use server::ServerSettings;

/// What a command line asks `lb` to do, resolved (configuration file and flags merged and
/// checked) but not started.
#[derive(Debug)]
pub enum Invocation {
    /// `lb server …`.
    Server(Box<ServerSettings>),
    /// `lb agent …`.
    Agent(Box<AgentSettings>),
    /// `lb ctl …` (a client of a running server or agent).
    Ctl,
}

/// Parses `args` (the words after `lb`) as the binary would, reading the configuration and
/// secret files it names; the error is one line, as `lb` prints it.
pub fn parse<I, T>(args: I) -> std::result::Result<Invocation, String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv =
        std::iter::once(std::ffi::OsString::from("lb")).chain(args.into_iter().map(Into::into));
    let cli = Cli::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        first.strip_prefix("error: ").unwrap_or(first).to_string()
    })?;
    let shown = |e: anyhow::Error| format!("{e:#}");
    Ok(match cli.command {
        Cmd::Server(a) => {
            Invocation::Server(Box::new(settings::server_settings(*a).map_err(shown)?))
        }
        Cmd::Agent(a) => Invocation::Agent(Box::new(settings::agent_settings(a).map_err(shown)?)),
        Cmd::Ctl(_) => Invocation::Ctl,
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Server(a) => server::run(settings::server_settings(*a)?).context("lb server"),
        Cmd::Agent(a) => agent::run(settings::agent_settings(a)?).context("lb agent"),
        Cmd::Ctl(a) => {
            let c = settings::ctl_settings(a);
            ctl::run(&c.socket, &c.request, c.json).context("ctl")
        }
    }
}

/// The `lb` binary: parses the process's command line, logs to stderr (`LB_LOG` filters),
/// runs the command; one line on stderr and exit code 2 for bad input, 1 for other failures.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb: {e:#}");
            match e
                .chain()
                .any(|c| c.is::<BadInput>() || c.is::<ctl::Refused>())
            {
                true => ExitCode::from(2),
                false => ExitCode::from(1),
            }
        }
    }
}
