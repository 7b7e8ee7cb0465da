//! `lb`: the load balancer binary: `lb server` (the balancer), `lb agent` (its backend side)
//! and `lb ctl` (the operator's client). Parses the command line and dispatches; the pure data
//! path is the `lb-core` crate.

use anyhow::{Context, Result};
use clap::Parser;
use cli::BadInput;
use cli::args::{Cli, Cmd};
use cli::settings;
use std::process::ExitCode;

mod agent;
mod cli;
mod ctl;
mod lines;
mod server;
mod sys;

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Server(a) => server::run(settings::server_settings(a)?).context("lb server"),
        Cmd::Agent(a) => agent::run(settings::agent_settings(a)?).context("lb agent"),
        Cmd::Ctl(a) => {
            let c = settings::ctl_settings(a);
            ctl::run(&c.socket, &c.request, c.json).context("ctl")
        }
    }
}

fn main() -> ExitCode {
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
