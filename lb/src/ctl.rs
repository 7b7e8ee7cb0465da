//! `lb ctl`: the operator's unix socket on the server and on the agent, both ends.
//!
//! One JSON object per line each way: a [`Request`] in (`{"cmd":"drain","name":"h2"}`, the
//! typed messages of `lb_core::protocol::ctl`), an [`Answer`] out (`{"ok":true,…}` or
//! `{"ok":false,"error":"…"}`), which the client reads back as the type its request calls for.
//! The socket is created mode 0600 (root's tool); a stale file from a crashed run is replaced, a
//! live one is left alone. [`run`] is `lb ctl` itself, the client.

use crate::lines::{LineReader, write_line};
use anyhow::{Context, Result, bail};
use lb_core::protocol::ctl::{
    AgentStatus, Answer, Backends, ControlCounters, Done, Metrics, Refusal, Request, RequestError,
    Role, ServerState, StateAnswer, WireRequest,
};
use serde::Deserialize;
use std::cell::Cell;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

/// Longest request line.
const MAX_REQUEST: usize = 4096;
/// `lb ctl` connections served at once.
const MAX_CLIENTS: usize = 16;

/// A refusal as the answer.
pub fn error(msg: impl std::fmt::Display) -> Answer {
    Refusal::new(msg).into()
}

/// A success with a message, as the answer.
pub fn done(msg: impl std::fmt::Display) -> Answer {
    Done::new(msg).into()
}

/// The refusal of a request that a process in `role` does not serve.
pub fn not_served(req: &Request, role: Role) -> Answer {
    error(RequestError::NotServed {
        verb: req.verb().to_string(),
        role,
    })
}

/// What answers requests.
pub type Handler = Rc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Answer>>>>;

/// A bound ctl socket; the file is removed on drop.
pub struct CtlSocket {
    listener: Option<UnixListener>,
    /// As given: `@name` (abstract) or a file path.
    path: PathBuf,
    /// A file path's socket file and `<path>.lock`, flock()ed while this process owns the path
    /// (the lock is released when the process ends); `None` for an abstract socket.
    file: Option<std::fs::File>,
}

impl CtlSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, for the runtime that serves it.
    pub fn take(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for CtlSocket {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The abstract name of `path` when it is written `@name`: such a socket lives in the network
/// namespace of the process that binds it, has no file, and vanishes with its owner.
fn abstract_name(path: &Path) -> Option<&[u8]> {
    path.as_os_str()
        .as_encoded_bytes()
        .strip_prefix(b"@")
        .filter(|n| !n.is_empty())
}

/// Connects to the ctl socket at `path` (`@name` or a file).
fn connect(path: &Path) -> std::io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    match abstract_name(path) {
        Some(name) => {
            UnixStream::connect_addr(&std::os::unix::net::SocketAddr::from_abstract_name(name)?)
        }
        None => UnixStream::connect(path),
    }
}

/// Binds the ctl socket at `path`. If a live process serves it already, that is an error when
/// the path was given explicitly and a warning (no ctl socket) when it is the default.
///
/// The defaults are abstract sockets (`@lb/server`, `@lb/agent`): they belong to the network
/// namespace of the process, so `lb` processes in different namespaces (the hosts of a lab)
/// never see each other's, and a bind that finds the name taken means a live process holds it.
/// A file path is shared by every namespace of the machine: who owns it is decided by an
/// exclusive `flock` on `<path>.lock`, held for the life of the socket and released by the
/// kernel when the process ends; the holder removes whatever file is in the way (a crashed
/// run's) and binds. The lock file stays (deleting a lock file others may have open is its own
/// race); it is empty.
pub fn bind(path: &Path, explicit: bool) -> Result<Option<CtlSocket>> {
    let served = || -> Result<Option<CtlSocket>> {
        if explicit {
            bail!("ctl socket {}: another process serves it", path.display());
        }
        tracing::warn!(
            "ctl socket {} is served by another process: running without one (give --ctl-socket)",
            path.display()
        );
        Ok(None)
    };
    let (listener, file) = match abstract_name(path) {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)
                .with_context(|| format!("ctl socket name {}", path.display()))?;
            match UnixListener::bind_addr(&addr) {
                Ok(l) => (l, None),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return served(),
                Err(e) => {
                    return Err(e).with_context(|| format!("bind ctl socket {}", path.display()));
                }
            }
        }
        None => match bind_file(path)? {
            Some((l, lock)) => (l, Some(lock)),
            None => return served(),
        },
    };
    listener
        .set_nonblocking(true)
        .context("ctl socket non-blocking")?;
    Ok(Some(CtlSocket {
        listener: Some(listener),
        path: path.to_path_buf(),
        file,
    }))
}

