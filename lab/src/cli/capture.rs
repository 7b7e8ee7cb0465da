//! `lab capture`: a live, normalized view of one host's packets, like tcpdump with the lab's
//! names; then a pcap file and a ladder diagram on request.

use anyhow::{Context, Result};
use clap::Args;
use lab::Lab;
use lab::capture::{Capture, CaptureConfig, write_pcap_file};
use lab::ladder::Ladder;
use lab::resolve::Plan;
use lab::trace::{NameMap, TraceBuilder, TraceOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

/// `lab capture [--lab NAME] HOST[:IFACE] [-w FILE] [--count N] [--duration S] [--ladder]
/// [--mermaid] [--arp] [--ipv6] [--igmp] [--all]`
#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Lab name (optional when only one lab is up).
    #[arg(long = "lab")]
    pub lab: Option<String>,
    /// Where to capture: HOST (every interface) or HOST:IFACE (`h2:eth0` or `h2:h2-eth0`).
    #[arg(value_name = "HOST[:IFACE]")]
    target: String,
    /// Write every captured frame to this pcap file when the capture ends.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// Stop after N shown packets (like tcpdump -c; frames the filters hide do not count).
    #[arg(short = 'c', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop after S seconds (fractions allowed).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Print the ladder diagram when the capture ends.
    #[arg(long)]
    ladder: bool,
    /// Print the ladder as a Mermaid sequence diagram (implies --ladder).
    #[arg(long)]
    mermaid: bool,
    /// Show ARP.
    #[arg(long)]
    arp: bool,
    /// Show IPv6 (neighbour discovery included).
    #[arg(long)]
    ipv6: bool,
    /// Show IGMP (multicast membership reports and queries).
    #[arg(long)]
    igmp: bool,
    /// Show every frame: ARP, IPv6, IGMP and other EtherTypes too.
    #[arg(long)]
    all: bool,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

/// Runs `lab capture`. Bad input (unknown host or interface, unwritable file) prints one line
/// and exits 2, as the other commands do.
pub fn run(args: CaptureArgs) -> Result<ExitCode> {
    let lab = Lab::attach_or_only(args.lab.as_deref())?;
    let (host, iface) = match capture_point(lab.name(), lab.plan(), &args.target) {
        Ok(t) => t,
        Err(msg) => return Ok(bad_input(&msg)),
    };
    if let Some(path) = &args.write {
        // Fail now, not after the capture: tcpdump -w also opens its file first.
        if let Err(e) = std::fs::File::create(path) {
            return Ok(bad_input(&format!("{}: {e}", path.display())));
        }
    }
    // Before any thread exists, so that every thread inherits the mask and the signal thread
    // below is the only one that sees SIGINT/SIGTERM.
    block_stop_signals()?;

    let (tx, rx) = mpsc::channel();
    let mut config = CaptureConfig::new(&host, iface.as_deref()).live(tx);
    if let Some(d) = args.duration {
        config = config.duration(d);
    }
    let socket = match lab.capture_socket(&host, iface.as_deref()) {
        Ok(s) => s,
        // A Mininet switch without a port named: the user's to fix.
        Err(e)
            if iface.is_none()
                && (lab.record().mininet.as_ref())
                    .is_some_and(|m| m.bridges.contains_key(&host)) =>
        {
            return Ok(bad_input(&format!("cannot capture on {host}: {e}")));
        }
        Err(e) => return Err(anyhow::Error::msg(e).context(format!("cannot capture on {host}"))),
    };
    let capture = Capture::from_socket(socket, config)
        .with_context(|| format!("cannot capture on {host}"))?;
    let stop = capture.stop_handle();
    {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("capture-signals".into())
            .spawn(move || {
                wait_stop_signal();
                stop.stop();
            })
            .context("cannot start the signal thread")?;
    }
    eprintln!(
        "capturing on {host} ({}); Ctrl-C to stop",
        iface.as_deref().unwrap_or("all interfaces")
    );

    let names = NameMap::of_plan(lab.plan());
    let options = TraceOptions {
        arp: args.arp || args.all,
        ipv6: args.ipv6 || args.all,
        igmp: args.igmp || args.all,
        other_ethertypes: args.all,
        ..TraceOptions::default()
    };
    let mut builder = TraceBuilder::new(&names, &options, iface.is_none());
    let mut keep = None;
    let mut out = std::io::stdout().lock();
    for (i, frame) in rx.iter().enumerate() {
        if let Some(line) = builder.push(&frame)
            && writeln!(out, "{line}").and_then(|()| out.flush()).is_err()
        {
            // The reader went away (`| head`): stop as if the count were reached.
            keep = Some(i + 1);
            stop.stop();
            break;
        }
        if args.count.is_some_and(|n| builder.shown() as u64 >= n) {
            // Frames queued behind the N-th shown one are read by stop() but not kept.
            keep = Some(i + 1);
            stop.stop();
            break;
        }
    }
    drop(out);
    let mut point = capture
        .stop()
        .with_context(|| format!("capture on {host} failed"))?;
    if let Some(k) = keep {
        point.frames.truncate(k);
    }

    let drops = point.stats.kernel_drops;
    let mut summary = format!(
        "{} packets captured, {} shown",
        point.frames.len(),
        builder.shown()
    );
    if drops > 0 {
        summary.push_str(&format!(
            ", {drops} dropped by the kernel (socket buffer full)"
        ));
    }
    eprintln!("{summary}");
    if let Some(path) = &args.write {
        write_pcap_file(&point, path)?;
        eprintln!("wrote {} packets to {}", point.frames.len(), path.display());
    }
    if args.ladder || args.mermaid {
        let ladder = Ladder::build(std::slice::from_ref(&point), &names, &options);
        let text = if args.mermaid {
            ladder.mermaid()
        } else {
            ladder.to_string()
        };
        println!();
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bad_input(msg: &str) -> ExitCode {
    eprintln!("lab: {msg}");
    ExitCode::from(2)
}

/// `HOST[:IFACE]` → (node, full interface name or `None` for every interface).
fn capture_point(lab: &str, plan: &Plan, target: &str) -> Result<(String, Option<String>), String> {
    let (node, iface) = match target.split_once(':') {
        Some((n, i)) => (n, Some(i)),
        None => (target, None),
    };
    let interfaces: Vec<String> = if let Some(h) = plan.host(node) {
        h.interfaces.iter().map(|i| i.name.clone()).collect()
    } else if let Some(s) = plan.switches.iter().find(|s| s.name == node) {
        std::iter::once(s.name.clone())
            .chain(s.ports.iter().map(|p| p.name.clone()))
            .collect()
    } else {
        let hosts: Vec<&str> = plan.hosts.iter().map(|h| h.name.as_str()).collect();
        let switches: Vec<&str> = plan.switches.iter().map(|s| s.name.as_str()).collect();
        let mut known = format!("hosts: {}", hosts.join(", "));
        if !switches.is_empty() {
            known.push_str(&format!("; switches: {}", switches.join(", ")));
        }
        return Err(format!("lab `{lab}` has no host `{node}` ({known})"));
    };
    let Some(iface) = iface else {
        return Ok((node.to_string(), None));
    };
    let full = format!("{node}-{iface}");
    let found = [iface, full.as_str()]
        .into_iter()
        .find(|c| *c == "lo" || interfaces.iter().any(|i| i == c));
    match found {
        Some(name) => Ok((node.to_string(), Some(name.to_string()))),
        None => Err(format!(
            "{node} has no interface `{iface}` (interfaces: {}, lo)",
            interfaces.join(", ")
        )),
    }
}

fn stop_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

fn block_stop_signals() -> Result<()> {
    use nix::sys::signal::{SigmaskHow, sigprocmask};
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&stop_signals()), None)
        .context("blocking SIGINT/SIGTERM")?;
    Ok(())
}

fn wait_stop_signal() {
    let _ = stop_signals().wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab::topology::builtin;

    fn plan() -> Plan {
        lab::resolve(&builtin("single,3").unwrap()).unwrap()
    }

    #[test]
    fn capture_points_short_full_and_unknown() {
        let p = plan();
        let cp = |t: &str| capture_point("t", &p, t);
        assert_eq!(cp("h2"), Ok(("h2".into(), None)));
        assert_eq!(cp("h2:eth0"), Ok(("h2".into(), Some("h2-eth0".into()))));
        assert_eq!(cp("h2:h2-eth0"), Ok(("h2".into(), Some("h2-eth0".into()))));
        assert_eq!(cp("h2:lo"), Ok(("h2".into(), Some("lo".into()))));
        assert_eq!(cp("s1:eth2"), Ok(("s1".into(), Some("s1-eth2".into()))));
        assert_eq!(
            cp("h9"),
            Err("lab `t` has no host `h9` (hosts: h1, h2, h3; switches: s1)".into())
        );
        assert_eq!(
            cp("h2:eth7"),
            Err("h2 has no interface `eth7` (interfaces: h2-eth0, lo)".into())
        );
    }

    #[test]
    fn names_include_hosts_and_vip() {
        let m = NameMap::of_plan(&plan());
        assert_eq!(m.name("10.0.0.2".parse().unwrap()), Some("h2"));
        assert_eq!(m.name("10.0.0.50".parse().unwrap()), Some("vip"));
    }

    #[test]
    fn seconds_must_be_positive() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("x").is_err());
    }
}
