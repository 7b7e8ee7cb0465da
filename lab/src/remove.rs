//! The remove step: stop the lab's recorded processes and any other process still inside its
//! namespaces, delete the namespaces (which takes their veths and bridges with them) and its
//! state record. Works from any process, from the record
//! alone, so it also cleans up after an owner that died by SIGKILL.

use crate::error::LabError;
use crate::state::{ProcessId, StateRecord, Status};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// How long a process gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_millis(1500);

/// Stops one recorded process (and its process group): SIGTERM, then SIGKILL after a grace
/// period. Only signals it if its identity (pid + start time) still matches.
pub fn stop_process(id: ProcessId) {
    if !id.alive() {
        return;
    }
    let pg = Pid::from_raw(id.pid);
    let _ = killpg(pg, Signal::SIGTERM);
    let deadline = Instant::now() + GRACE;
    while id.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if id.alive() {
        let _ = killpg(pg, Signal::SIGKILL);
    }
}

/// The (device, inode) of the namespace at `path` (a bind mount under /run/netns, or
/// `/proc/PID/ns/net`), which identifies it.
fn ns_inode(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Processes (other than this one) whose `kind` namespace (`/proc/PID/ns/KIND`: `net`, `user`)
/// is one `wanted` accepts, by its (device, inode).
pub fn processes_in(kind: &str, wanted: impl Fn((u64, u64)) -> bool) -> Vec<ProcessId> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            ns_inode(std::path::Path::new(&format!("/proc/{pid}/ns/{kind}"))).is_some_and(&wanted)
        })
        .filter_map(ProcessId::of)
        .collect()
}

/// Processes (other than this one) in the user namespace of inode `ns`: a rootless lab's.
fn processes_in_user_ns(ns: u64) -> Vec<ProcessId> {
    processes_in("user", |(_, ino)| ino == ns)
}

/// SIGTERM to each process, SIGKILL to those still alive after the grace period.
fn stop_all(ids: &[ProcessId]) {
    for id in ids.iter().filter(|id| id.alive()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(id.pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    while ids.iter().any(|id| id.alive()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for id in ids.iter().filter(|id| id.alive()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(id.pid), Signal::SIGKILL);
    }
}

/// Removes everything `record` lists. Idempotent: what is already gone is skipped.
///
/// A rootless lab seen from outside its user namespace is removed by its processes: the
/// lab's own, then every process left in the namespace once it is the lab's alone (a holder
/// started for this lab, or a namespace whose holder has ended). The namespaces, their
/// names and everything in them go with the last one. A lab held by a live process that is
/// not the lab's alone (`lab run`, a test binary) is removed from inside: join it first
/// ([`crate::rootless::join`]).
pub fn remove(record: &mut StateRecord) -> Result<(), LabError> {
    record.status = Status::Removing;
    record.creator = Some(ProcessId::current());
    let _ = record.save();
    if let Some(u) = &record.userns
        && crate::rootless::held_elsewhere(record)
    {
        return Err(LabError::Rootless(format!(
            "lab `{}` lives in the user namespace of process {}, which still runs: remove it from there (`lab down {}` as its user joins it), or end that process",
            record.name, u.holder.pid, record.name
        )));
    }
    for p in record.processes.iter().rev() {
        stop_process(p.id);
    }
    if let Some(u) = &record.userns
        && crate::rootless::current_user_ns() != Some(u.user_ns)
    {
        stop_all(&processes_in_user_ns(u.user_ns));
        return record.delete();
    }
    // What `lab exec` (or anyone) started inside the lab and left running: found by the
    // namespace it runs in, never by name.
    let inodes: Vec<(u64, u64)> = record
        .namespaces
        .iter()
        .filter_map(|ns| ns_inode(&ns.path()))
        .collect();
    if !inodes.is_empty() {
        stop_all(&processes_in("net", |i| inodes.contains(&i)));
    }
    let mut problems = Vec::new();
    if let Some(m) = &record.mininet {
        // Mininet's helper and shells, by identity.
        stop_all(&m.processes);
    }
    for ns in &record.namespaces {
        let path = ns.path();
        match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => problems.push(format!("unmount {}: {e}", path.display())),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("remove {}: {e}", path.display())),
        }
    }
    if let Some(m) = &record.mininet {
        // The kernel destroys the hosts' namespaces with their veths, and the switch ports
        // (their peers) with them, in one batch: much faster than deleting the ports one by
        // one, each waiting for RCU. Then whatever is left, and the bridges, by name.
        crate::mininet::await_ports_gone(m, GRACE * 2);
        problems.extend(crate::mininet::remove_root(m));
    }
    if let Some(u) = &record.userns
        && u.dedicated
    {
        // The holder started for this lab, and anything else still in its user namespace.
        stop_all(&processes_in_user_ns(u.user_ns));
    }
    if !problems.is_empty() {
        return Err(LabError::Teardown {
            lab: record.name.clone(),
            problems,
        });
    }
    record.delete()
}
