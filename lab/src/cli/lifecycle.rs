//! `lab up`, `down`, `exec`, `check`, `clean`: a lab's lifecycle on the native backend (named
//! labs that persist between commands, their state records, and their exact removal).

use super::list;
use anyhow::{Context, Result, bail};
use lab::check::check_connectivity;
use lab::state::StateRecord;
use lab::{Lab, LabOptions, Topology, resolve};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub fn up(
    topology: Topology,
    name: Option<String>,
    do_check: bool,
    hold: bool,
    builder: lab::Builder,
) -> Result<ExitCode> {
    let plan = resolve(&topology)?;
    let t0 = Instant::now();
    if hold {
        block_stop_signals()?;
    }
    let lab = Lab::up(
        plan,
        &LabOptions {
            name,
            persistent: !hold,
            builder,
        },
    )
    .context("cannot create the lab")?;
    let took = t0.elapsed();
    let p = lab.plan();
    println!(
        "lab {} is up in {:.0} ms: {} ({} hosts, {} switch(es), {} links)",
        lab.name(),
        took.as_secs_f64() * 1e3,
        p.name,
        p.hosts.len(),
        p.switches.len(),
        p.links.len()
    );
    list::print_hosts(lab.record());
    // A failed check leaves a persistent lab up for inspection, and says so.
    let checked = if do_check {
        check(&lab)
    } else {
        Ok(ExitCode::SUCCESS)
    };
    let check_failed = !matches!(checked, Ok(ExitCode::SUCCESS));
    if hold {
        println!("holding the lab; Ctrl-C or SIGTERM removes it");
        wait_stop_signal();
        lab.down()?;
        println!("lab removed");
    } else {
        let first = lab
            .plan()
            .hosts
            .first()
            .map(|h| h.name.clone())
            .unwrap_or_default();
        let name = lab.detach();
        if check_failed {
            println!(
                "check failed: lab {name} is left up for inspection; remove it: lab down {name}"
            );
        } else {
            println!(
                "next: lab exec --lab {name} {first} -- ip addr   |   remove: lab down {name}"
            );
        }
    }
    checked
}

pub fn check(lab: &Lab) -> Result<ExitCode> {
    let r = check_connectivity(lab, Duration::from_secs(3))?;
    if r.missing.is_empty() {
        if r.all_pairs {
            println!("check: all {} host pairs reach each other (UDP)", r.pairs);
        } else {
            println!(
                "check: {} host pairs reach each other (UDP; every host to and from the first and to the next: \
                 all pairs would overflow the kernel's shared neighbour table)",
                r.pairs
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        for (a, b) in r.missing.iter().take(10) {
            println!("check: {a} cannot reach {b}");
        }
        if r.missing.len() > 10 {
            println!("check: ... and {} more", r.missing.len() - 10);
        }
        println!(
            "check: {} of {} host pairs failed",
            r.missing.len(),
            r.pairs
        );
        Ok(ExitCode::from(1))
    }
}

fn block_stop_signals() -> Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).context("blocking SIGINT/SIGTERM")?;
    Ok(())
}

fn wait_stop_signal() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let _ = set.wait();
}

pub fn down(name: Option<String>, all: bool) -> Result<ExitCode> {
    let names: Vec<String> = if all {
        StateRecord::all()
            .into_iter()
            .filter_map(|r| r.ok())
            .map(|r| r.name)
            .collect()
    } else {
        name.into_iter().collect()
    };
    for n in &names {
        StateRecord::load(n)
            .map_err(anyhow::Error::from)
            .and_then(|rec| remove(&rec))
            .with_context(|| format!("cannot remove lab `{n}`"))?;
        println!("lab {n} removed");
    }
    if all && names.is_empty() {
        println!("no labs");
    }
    lab::rootless::tidy_state_dir();
    Ok(ExitCode::SUCCESS)
}

pub fn exec(lab: Option<String>, host: &str, command: &[String]) -> Result<ExitCode> {
    let lab = Lab::attach_or_only(lab.as_deref())?;
    let mut cmd = lab.command(host, &command[0])?;
    cmd.args(&command[1..]);
    // exec replaces this process: stdin, stdout, signals and the exit code are the command's.
    let err = std::os::unix::process::CommandExt::exec(&mut cmd);
    if err.kind() == std::io::ErrorKind::NotFound {
        eprintln!("lab: {host}: {}: command not found", command[0]);
        return Ok(ExitCode::from(127));
    }
    bail!("{host}: cannot run `{}`: {err}", command.join(" "))
}

pub fn clean(all: bool, artifacts: bool) -> Result<ExitCode> {
    let mut removed = StateRecord::remove_stale_tmp();
    if removed > 0 {
        println!("{removed} half-written state record(s) of killed processes removed");
    }
    let mut live = std::collections::BTreeSet::new();
    for rec in StateRecord::all() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                eprintln!("lab: skipping: {e}");
                continue;
            }
        };
        if all || rec.orphaned() {
            let why = if rec.half_done() {
                "its creator died before it was up"
            } else if rec.holder_gone() {
                "its holder is gone"
            } else if rec.orphaned() {
                "owner is gone"
            } else {
                "--all"
            };
            remove(&rec).with_context(|| format!("cannot remove lab `{}`", rec.name))?;
            println!("lab {} removed ({why})", rec.name);
            removed += 1;
        } else {
            live.insert(rec.artifact_dir.clone());
        }
    }
    if artifacts {
        let (dirs, bytes) = clean_artifacts(&live)?;
        if dirs > 0 {
            println!(
                "{dirs} artifact director{} of removed labs deleted ({:.1} MiB) from {}",
                if dirs == 1 { "y" } else { "ies" },
                bytes as f64 / (1 << 20) as f64,
                lab::state::artifact_root().display()
            );
            removed += dirs;
        }
    }
    if removed == 0 {
        println!("nothing to clean");
    }
    lab::rootless::tidy_state_dir();
    Ok(ExitCode::SUCCESS)
}

/// Removes one lab. A rootless lab that another live program holds (`lab up --hold`, `lab
/// run`) is removed from inside its namespaces, which only a process with one thread may
/// enter: a `lab down NAME` of its own does it.
fn remove(rec: &StateRecord) -> Result<()> {
    if lab::rootless::mode() == lab::rootless::Mode::Rootless && lab::rootless::held_elsewhere(rec)
    {
        let exe = std::env::current_exe().context("locating the lab executable")?;
        let out = std::process::Command::new(exe)
            .args(["down", &rec.name])
            .output()
            .context("running lab down")?;
        if !out.status.success() {
            bail!(
                "{}",
                String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .trim_start_matches("lab: ")
            );
        }
        return Ok(());
    }
    Ok(lab::lab::down(&rec.name)?)
}

/// Deletes every directory under the artifact root except those of `live` labs; returns how
/// many and their size in bytes.
fn clean_artifacts(live: &std::collections::BTreeSet<std::path::PathBuf>) -> Result<(usize, u64)> {
    fn size(p: &std::path::Path) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| size(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    let root = lab::state::artifact_root();
    let entries = match std::fs::read_dir(&root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e).with_context(|| format!("read {}", root.display())),
    };
    let (mut dirs, mut bytes) = (0, 0);
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) || live.contains(&path) {
            continue;
        }
        bytes += size(&path);
        std::fs::remove_dir_all(&path).with_context(|| format!("delete {}", path.display()))?;
        dirs += 1;
    }
    Ok((dirs, bytes))
}
