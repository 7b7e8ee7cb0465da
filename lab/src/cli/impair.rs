//! `lab impair`: show or change a running lab's link impairments; and `lab impair-engine`, the
//! hidden per-direction engine process the lab starts.

use anyhow::{Context, Result};
use lab::impair::engine::{DuplicatePath, EngineConfig};
use lab::impair::rules::way_label;
use lab::impair::{Impairment, Way, from_words};
use lab::{Lab, LabError};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// `lab impair [--lab N] HOST:IF [--egress|--ingress] [PARAM=VALUE…|none]`.
#[derive(clap::Args, Debug)]
pub struct ImpairArgs {
    /// Lab name (optional when only one lab is up).
    #[arg(long = "lab")]
    pub lab: Option<String>,
    /// One end of the link: `h3:eth0`, or a switch port `s1:eth3`.
    pub endpoint: String,
    /// Only packets leaving this end.
    #[arg(long, conflicts_with = "ingress")]
    pub egress: bool,
    /// Only packets arriving at this end.
    #[arg(long)]
    pub ingress: bool,
    /// The new impairment, replacing the old one: delay=50ms jitter=5ms loss=20% (or
    /// loss="20% 25%" with a correlation) duplicate=1% reorder=25% rate=10mbit seed=7; `none`
    /// clears. Without any, the link's impairments are shown.
    pub params: Vec<String>,
}

/// The hidden `lab impair-engine`: one direction's NFQUEUE engine (see `lab::impair::engine`).
#[derive(clap::Args, Debug)]
pub struct EngineArgs {
    /// The queue to bind.
    #[arg(long)]
    pub queue: u16,
    /// The decider's stream seed.
    #[arg(long)]
    pub stream: u64,
    /// The impairment, as JSON.
    #[arg(long)]
    pub impair: String,
    /// The receiving interface (for duplicates).
    #[arg(long, requires_all = ["sender_netns", "sender_iface"])]
    pub watch: Option<String>,
    /// The sending end's namespace (for duplicates).
    #[arg(long)]
    pub sender_netns: Option<std::path::PathBuf>,
    /// The sending end's interface (for duplicates).
    #[arg(long)]
    pub sender_iface: Option<String>,
    /// The interface packets leave by (for duplicates of packets queued on their way out).
    #[arg(long, conflicts_with = "watch")]
    pub resend: Option<String>,
}

pub fn engine(args: EngineArgs) -> Result<ExitCode> {
    let impairment: Impairment =
        serde_json::from_str(&args.impair).context("--impair is not an impairment")?;
    let duplicates = match (
        args.watch,
        args.sender_netns,
        args.sender_iface,
        args.resend,
    ) {
        (Some(receiving), Some(sender_netns), Some(sending), _) => Some(DuplicatePath::Requeue {
            receiving,
            sender_netns,
            sending,
        }),
        (_, _, _, Some(iface)) => Some(DuplicatePath::Resend { iface }),
        _ => None,
    };
    let cfg = EngineConfig {
        queue: args.queue,
        impairment,
        stream: args.stream,
        duplicates,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("signal handler")?;
    }
    let stats = lab::impair::engine::run(&cfg, &stop, || {
        println!("queue {}: {}", cfg.queue, cfg.impairment);
    })?;
    println!("queue {}: {stats}", cfg.queue);
    Ok(ExitCode::SUCCESS)
}

pub fn impair(args: ImpairArgs) -> Result<ExitCode> {
    let mut lab = Lab::attach_or_only(args.lab.as_deref())?;
    let plan = lab.plan();
    let (link, ours) = lab::impair::rules::link_end(plan, &args.endpoint)
        .map_err(|e| LabError::BadImpairment(format!("lab {}: {e}", lab.name())))?;
    let l = &plan.links[link];
    let egress = ours;
    let ingress = lab::impair::rules::opposite(ours);
    if args.params.is_empty() {
        let cur = l.impair.clone().unwrap_or_default();
        for way in [egress, ingress] {
            println!("{}: {}", way_label(l, way), cur.way(way));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let new = from_words(&args.params).map_err(|e| LabError::BadImpairment(e.to_string()))?;
    let ways: &[Way] = match (args.egress, args.ingress) {
        (true, _) => &[egress],
        (_, true) => &[ingress],
        _ => &[egress, ingress],
    };
    for way in ways {
        lab::impair::apply::set_way(&mut lab, link, *way, &new)?;
    }
    let l = &lab.plan().links[link];
    let now = l.impair.clone().unwrap_or_default();
    for way in ways {
        println!("{}: {}", way_label(l, *way), now.way(*way));
    }
    Ok(ExitCode::SUCCESS)
}
