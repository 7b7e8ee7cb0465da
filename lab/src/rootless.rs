//! Rootless labs: an ordinary user's labs live in user namespaces the user owns, where the
//! user is root (`uid_map` "0 UID 1") and may create network namespaces, veths, bridges,
//! firewall rules and NFQUEUE bindings, none of which touch the machine's own namespaces.
//!
//! Every such user namespace comes with a mount namespace and a network namespace of its own:
//!
//! - `/run` is a private tmpfs there, so `/run/netns` (the labs' namespace names), `/run/lb` (the
//!   balancer's lock and saved sysctls) and `/run/xtables.lock` work as they do for root and
//!   vanish with the namespace; the directory holding the user's state directory
//!   (`$XDG_RUNTIME_DIR`), when it lies under `/run`, is bound back in at its path;
//! - `/sys` is the private network namespace's sysfs, so `/sys/class/net` lists its interfaces;
//! - the private network namespace stands in for the machine's root namespace (`lo` up), so a
//!   Mininet switch's bridge and ports go there, never into the real one.
//!
//! Two ways in:
//!
//! - [`enter_private`]: this process moves into a fresh set (`lab run`, `lab up --hold`, test
//!   binaries through [`crate::rootless_test_binary`]); its labs end with it.
//! - [`spawn_holder`] + [`join`]: `lab up` starts a holder process that owns the set and only
//!   waits, then joins it; later commands (`lab exec`, `capture`, `check`) join the same holder,
//!   and `lab down` stops every process in its user namespace, which takes everything with it.
//!
//! Both must run while the process has a single thread: the kernel refuses `unshare` and
//! `setns` of a user namespace to a multi-threaded process.

use crate::error::LabError;
use crate::state::ProcessId;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How this process builds labs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Root of the machine: `/run/netns`, `/run/lab`, `/var/tmp/lab`.
    Root,
    /// Root inside a user namespace (one lab entered, a test binary's, or `unshare -r`):
    /// everything works as for root, inside that namespace.
    UserNamespace,
    /// An ordinary user: lab enters a user namespace before it builds or enters a lab.
    Rootless,
}

/// The mode of this process.
pub fn mode() -> Mode {
    if !nix::unistd::geteuid().is_root() {
        Mode::Rootless
    } else if in_initial_user_namespace() {
        Mode::Root
    } else {
        Mode::UserNamespace
    }
}

/// This process's `/proc/self/uid_map`: (inside, outside, count) per line.
pub fn uid_map() -> Option<Vec<[u64; 3]>> {
    let text = std::fs::read_to_string("/proc/self/uid_map").ok()?;
    text.lines()
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            f.try_into().ok()
        })
        .collect()
}

/// True in the machine's first user namespace, whose `uid_map` maps every uid to itself.
pub fn in_initial_user_namespace() -> bool {
    uid_map().is_none_or(|m| m == [[0, 0, 4_294_967_295]])
}

/// The inode of a process's user namespace (`/proc/PID/ns/user`), which identifies it.
pub fn user_ns_of(pid: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/user"))
        .ok()
        .map(|m| m.ino())
}

/// The inode of this process's user namespace.
pub fn current_user_ns() -> Option<u64> {
    user_ns_of(std::process::id() as i32)
}

/// True for a rootless lab that another live program holds (`lab up --hold`, `lab run`, a
/// test binary) in a user namespace this process is not in: it is removed from inside, by
/// joining that program's namespaces.
pub fn held_elsewhere(record: &crate::state::StateRecord) -> bool {
    record
        .userns
        .as_ref()
        .is_some_and(|u| !u.dedicated && u.holder.alive() && current_user_ns() != Some(u.user_ns))
}

/// Removes the state directory of an ordinary user when no lab is left in it, so that `lab
/// down` and `lab clean` leave nothing behind in `$XDG_RUNTIME_DIR`.
pub fn tidy_state_dir() {
    if mode() == Mode::Rootless {
        let _ = std::fs::remove_dir(crate::state::state_dir());
    }
}

/// Where an ordinary user's labs keep their state records and their artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDirs {
    /// State records: `$XDG_RUNTIME_DIR/lab` when that directory is the user's, else
    /// `/tmp/lab-UID`.
    pub state: PathBuf,
    /// Logs, pcaps and traces: `/var/tmp/lab-UID`.
    pub artifacts: PathBuf,
}

impl UserDirs {
    /// The directories of user `uid` (nothing is created).
    pub fn of(uid: u32) -> UserDirs {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| {
                d.is_absolute()
                    && std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == uid)
            });
        UserDirs {
            state: runtime.map_or_else(
                || PathBuf::from(format!("/tmp/lab-{uid}")),
                |d| d.join("lab"),
            ),
            artifacts: PathBuf::from(format!("/var/tmp/lab-{uid}")),
        }
    }
}