/// A file-path socket, mode 0600, once this process holds `<path>.lock`; `None` if another
/// live process holds it.
fn bind_file(path: &Path) -> Result<Option<(UnixListener, std::fs::File)>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create the directory of {}", path.display()))?;
    }
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("open {}", lock_path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Err(e).with_context(|| format!("lock {}", lock_path.display()));
        }
        return Ok(None);
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!("removed a stale ctl socket {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("remove stale ctl socket {}", path.display()));
        }
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("bind ctl socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))?;
    Ok(Some((listener, lock)))
}

/// The uid of the process at the other end of `stream` (`SO_PEERCRED`).
fn peer_uid(stream: &impl AsRawFd) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes a ucred into the buffer we own, of the length we pass.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    match r {
        0 => Ok(cred.uid),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Whether a peer may use the ctl socket: root, or the user `lb` runs as. An abstract socket
/// has no file mode, so this is what keeps other users of the namespace out.
fn peer_allowed(uid: u32) -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

/// Serves `listener` on the current `LocalSet` for a process in `role` until the task is
/// dropped; requests for the other role are refused before `handler` sees them.
pub async fn serve(listener: UnixListener, role: Role, handler: Handler) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("ctl socket: {e}");
            return;
        }
    };
    let active = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("ctl socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match peer_uid(&stream) {
            Ok(uid) if peer_allowed(uid) => {}
            Ok(uid) => {
                let line = to_line(&error(format!("uid {uid} may not use this socket"))) + "\n";
                let _ = stream.try_write(line.as_bytes());
                continue;
            }
            Err(e) => {
                tracing::warn!("ctl socket: peer credentials: {e}");
                continue;
            }
        }
        if active.get() >= MAX_CLIENTS {
            let line = to_line(&error("too many ctl clients")) + "\n";
            let _ = stream.try_write(line.as_bytes());
            continue;
        }
        active.set(active.get() + 1);
        let (active, handler) = (Rc::clone(&active), Rc::clone(&handler));
        tokio::task::spawn_local(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = LineReader::new(r, MAX_REQUEST);
            loop {
                let line = match tokio::time::timeout(Duration::from_secs(60), lines.next()).await {
                    Ok(Ok(l)) => l,
                    Ok(Err(crate::lines::LineError::TooLong(n))) => {
                        let e = error(format!("request longer than {n} bytes"));
                        let _ = write_line(&mut w, &to_line(&e), Duration::from_secs(5)).await;
                        break;
                    }
                    _ => break,
                };
                let answer = match serde_json::from_str::<WireRequest>(&line) {
                    Ok(wire) => match wire.for_role(role) {
                        Ok(req) => match req.refused_by(role) {
                            None => handler(req).await,
                            Some(refusal) => refusal.into(),
                        },
                        Err(e) => error(e),
                    },
                    Err(e) => error(format!("bad request: {e}")),
                };
                if write_line(&mut w, &to_line(&answer), Duration::from_secs(5))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            active.set(active.get() - 1);
        });
    }
}

/// An answer as one line of JSON (without the `\n`).
fn to_line(a: &Answer) -> String {
    serde_json::to_string(a).unwrap_or_else(|e| {
        // Not reachable: every answer is plain data with string keys.
        serde_json::to_string(&Refusal::new(format!("answer not serializable: {e}")))
            .unwrap_or_default()
    })
}

