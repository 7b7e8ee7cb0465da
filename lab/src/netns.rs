//! Entering namespaces: from a thread (sockets, netlink, /proc/sys) and from a child process.
//!
//! `setns` changes only the calling thread. Callers never hold a namespace across an `.await`;
//! sockets created inside [`run_in`] stay bound to that namespace and may be used anywhere.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Runs `f` on the current thread inside the namespace at `netns`, then returns to the
/// thread's previous namespace.
pub fn run_in<T>(netns: &Path, f: impl FnOnce() -> T) -> io::Result<T> {
    let target = File::open(netns)?;
    let home = File::open("/proc/thread-self/ns/net")?;
    setns(&target)?;
    let out = f();
    // Failing to return would leave this thread in the lab: that must not go unnoticed.
    setns(&home).expect("cannot return to the original network namespace");
    Ok(out)
}

fn setns(f: &File) -> io::Result<()> {
    // SAFETY: setns on a valid namespace fd affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A [`Command`] whose child runs inside the namespace at `netns` (setns between fork and exec).
pub fn command_in(netns: &Path, program: impl AsRef<OsStr>) -> io::Result<Command> {
    let ns = File::open(netns)?;
    let mut cmd = Command::new(program);
    // SAFETY: the closure only makes the async-signal-safe setns syscall.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Writes sysctls (`net.ipv4.ip_forward`) in order inside the namespace at `netns`, entering it
/// once for all of them. On failure, returns the index of the key that failed and why; the
/// keys before it are written.
pub fn write_sysctls(netns: &Path, pairs: &[(&str, &str)]) -> Result<(), (usize, io::Error)> {
    run_in(netns, || {
        pairs.iter().enumerate().try_for_each(|(i, (key, value))| {
            std::fs::write(Path::new("/proc/sys").join(key.replace('.', "/")), value)
                .map_err(|e| (i, e))
        })
    })
    .map_err(|e| (0, e))?
}
