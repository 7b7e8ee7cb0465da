//! Starting, changing and stopping a lab's impairments: per impaired direction, the engine
//! process (`lab impair-engine`, recorded with the lab's processes and stopped with them), its
//! queue rule once it has bound the queue, and `tbf` for a rate.

use super::rules::{self, Direction};
use super::{Impairment, LinkImpairment, Way};
use crate::error::LabError;
use crate::resolve::{NodeKind, Plan};
use crate::state::ProcessId;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What applying impairments needs of a lab (`Lab` implements it).
pub trait Target {
    /// The resolved topology.
    fn plan(&self) -> &Plan;
    /// Replaces it and saves the lab's record.
    fn set_plan(&mut self, plan: Plan) -> Result<(), LabError>;
    /// A command that runs in `node`.
    fn command(&self, node: &str, program: &str) -> Result<Command, LabError>;
    /// The namespace of `node`.
    fn netns_path(&self, node: &str) -> Result<PathBuf, LabError>;
    /// Runs `f` on this thread inside `node`'s namespace.
    fn run_in<T>(&self, node: &str, f: impl FnOnce() -> T) -> Result<T, LabError>;
    /// Starts a recorded background process in `node`: its identity and log.
    fn start(
        &mut self,
        node: &str,
        name: &str,
        argv: &[String],
    ) -> Result<(ProcessId, PathBuf), LabError>;
    /// Stops the recorded process `name` of `node`; false when there was none.
    fn stop(&mut self, node: &str, name: &str) -> Result<bool, LabError>;
}

/// How long an engine gets to bind its queue.
const BIND_WAIT: Duration = Duration::from_secs(5);

/// Which engine applies a direction's delay, jitter, loss, duplication and reordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The kernel's netem qdisc on the sending end.
    Netem,
    /// The lab's NFQUEUE engine ([`super::engine`]).
    Nfqueue,
}

/// The environment variable that chooses: `nfqueue` always takes the lab's engine; unset
/// (or `auto`), netem is tried for impairments without a seed.
pub const ENGINE_VAR: &str = "LAB_IMPAIR_ENGINE";

/// False once a netem qdisc was refused in this process (the kernel has none).
static NETEM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// The engine a direction with impairment `imp` gets first: a seed asks for the drop
/// pattern the simulator shares, which only the lab's engine gives; so does
/// `LAB_IMPAIR_ENGINE=nfqueue`, and a kernel without netem.
pub fn engine_for(imp: &Impairment) -> Engine {
    let forced = std::env::var(ENGINE_VAR).is_ok_and(|v| v == "nfqueue");
    if imp.seed.is_some() || forced || !NETEM.load(std::sync::atomic::Ordering::Relaxed) {
        Engine::Nfqueue
    } else {
        Engine::Netem
    }
}

/// Starts every impaired direction of the lab's plan (at `lab up`).
pub fn start_all(lab: &mut impl Target) -> Result<(), LabError> {
    let plan = lab.plan().clone();
    for d in rules::directions(&plan) {
        start(lab, &d)?;
    }
    Ok(())
}

fn fail(d: &Direction, message: impl Into<String>) -> LabError {
    LabError::Impair {
        link: d.label(),
        message: message.into(),
    }
}

/// Runs `program args` in `node`: `Ok(Err(stderr))` when it fails.
fn attempt(
    lab: &impl Target,
    d: &Direction,
    node: &str,
    program: &str,
    args: &[String],
) -> Result<Result<(), String>, LabError> {
    let out = lab
        .command(node, program)?
        .args(args)
        .output()
        .map_err(|e| fail(d, format!("{node}: {program}: {e}")))?;
    Ok(match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    })
}

/// Runs `program args` in `node`, failing with its first line of stderr.
fn run(
    lab: &impl Target,
    d: &Direction,
    node: &str,
    program: &str,
    args: &[String],
) -> Result<(), LabError> {
    attempt(lab, d, node, program, args)?.map_err(|err| {
        fail(
            d,
            format!(
                "{node}: {program} {}: {}",
                args.join(" "),
                err.lines().next().unwrap_or("failed")
            ),
        )
    })
}