/// Creates `dir` (mode 0700) or checks that it is a directory of `uid`'s, not a symbolic
/// link: both live in directories every user may write.
fn own_dir(dir: &Path, uid: u32) -> Result<(), LabError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let m = std::fs::symlink_metadata(dir).map_err(|e| LabError::io(dir, e))?;
            if m.is_dir() && m.uid() == uid {
                Ok(())
            } else {
                Err(LabError::Rootless(format!(
                    "{} exists and is not a directory of uid {uid}: remove it or set LAB_STATE_DIR and LAB_ARTIFACTS",
                    dir.display()
                )))
            }
        }
        Err(e) => Err(LabError::io(dir, e)),
    }
}

/// For an ordinary user: creates the state and artifact directories and points
/// `LAB_STATE_DIR` and `LAB_ARTIFACTS` at them (unless already set), so this process and every
/// `lab` it starts, inside a user namespace or not, use the same ones. Nothing for root.
///
/// Must run before the process has a second thread (it sets environment variables).
pub fn prepare_dirs() -> Result<(), LabError> {
    user_dirs(true)
}

/// Like [`prepare_dirs`] for a command that only reads or removes records (`lab list`,
/// `clean`, `down`, `run --sim`): the variables are set, nothing is created.
pub fn name_dirs() -> Result<(), LabError> {
    user_dirs(false)
}

fn user_dirs(create: bool) -> Result<(), LabError> {
    if mode() != Mode::Rootless {
        return Ok(());
    }
    let uid = nix::unistd::getuid().as_raw();
    let dirs = UserDirs::of(uid);
    for (var, dir) in [
        ("LAB_STATE_DIR", &dirs.state),
        ("LAB_ARTIFACTS", &dirs.artifacts),
    ] {
        if std::env::var_os(var).is_none() {
            if create {
                own_dir(dir, uid)?;
            }
            // SAFETY: the caller guarantees this process has one thread.
            unsafe { std::env::set_var(var, dir) };
        }
    }
    Ok(())
}

fn sys(step: &str, r: nix::Result<()>) -> Result<(), LabError> {
    r.map_err(|e| LabError::Rootless(format!("{step}: {}", e.desc())))
}

fn write_proc(file: &str, text: &str) -> Result<(), LabError> {
    std::fs::write(file, text).map_err(|e| LabError::Rootless(format!("writing {file}: {e}")))
}

/// Unshares a user, mount and network namespace and sets them up (module docs). The calling
/// process must have one thread.
fn unshare_set() -> Result<(), LabError> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    // The directory holding the state directory ($XDG_RUNTIME_DIR), when it lies under /run,
    // is opened before /run is covered. The parent, not the state directory itself: `lab
    // down` removes that when it is empty, which must not take a mount with it.
    let state = crate::state::state_dir();
    let keep_dir = state
        .parent()
        .filter(|p| p.starts_with("/run") && *p != Path::new("/run"));
    let keep = if let Some(dir) = keep_dir {
        let fd = nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| LabError::io(dir, e.into()))?;
        Some((dir.to_path_buf(), fd))
    } else {
        None
    };
    sys(
        "unshare(user namespace)",
        unshare(CloneFlags::CLONE_NEWUSER),
    )
    .map_err(|e| match e {
        LabError::Rootless(m) => LabError::Rootless(format!(
            "{m} (user namespaces are not allowed here: `lab doctor` says why)"
        )),
        e => e,
    })?;
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("0 {uid} 1"))?;
    write_proc("/proc/self/gid_map", &format!("0 {gid} 1"))?;
    // The network namespace after the mapping: its /proc/net files belong to the namespace's
    // root only if that root is mapped when it is created (else to the machine's, unreadable).
    sys(
        "unshare(mount, network namespaces)",
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET),
    )?;
    let none: Option<&str> = None;
    sys(
        "making mounts private",
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none),
    )?;
    sys(
        "mounting a private /run",
        mount(
            Some("tmpfs"),
            "/run",
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        ),
    )?;
    if let Some((dir, fd)) = keep {
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
        sys(
            &format!("binding {} into the private /run", dir.display()),
            mount(
                Some(source.as_str()),
                &dir,
                none,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                none,
            ),
        )?;
    }
    sys(
        "mounting the private network namespace's /sys",
        mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            none,
        ),
    )?;
    loopback_up()
}

