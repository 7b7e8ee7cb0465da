//! The remove step: stop the lab's recorded processes, delete its namespaces (which takes their
//! veths and bridges with them) and its state record. Works from any process, from the record
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

/// Removes everything `record` lists. Idempotent: what is already gone is skipped.
pub fn remove(record: &mut StateRecord) -> Result<(), LabError> {
    record.status = Status::Removing;
    let _ = record.save();
    for p in record.processes.iter().rev() {
        stop_process(p.id);
    }
    let mut problems = Vec::new();
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
    if !problems.is_empty() {
        return Err(LabError::Teardown {
            lab: record.name.clone(),
            problems,
        });
    }
    record.delete()
}
