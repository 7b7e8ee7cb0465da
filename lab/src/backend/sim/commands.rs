//! The commands an `exec` step may run in the simulator: the few whose answer the simulated
//! kernel knows (`iptables -S`, the rules as they are now). Anything else is an arbitrary
//! command, which the simulator refuses by name.

use netfilter_model::Table;
use sim::World;

/// `(exit code, output)` of `argv` run in `host`, or `None` for a command the simulator does
/// not answer.
pub(super) fn run(
    world: &World,
    host: &str,
    argv: &[String],
) -> Option<Result<(i32, String), String>> {
    let (program, args) = argv.split_first()?;
    match program.as_str() {
        "iptables" => iptables_list(world, host, args),
        _ => None,
    }
}

/// `iptables [-w] [-t TABLE] -S|--list-rules [CHAIN]`.
fn iptables_list(
    world: &World,
    host: &str,
    args: &[String],
) -> Option<Result<(i32, String), String>> {
    let mut table = Table::Filter;
    let mut chain = None;
    let mut listing = false;
    let mut words = args.iter();
    while let Some(w) = words.next() {
        match w.as_str() {
            "-w" | "--wait" => {}
            "-t" | "--table" => table = Table::parse(words.next()?)?,
            "-S" | "--list-rules" => listing = true,
            c if listing && chain.is_none() && !c.starts_with('-') => chain = Some(c.to_string()),
            _ => return None,
        }
    }
    if !listing {
        return None;
    }
    Some(
        world
            .iptables_list(host, table, chain.as_deref())
            .map_err(|e| e.to_string())
            .map(|lines| match lines {
                Some(lines) => (0, lines.iter().map(|l| format!("{l}\n")).collect()),
                None => (1, "iptables: No chain/target/match by that name.\n".into()),
            }),
    )
}