/// Sets `lo` up in the current network namespace (SIOCSIFFLAGS).
fn loopback_up() -> Result<(), LabError> {
    // SAFETY: a plain socket; the fd is owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(LabError::Rootless(format!(
            "socket: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `raw` is a new fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; all zeroes is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `req`, which outlives the calls.
    let ok = unsafe {
        libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) == 0 && {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) == 0
        }
    };
    if ok {
        Ok(())
    } else {
        Err(LabError::Rootless(format!(
            "setting lo up: {}",
            std::io::Error::last_os_error()
        )))
    }
}

static ENTERED: OnceLock<()> = OnceLock::new();
static HOLDER: OnceLock<ProcessId> = OnceLock::new();

/// Moves this process into a user, mount and network namespace of its own (module docs), as
/// root there. Its labs live and end with it; `LAB_USERNS_HOLDER` names it to the `lab`s it
/// starts, whose labs it holds too. The process must have one thread.
pub fn enter_private() -> Result<(), LabError> {
    prepare_dirs()?;
    unshare_set()?;
    let me = ProcessId::current();
    // SAFETY: the caller guarantees this process has one thread.
    unsafe { std::env::set_var(HOLDER_VAR, format!("{}:{}", me.pid, me.start_time)) };
    let _ = ENTERED.set(());
    Ok(())
}

/// Names the process that entered a private set of namespaces, for the `lab`s it starts.
const HOLDER_VAR: &str = "LAB_USERNS_HOLDER";

/// The record of a lab made now: `None` as the machine's root; inside a user namespace, the
/// process that holds it (the holder this process joined, the process that entered the
/// namespaces and started this one, or this process).
pub fn userns_record() -> Option<crate::state::UsernsRecord> {
    if mode() == Mode::Root {
        return None;
    }
    let user_ns = current_user_ns()?;
    if let Some(holder) = joined_holder() {
        return Some(crate::state::UsernsRecord {
            holder,
            dedicated: true,
            user_ns,
        });
    }
    let inherited = std::env::var(HOLDER_VAR).ok().and_then(|v| {
        let (pid, start) = v.split_once(':')?;
        let id = ProcessId {
            pid: pid.parse().ok()?,
            start_time: start.parse().ok()?,
        };
        (id.alive() && user_ns_of(id.pid) == Some(user_ns)).then_some(id)
    });
    Some(crate::state::UsernsRecord {
        holder: inherited.unwrap_or_else(ProcessId::current),
        dedicated: false,
        user_ns,
    })
}

/// True when this process entered namespaces of its own with [`enter_private`].
pub fn entered_private() -> bool {
    ENTERED.get().is_some()
}

/// Starts a holder process for a persistent lab: it unshares a user, mount and network
/// namespace (set up as [`enter_private`] does), then only waits, in a session of its own with
/// its input and output on /dev/null, until `lab down` stops it. Returns once the namespaces
/// are ready. The calling process must have one thread.
pub fn spawn_holder() -> Result<ProcessId, LabError> {
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| LabError::Rootless(format!("pipe: {e}")))
    };
    // report: the holder says whether its namespaces are ready; commit: `lab up` says that the
    // lab's record, which names the holder, exists.
    let (report_read, report_write) = pipe()?;
    let (commit_read, commit_write) = pipe()?;
    // SAFETY: this process has one thread (the caller's guarantee), so the child may run any code.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(LabError::Rootless(format!("fork: {e}"))),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(report_read);
            drop(commit_write);
            // Only its two pipes stay open: a descriptor inherited from whoever ran `lab up`
            // (a pipe someone waits on to close) must not live as long as the lab.
            close_all_but(&[report_write.as_raw_fd(), commit_read.as_raw_fd()]);
            let mut report = std::fs::File::from(report_write);
            let outcome = holder_setup();
            let message = match &outcome {
                Ok(()) => String::new(),
                Err(e) => e.to_string(),
            };
            let _ = report.write_all(message.as_bytes());
            drop(report);
            if outcome.is_err() {
                std::process::exit(1);
            }
            // A `lab up` killed before the record existed would leave a holder nobody knows
            // of: without the commit byte (end of file instead), the holder ends.
            let mut byte = [0u8; 1];
            let committed = matches!(std::fs::File::from(commit_read).read(&mut byte), Ok(1));
            if !committed {
                std::process::exit(0);
            }
            loop {
                nix::unistd::pause();
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(report_write);
            drop(commit_read);
            let mut message = String::new();
            let _ = std::fs::File::from(report_read).read_to_string(&mut message);
            if !message.is_empty() {
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(LabError::Rootless(format!(
                    "the lab's holder process: {message}"
                )));
            }
            let id = ProcessId::of(child.as_raw()).ok_or_else(|| {
                LabError::Rootless("the lab's holder process ended as it started".into())
            })?;
            if let Ok(mut pending) = COMMIT.lock() {
                *pending = Some(std::fs::File::from(commit_write));
            }
            Ok(id)
        }
    }
}