/// Sends one request to the socket at `path` and returns the answer's line, unparsed.
pub fn call(path: &Path, req: &Request) -> Result<String> {
    let s = connect(path).with_context(|| {
        format!(
            "cannot reach {} (is lb running there? see --socket)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    // A server that refuses the peer answers at once and closes: the request's write may then
    // fail while the refusal is already waiting to be read.
    let written = (&s).write_all(line.as_bytes());
    let mut answer = String::new();
    let read = BufReader::new(&s).read_line(&mut answer);
    if answer.is_empty() {
        written.with_context(|| format!("write to {}", path.display()))?;
        read.with_context(|| format!("read from {}", path.display()))?;
        bail!("{} closed without answering", path.display());
    }
    answer.truncate(answer.trim_end().len());
    Ok(answer)
}

/// What the client reads from `req`'s answer once it is served.
#[derive(Debug, Clone, PartialEq)]
pub enum Served {
    /// `state`.
    State(Box<StateAnswer>),
    /// `backends`.
    Backends(Backends),
    /// `metrics`.
    Metrics(Metrics),
    /// Everything else.
    Done(Done),
}

/// What every answer says: served or not.
#[derive(Deserialize)]
struct Outcome {
    ok: bool,
}

/// Reads `line`, the answer to `req`: the typed answer the request calls for, or the refusal.
pub fn parse_answer(req: &Request, line: &str) -> Result<Result<Served, Refusal>> {
    let outcome: Outcome = serde_json::from_str(line).context("not an answer")?;
    if !outcome.ok {
        return Ok(Err(serde_json::from_str(line).context("not a refusal")?));
    }
    Ok(Ok(match req {
        Request::State => {
            Served::State(serde_json::from_str(line).context("not a `state` answer")?)
        }
        Request::Backends => {
            Served::Backends(serde_json::from_str(line).context("not a `backends` answer")?)
        }
        Request::Metrics => {
            Served::Metrics(serde_json::from_str(line).context("not a `metrics` answer")?)
        }
        _ => Served::Done(serde_json::from_str(line).context("not an answer with a message")?),
    }))
}

/// A request the other end refused (exit code 2, like bad input).
#[derive(Debug, thiserror::Error)]
#[error("{verb}: {reason}")]
pub struct Refused {
    /// The request's verb.
    pub verb: &'static str,
    /// The answer's `error`.
    pub reason: String,
}

/// `lb ctl`: sends `req` to the socket at `path` and prints the answer, as JSON if `json`
/// (the line as received).
pub fn run(path: &Path, req: &Request, json: bool) -> Result<()> {
    let line = call(path, req)?;
    let answer =
        parse_answer(req, &line).with_context(|| format!("answer from {}", path.display()))?;
    if json {
        println!("{line}");
    }
    match answer {
        Err(refusal) => bail!(Refused {
            verb: req.verb(),
            reason: refusal.error,
        }),
        Ok(served) => {
            if !json {
                print!("{}", render(&served));
            }
            Ok(())
        }
    }
}

/// Human rendering of a served answer.
pub fn render(a: &Served) -> String {
    match a {
        Served::Done(d) => format!("{}\n", d.message),
        Served::Backends(b) => render_backends(b),
        Served::Metrics(m) => m.text.clone(),
        Served::State(s) => match s.as_ref() {
            StateAnswer::Server(s) => render_rows(&server_rows(s), 0),
            StateAnswer::Agent(s) => render_rows(&agent_rows(s), 0),
        },
    }
}

fn render_backends(b: &Backends) -> String {
    let rows: Vec<Vec<String>> = b
        .backends
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.addr.to_string(),
                b.origin.name().into(),
                b.status.name().into(),
                b.health.name().into(),
                b.weight.to_string(),
                b.packets.to_string(),
                b.bytes.to_string(),
                b.flows.to_string(),
                b.tracked.to_string(),
            ]
        })
        .collect();
    let head = [
        "NAME", "ADDR", "ORIGIN", "STATUS", "HEALTH", "WEIGHT", "PACKETS", "BYTES", "FLOWS",
        "TRACKED",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        l.truncate(l.trim_end().len());
        l + "\n"
    };
    let mut out = line(head.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        out.push_str("(no backends)\n");
    }
    out
}