fn start(lab: &mut impl Target, d: &Direction) -> Result<(), LabError> {
    if d.imp.needs_engine() && engine_for(d.imp) == Engine::Netem {
        match attempt(lab, d, &d.from.node, "tc", &rules::netem(d))? {
            Ok(()) => {
                tracing::debug!(link = %d.label(), impairment = %d.imp, "impaired by netem");
                return Ok(());
            }
            Err(err) if !err.contains("unknown") => {
                return Err(fail(
                    d,
                    format!(
                        "{}: tc {}: {}",
                        d.from.node,
                        rules::netem(d).join(" "),
                        err.trim()
                    ),
                ));
            }
            // No netem in this kernel: the engine, from now on.
            Err(_) => NETEM.store(false, std::sync::atomic::Ordering::Relaxed),
        }
    }
    if d.imp.needs_engine() {
        let node = d.queue_end().node.clone();
        if d.queue_end().kind == NodeKind::Switch {
            // The lab turns bridge netfilter off in switches; this port's packets need it.
            let key = "/proc/sys/net/bridge/bridge-nf-call-iptables";
            lab.run_in(&node, || std::fs::write(key, "1"))?
                .map_err(|e| fail(d, format!("{node}: {key}: {e}")))?;
        }
        let bin = crate::bins::workspace_bin("lab", "LAB_BIN", "cargo build -p lab")
            .map_err(|e| fail(d, e))?;
        let seed = d.imp.stream(d.link, d.way);
        let mut argv: Vec<String> = vec![
            bin.display().to_string(),
            "impair-engine".into(),
            "--queue".into(),
            d.queue().to_string(),
            "--stream".into(),
            seed.to_string(),
            "--impair".into(),
            serde_json::to_string(d.imp).unwrap_or_default(),
        ];
        if !d.imp.duplicate.is_zero() && d.queued_on_arrival() {
            argv.extend([
                "--watch".into(),
                d.to.iface.clone(),
                "--sender-netns".into(),
                lab.netns_path(&d.from.node)?.display().to_string(),
                "--sender-iface".into(),
                d.from.iface.clone(),
            ]);
        } else if !d.imp.duplicate.is_zero() {
            argv.extend(["--resend".into(), d.from.iface.clone()]);
        }
        let (id, log) = lab.start(&node, &d.process_name(), &argv)?;
        let deadline = Instant::now() + BIND_WAIT;
        loop {
            let bound = lab
                .run_in(&node, || nfqueue::QueueStats::read(d.queue()))?
                .ok()
                .flatten()
                .is_some();
            if bound {
                break;
            }
            if !id.alive() || Instant::now() > deadline {
                let log = std::fs::read_to_string(Path::new(&log)).unwrap_or_default();
                let _ = lab.stop(&node, &d.process_name());
                return Err(fail(
                    d,
                    format!(
                        "the engine did not bind queue {}: {}",
                        d.queue(),
                        log.lines().last().unwrap_or("no output")
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        run(lab, d, &node, "iptables", &rules::queue_rule(d, true))?;
    }
    if let Some(args) = rules::tbf(d) {
        run(lab, d, &d.from.node, "tc", &args)?;
    }
    tracing::debug!(link = %d.label(), impairment = %d.imp, "impaired");
    Ok(())
}

fn stop(lab: &mut impl Target, d: &Direction) -> Result<(), LabError> {
    let mut netem = false;
    if d.imp.needs_engine() {
        // The rule first, so nothing is queued to an engine that is gone; then the engine,
        // which releases what it holds. Neither: netem had it.
        let node = &d.queue_end().node;
        let rule = run(lab, d, node, "iptables", &rules::queue_rule(d, false));
        let engine = lab.stop(node, &d.process_name())?;
        match (rule, engine) {
            (Err(e), true) => return Err(e),
            (_, engine) => netem = !engine,
        }
    }
    // A rate (tbf), or netem: both are the sending end's root qdisc.
    if d.imp.rate.is_some() || netem {
        run(lab, d, &d.from.node, "tc", &rules::tbf_remove(d))?;
    }
    Ok(())
}

/// Gives link `link` the impairment `imp` in the way `way` (`Forward`: the plan's a→b), the
/// other way as it was.
pub fn set_way(
    lab: &mut impl Target,
    link: usize,
    way: Way,
    imp: &Impairment,
) -> Result<(), LabError> {
    let mut now = lab.plan().links[link].impair.clone().unwrap_or_default();
    *now.way_mut(way) = imp.clone();
    set(lab, link, now)
}

/// Gives link `link` the impairment `new`: the directions that change are stopped and started
/// again, and the lab's record keeps the new values.
pub fn set(lab: &mut impl Target, link: usize, new: LinkImpairment) -> Result<(), LabError> {
    let before = lab.plan().clone();
    let mut after = before.clone();
    after.links[link].impair = Some(new).filter(|i| !i.is_empty());
    let changed = |p: &Plan, d: &Direction| {
        let other = p.links[d.link].impair.clone().unwrap_or_default();
        other.way(d.way) != d.imp
    };
    for d in rules::directions(&before)
        .iter()
        .filter(|d| d.link == link && changed(&after, d))
    {
        stop(lab, d)?;
    }
    lab.set_plan(after.clone())?;
    for d in rules::directions(&after)
        .iter()
        .filter(|d| d.link == link && changed(&before, d))
    {
        start(lab, d)?;
    }
    Ok(())
}
