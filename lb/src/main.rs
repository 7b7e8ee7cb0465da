//! `lb`: the load balancer binary (server, backend agent, ctl).

use clap::Parser;

/// Layer-4 load balancer with NFQUEUE intake and direct server return.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> std::process::ExitCode {
    let _cli = Cli::parse();
    eprintln!("lb: the data plane is not built yet (issue 4)");
    std::process::ExitCode::from(2)
}