/// One line of a `state` answer for a person: a value, or a group of lines under its key.
enum Item {
    Value(String),
    Group(Rows),
}

/// `key: value` lines, in the order shown.
type Rows = Vec<(String, Item)>;

fn rows<const N: usize>(r: [(&str, Item); N]) -> Rows {
    r.into_iter().map(|(k, c)| (k.to_string(), c)).collect()
}

fn num(n: u64) -> Item {
    Item::Value(n.to_string())
}

fn flag(b: bool) -> Item {
    Item::Value(b.to_string())
}

/// Seconds: three decimals are enough for a person.
fn secs(s: f64) -> Item {
    Item::Value(format!("{s:.3}"))
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Item) -> Item {
    v.map_or_else(|| Item::Value("-".into()), f)
}

fn text(s: impl ToString) -> Item {
    Item::Value(s.to_string())
}

/// A server's `state`, keys in alphabetical order (as the untyped version printed them).
fn server_rows(s: &ServerState) -> Rows {
    let c: &ControlCounters = &s.control_counters;
    rows([
        ("active_checks", opt(s.active_checks, |p| num(p.into()))),
        ("auth", flag(s.auth)),
        ("backends", num(s.backends)),
        ("control", opt(s.control, text)),
        (
            "control_counters",
            Item::Group(rows([
                ("accepted", num(c.accepted)),
                ("auth_failures", num(c.auth_failures)),
                ("deregistrations", num(c.deregistrations)),
                ("handshake_timeouts", num(c.handshake_timeouts)),
                ("invalid", num(c.invalid)),
                ("read_timeouts", num(c.read_timeouts)),
                ("refused_busy", num(c.refused_busy)),
                ("evicted", num(c.evicted)),
                ("registrations", num(c.registrations)),
            ])),
        ),
        ("data_path", text(&s.data_path)),
        (
            "fast_path",
            match &s.fast_path {
                Some(f) => Item::Group(rows([
                    ("flows", num(f.flows)),
                    ("added", num(f.added)),
                    ("removed", num(f.removed)),
                    ("kernel_packets", num(f.kernel_packets)),
                    ("refused", num(f.refused)),
                ])),
                None => text("off"),
            },
        ),
        (
            "drops",
            Item::Group(s.drops.iter().map(|(r, n)| (r.clone(), num(*n))).collect()),
        ),
        ("flows_moved", num(s.flows_moved)),
        ("previous_table", num(s.previous_table)),
        ("pending_connections", num(s.pending_connections)),
        ("received", num(s.received)),
        ("registered", num(s.registered)),
        ("role", text(s.role.name())),
        ("send_failed", num(s.send_failed)),
        ("sent", num(s.sent)),
        (
            "table_fingerprint",
            opt(s.table_fingerprint.as_deref(), text),
        ),
        ("tracked_flows", num(s.tracked_flows)),
        ("uptime_s", secs(s.uptime_s)),
        ("vip", text(s.vip)),
    ])
}

/// An agent's `state`, keys in alphabetical order (as the untyped version printed them).
fn agent_rows(s: &AgentStatus) -> Rows {
    rows([
        ("auth", flag(s.auth)),
        ("data_ip", opt(s.data_ip, text)),
        ("inject_failed", num(s.inject_failed)),
        ("injected", num(s.injected)),
        ("last_error", opt(s.last_error.as_deref(), text)),
        ("name", text(&s.name)),
        ("pause_requested", flag(s.pause_requested)),
        ("received", num(s.received)),
        ("refused", num(s.refused)),
        ("registered_for_s", opt(s.registered_for_s, secs)),
        ("registrations", num(s.registrations)),
        ("role", text(s.role.name())),
        ("sanity", num(s.sanity)),
        ("server", opt(s.server, text)),
        ("state", text(s.state.name())),
    ])
}

