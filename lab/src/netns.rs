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
    spawn_in(netns, None, None, program)
}

/// Like [`command_in`], and the child also gets a UTS namespace of its own whose host name is
/// `hostname`, so `hostname`, `uname -n` and `lb agent`'s default name say which lab host a
/// process runs in, as they would on a machine of its own.
///
/// With `etc` (the lab's directory of such files), the child also gets a mount namespace of its
/// own where `etc/hosts` is bound over `/etc/hosts` and `etc/resolv.conf` over
/// `/etc/resolv.conf`, as `ip netns exec` binds `/etc/netns/NAME/*`: the lab's host names
/// resolve (`telnet h2 8080`), and so does the host's own name, which telnet looks up before it
/// sends anything; other names fail at once. Before, such lookups waited for the machine's
/// resolver, which no lab host can reach: 6 s of ARP per lookup in `single,3`, whose 10.0.0.0/8
/// holds this machine's resolver. Mounts never propagate back: the new namespace is made a
/// slave first, and without that nothing is bound. A file that cannot be bound (a
/// `/etc/resolv.conf` that links into a `/run` the namespace does not have) is left as it is.
pub fn host_command_in(
    netns: &Path,
    hostname: &str,
    etc: Option<&Path>,
    program: impl AsRef<OsStr>,
) -> io::Result<Command> {
    spawn_in(netns, Some(hostname), etc, program)
}

fn spawn_in(
    netns: &Path,
    hostname: Option<&str>,
    etc: Option<&Path>,
    program: impl AsRef<OsStr>,
) -> io::Result<Command> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ns = File::open(netns)?;
    // Copied before the fork: the child may not allocate.
    let name: Option<Vec<u8>> = hostname.map(|h| h.as_bytes().to_vec());
    let binds: Vec<(CString, CString)> = etc
        .into_iter()
        .flat_map(|dir| ["hosts", "resolv.conf"].map(|f| (dir.join(f), format!("/etc/{f}"))))
        .filter(|(source, _)| source.is_file())
        .filter_map(|(source, target)| {
            Some((
                CString::new(source.as_os_str().as_bytes()).ok()?,
                CString::new(target).ok()?,
            ))
        })
        .collect();
    let mut cmd = Command::new(program);
    // SAFETY: the closure only makes the async-signal-safe setns, unshare, sethostname and
    // mount syscalls on memory allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(name) = &name {
                if libc::unshare(libc::CLONE_NEWUTS) != 0
                    || libc::sethostname(name.as_ptr().cast(), name.len()) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if !binds.is_empty() {
                bind_etc(&binds)?;
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// In a child between fork and exec: a mount namespace of its own, a slave of the parent's
/// (so nothing propagates back), with each (source, target) bound; a bind that fails is skipped.
fn bind_etc(binds: &[(std::ffi::CString, std::ffi::CString)]) -> io::Result<()> {
    let root = c"/";
    // SAFETY: plain syscalls on NUL-terminated strings that outlive them.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0
            || libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        for (source, target) in binds {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            );
        }
    }
    Ok(())
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