/// The write end of the commit pipe of the holder this process started, until the lab's
/// record names the holder.
static COMMIT: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

/// Tells the holder this process started ([`spawn_holder`]) that the lab's record names it, so
/// it stays when this process ends: called once the record exists. Nothing when no holder
/// waits.
pub fn commit_holder() {
    if let Ok(mut pending) = COMMIT.lock()
        && let Some(mut pipe) = pending.take()
    {
        let _ = pipe.write_all(b"1");
    }
}

/// Closes every descriptor from 3 up but those in `keep` (in a child after fork).
fn close_all_but(keep: &[i32]) {
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: closing a descriptor this process no longer uses (the directory's own
        // descriptor is already closed, or closing it fails harmlessly).
        unsafe { libc::close(fd) };
    }
}

/// The holder's side of [`spawn_holder`]: detach, then the namespaces.
fn holder_setup() -> Result<(), LabError> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| LabError::io(Path::new("/dev/null"), e))?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this (single-threaded) process.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    let _ = nix::unistd::setsid();
    if let Ok(name) = CString::new("lab-holder") {
        // SAFETY: PR_SET_NAME copies at most 16 bytes from a valid C string.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    }
    unshare_set()?;
    // It would keep `lab up`'s directory busy for as long as the lab lives.
    std::env::set_current_dir("/").map_err(|e| LabError::io(Path::new("/"), e))
}

/// Joins the user, mount and network namespaces of `holder` (a lab's holder process, or the
/// process that owns the lab), keeping the working directory. The process must have one thread.
pub fn join(holder: ProcessId) -> Result<(), LabError> {
    use nix::sched::{CloneFlags, setns};
    let gone = || {
        LabError::Rootless(format!(
            "the process holding the lab's namespaces ({}) is gone: `lab clean` removes what is left",
            holder.pid
        ))
    };
    if !holder.holds_namespaces() {
        return Err(gone());
    }
    // It may end from one moment to the next.
    let open = |kind: &str| {
        let path = format!("/proc/{}/ns/{kind}", holder.pid);
        std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => gone(),
            _ => LabError::io(Path::new(&path), e),
        })
    };
    let (user, mnt, net) = (open("user")?, open("mnt")?, open("net")?);
    let cwd = std::env::current_dir().ok();
    sys(
        "entering the lab's user namespace",
        setns(&user, CloneFlags::CLONE_NEWUSER),
    )?;
    sys(
        "entering the lab's mount namespace",
        setns(&mnt, CloneFlags::CLONE_NEWNS),
    )?;
    sys(
        "entering the lab's network namespace",
        setns(&net, CloneFlags::CLONE_NEWNET),
    )?;
    // Entering a mount namespace moves the working directory to its root.
    if let Some(cwd) = cwd {
        let _ = std::env::set_current_dir(cwd);
    }
    let _ = HOLDER.set(holder);
    Ok(())
}

/// The holder this process joined or started, if any.
pub fn joined_holder() -> Option<ProcessId> {
    HOLDER.get().copied()
}

/// For test binaries ([`crate::rootless_test_binary`]): an ordinary user's test process enters
/// namespaces of its own before `main`, so privileged tests run as root inside them. What went
/// wrong, if anything, is kept for [`crate::testing::privileged`] to report.
#[doc(hidden)]
pub fn enter_for_tests() {
    if mode() != Mode::Rootless || std::env::var("LAB_ROOTLESS").as_deref() == Ok("0") {
        return;
    }
    if let Err(e) = enter_private() {
        let _ = TEST_FAILURE.set(e.to_string());
    }
}

static TEST_FAILURE: OnceLock<String> = OnceLock::new();

/// Why a test binary could not enter its namespaces, if it tried and failed.
pub fn test_failure() -> Option<&'static str> {
    TEST_FAILURE.get().map(String::as_str)
}

/// Makes a test binary's privileged tests run for an ordinary user: before `main` (while the
/// process has one thread), it enters a user, mount and network namespace of its own
/// ([`enter_private`]). Nothing happens for root. Put it once at the top of a test crate.
#[macro_export]
macro_rules! rootless_test_binary {
    () => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static LAB_ROOTLESS_TEST_BINARY: extern "C" fn() = {
            extern "C" fn enter() {
                $crate::rootless::enter_for_tests();
            }
            enter
        };
    };
}