/// `key: value` lines with the values aligned, groups indented under their key (an empty
/// group shows as `-`).
fn render_rows(rows: &Rows, depth: usize) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let pad = "  ".repeat(depth);
    let mut out = String::new();
    for (k, cell) in rows {
        let key = format!("{k}:");
        match cell {
            Item::Group(inner) if !inner.is_empty() => {
                out.push_str(&format!("{pad}{key}\n"));
                out.push_str(&render_rows(inner, depth + 1));
            }
            Item::Group(_) => out.push_str(&format!("{pad}{key:<width$} -\n")),
            Item::Value(v) => out.push_str(&format!("{pad}{key:<width$} {v}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(req: Request, line: &str) -> Served {
        parse_answer(&req, line).unwrap().unwrap()
    }

    #[test]
    fn renders_a_backend_table() {
        let line = r#"{"ok":true,"backends":[{"name":"h2","addr":"10.0.0.2","origin":"agent",
            "status":"active","weight":1,"health":"up","checks":3,"last_check_error":null,
            "drain_remaining_s":null,"packets":10,"bytes":600,"flows":2,"tracked":1}]}"#;
        let t = render(&served(Request::Backends, line));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME  ADDR"), "{t}");
        assert!(lines[1].starts_with("h2    10.0.0.2  agent"), "{t}");
        assert_eq!(
            render(&served(Request::Backends, r#"{"ok":true,"backends":[]}"#)),
            "NAME  ADDR  ORIGIN  STATUS  HEALTH  WEIGHT  PACKETS  BYTES  FLOWS  TRACKED\n\
             (no backends)\n"
        );
        assert_eq!(
            render(&served(Request::Pause, r#"{"ok":true,"message":"paused"}"#)),
            "paused\n"
        );
    }

    #[test]
    fn renders_agent_state_aligned_with_short_numbers() {
        let line = r#"{"ok":true,"role":"agent","name":"h2","state":"Active",
            "server":"10.0.0.1:1338","auth":false,"data_ip":"10.0.0.2",
            "registered_for_s":1.821847557,"registrations":1,"pause_requested":false,
            "last_error":null,"received":5,"injected":4,"inject_failed":0,"refused":1,
            "sanity":1}"#;
        assert_eq!(
            render(&served(Request::State, line)),
            "auth:             false\n\
             data_ip:          10.0.0.2\n\
             inject_failed:    0\n\
             injected:         4\n\
             last_error:       -\n\
             name:             h2\n\
             pause_requested:  false\n\
             received:         5\n\
             refused:          1\n\
             registered_for_s: 1.822\n\
             registrations:    1\n\
             role:             agent\n\
             sanity:           1\n\
             server:           10.0.0.1:1338\n\
             state:            Active\n"
        );
    }

    #[test]
    fn renders_server_state_with_groups() {
        let line = r#"{"ok":true,"role":"server","vip":"10.0.0.50","data_path":"nfqueue 0",
            "control":null,"auth":false,"active_checks":8080,"uptime_s":2.5,"backends":1,
            "registered":0,"pending_connections":0,"tracked_flows":0,"received":0,"sent":0,
            "send_failed":0,"flows_moved":0,"drops":{},"control_counters":{"accepted":2,
            "refused_busy":0,"invalid":0,"handshake_timeouts":0,"auth_failures":0,
            "registrations":0,"deregistrations":0,"read_timeouts":0}}"#;
        let t = render(&served(Request::State, line));
        assert!(
            t.starts_with(
                "active_checks:       8080\n\
                 auth:                false\n\
                 backends:            1\n\
                 control:             -\n\
                 control_counters:\n\
                 \x20 accepted:           2\n\
                 \x20 auth_failures:      0\n"
            ),
            "{t}"
        );
        assert!(t.contains("\ndrops:               -\n"), "{t}");
        assert!(t.contains("\nuptime_s:            2.500\n"), "{t}");
        assert!(t.ends_with("vip:                 10.0.0.50\n"), "{t}");
    }

    #[test]
    fn a_refusal_is_read_whatever_was_asked() {
        let line = r#"{"ok":false,"error":"no backend h9"}"#;
        for req in [Request::State, Request::Backends, Request::Pause] {
            assert_eq!(
                parse_answer(&req, line).unwrap(),
                Err(Refusal::new("no backend h9"))
            );
        }
        assert!(parse_answer(&Request::Backends, r#"{"ok":true,"message":"x"}"#).is_err());
        assert!(parse_answer(&Request::State, "not json").is_err());
    }

    /// Agents in the hosts of parallel labs share /run/lb: two binds of one default path at
    /// once must give one socket and one warning, never an error (seen as "Address already in
    /// use" failing a scenario in 1 of 20 runs of ci/scenarios-20x.sh).
    #[test]
    fn concurrent_binds_of_the_default_path_give_one_socket_and_no_error() {
        let dir = std::env::temp_dir().join(format!("lb-ctl-bind-{}", std::process::id()));
        let path = dir.join("agent.sock");
        for round in 0..50 {
            let _ = std::fs::remove_file(&path);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let binds: Vec<_> = (0..4)
                .map(|_| {
                    let (path, barrier) = (path.clone(), std::sync::Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        bind(&path, false).map_err(|e| format!("{e:#}"))
                    })
                })
                .collect();
            let results: Vec<_> = binds.into_iter().map(|t| t.join().unwrap()).collect();
            let bound = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
            assert!(
                results.iter().all(|r| r.is_ok()),
                "round {round}: {:?}",
                results
                    .iter()
                    .filter_map(|r| r.as_ref().err())
                    .collect::<Vec<_>>()
            );
            assert_eq!(
                bound, 1,
                "round {round}: exactly one process serves the socket"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_abstract_socket_has_one_owner_and_no_file() {
        let name = PathBuf::from(format!("@lb-test/{}", std::process::id()));
        let first = bind(&name, true).unwrap().expect("the name is free");
        assert!(!Path::new(&name).exists(), "no file is created");
        assert!(bind(&name, false).unwrap().is_none(), "default: a warning");
        let e = bind(&name, true).err().expect("explicit: an error");
        assert!(
            format!("{e:#}").contains("another process serves it"),
            "{e:#}"
        );
        assert!(connect(&name).is_ok(), "a client reaches it");
        drop(first);
        assert!(connect(&name).is_err(), "gone with its owner");
        assert!(bind(&name, true).unwrap().is_some(), "and free again");
    }

    #[test]
    fn only_root_and_our_own_user_may_use_the_socket() {
        assert!(peer_allowed(0));
        // SAFETY: geteuid cannot fail.
        assert!(peer_allowed(unsafe { libc::geteuid() }));
        assert!(!peer_allowed(65534) || unsafe { libc::geteuid() } == 65534);
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_kept() {
        let dir = std::env::temp_dir().join(format!("lb-ctl-stale-{}", std::process::id()));
        let path = dir.join("server.sock");
        std::fs::create_dir_all(&dir).unwrap();
        // A crashed run's file: bound once, nobody listening any more.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let first = bind(&path, true).unwrap();
        assert!(first.is_some(), "the stale file is replaced");
        assert!(
            bind(&path, false).unwrap().is_none(),
            "default path: a warning"
        );
        let e = bind(&path, true).err().expect("explicit path: an error");
        assert!(
            format!("{e:#}").contains("another process serves it"),
            "{e:#}"
        );
        drop(first);
        assert!(!path.exists(), "the socket is removed when its owner ends");
        assert!(
            bind(&path, true).unwrap().is_some(),
            "and the path is free again"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn answers_are_written_as_one_line() {
        assert_eq!(
            to_line(&error("bad request")),
            r#"{"ok":false,"error":"bad request"}"#
        );
        assert_eq!(
            to_line(&done("paused")),
            r#"{"ok":true,"message":"paused"}"#
        );
    }
}
