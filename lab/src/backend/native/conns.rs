//! Long-lived connections and the echo server they talk to: the `connections` step and
//! `start = "tcp-echo"`, as threads whose sockets were created inside their hosts.
//!
//! A connections group is one thread polling all of its sockets: every `interval` each open
//! connection sends `<group> <n> <seq>` and waits for the echo `<backend>: <same line>`. The
//! first answer names the connection's backend; an answer from another backend, a reset or a
//! close breaks it; an answer later than `stall` (or none while overdue) marks it stalled. The
//! counts are what a `tally` step reads.

use super::tasks::{Log, Task, bind_error, poll_readable_for, printable, update};
use crate::Lab;
use crate::backend::{ConnectionsSpec, Counters, ListenerStats};
use crate::cancel::cancelled;
use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a poll waits at most, so that sends stay on time and the stop flag is seen.
const POLL: Duration = Duration::from_millis(5);

/// Raises this process's soft limit of open files to its hard limit, once: a connections group
/// and the echo servers it talks to hold two descriptors per connection in this process, and
/// several scenarios run at once; an ordinary user's soft limit is often 1024.
fn raise_open_files_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid pointer to a struct we own.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    });
}

/// Starts a TCP echo server in `host`: every line received is answered with `<host>: <line>`.
pub fn tcp_echo(
    lab: &Lab,
    host: &str,
    name: &str,
    addr: SocketAddrV4,
    log: Log,
) -> Result<Task<ListenerStats>, String> {
    raise_open_files_limit();
    let listener = lab
        .run_in(host, || TcpListener::bind(addr))
        .map_err(|e| e.to_string())?
        .map_err(|e| bind_error("listen on", addr, host, e))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    log.line(&format!("echoing on tcp {addr}"));
    let prefix = format!("{host}: ");
    Task::spawn(format!("echo-{name}"), move |stop, stats| {
        struct Conn {
            stream: TcpStream,
            peer: SocketAddr,
            input: Vec<u8>,
            output: Vec<u8>,
        }
        let mut conns: Vec<Conn> = Vec::new();
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) && !cancelled() {
            let mut fds = vec![listener.as_raw_fd()];
            fds.extend(conns.iter().map(|c| c.stream.as_raw_fd()));
            let ready = poll_readable_for(&fds, POLL);
            if ready.contains(&0) {
                while let Ok((stream, peer)) = listener.accept() {
                    let _ = stream.set_nonblocking(true);
                    log.line(&format!("connection from {peer}"));
                    update(&stats, |st: &mut ListenerStats| st.connections += 1);
                    conns.push(Conn {
                        stream,
                        peer,
                        input: Vec::new(),
                        output: Vec::new(),
                    });
                }
            }
            let mut closed = Vec::new();
            for (i, c) in conns.iter_mut().enumerate() {
                if ready.contains(&(i + 1)) {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            log.line(&format!("{} closed the connection", c.peer));
                            closed.push(i);
                            continue;
                        }
                        Ok(n) => {
                            update(&stats, |st: &mut ListenerStats| st.bytes += n as u64);
                            c.input.extend_from_slice(&buf[..n]);
                            while let Some(end) = c.input.iter().position(|&b| b == b'\n') {
                                let line: Vec<u8> = c.input.drain(..=end).collect();
                                c.output.extend_from_slice(prefix.as_bytes());
                                c.output.extend_from_slice(&line);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            log.line(&format!("read from {}: {e}", c.peer));
                            closed.push(i);
                            continue;
                        }
                    }
                }
                if c.output.is_empty() {
                    continue;
                }
                match c.stream.write(&c.output) {
                    Ok(n) => {
                        c.output.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        log.line(&format!("write to {}: {e}", c.peer));
                        closed.push(i);
                    }
                }
            }
            for i in closed.into_iter().rev() {
                conns.remove(i);
            }
        }
        log.line("stopped");
    })
    .map_err(|e| e.to_string())
}

/// The counts of a connections group.
#[derive(Debug, Clone, Default)]
pub struct ConnStats {
    open: u64,
    failed: u64,
    broken: u64,
    stalled: u64,
    exchanges: u64,
    backends: BTreeSet<String>,
}

impl ConnStats {
    /// As a `tally` reading.
    pub fn counters(&self) -> Counters {
        Counters::from([
            ("open".to_string(), self.open),
            ("failed".to_string(), self.failed),
            ("broken".to_string(), self.broken),
            ("stalled".to_string(), self.stalled),
            ("exchanges".to_string(), self.exchanges),
            ("backends".to_string(), self.backends.len() as u64),
        ])
    }
}

/// One connection of a group.
struct Conn {
    n: usize,
    stream: TcpStream,
    local: SocketAddr,
    seq: u64,
    /// The line awaiting its echo, and when it left.
    waiting: Option<(String, Instant)>,
    next_send: Instant,
    backend: Option<String>,
    input: Vec<u8>,
    stalled: bool,
}

/// Opens `spec.count` connections from `host` (one after another, each within
/// `spec.timeout`), then exchanges lines on them from a thread until stopped. Returns the task
/// and a one-line detail.
pub fn connections(
    lab: &Lab,
    host: &str,
    name: &str,
    spec: &ConnectionsSpec,
    log: Log,
) -> Result<(Task<ConnStats>, String), String> {
    raise_open_files_limit();
    let (to, count, timeout) = (SocketAddr::V4(spec.to), spec.count, spec.timeout);
    let opened: Vec<io::Result<TcpStream>> = lab
        .run_in(host, move || {
            (0..count)
                .map(|_| TcpStream::connect_timeout(&to, timeout))
                .collect()
        })
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut conns = Vec::new();
    let mut failed = Vec::new();
    for (n, r) in opened.into_iter().enumerate() {
        let stream = match r.and_then(|s| s.set_nonblocking(true).map(|()| s)) {
            Ok(s) => s,
            Err(e) => {
                log.line(&format!("connection {n}: {e}"));
                failed.push(e.to_string());
                continue;
            }
        };
        let local = stream.local_addr().map_err(|e| e.to_string())?;
        log.line(&format!("connection {n} from {local}: connected"));
        // Spread the sends over the interval, so the group is a steady stream.
        let offset = spec.interval.mul_f64(n as f64 / count as f64);
        conns.push(Conn {
            n,
            stream,
            local,
            seq: 0,
            waiting: None,
            next_send: start + offset,
            backend: None,
            input: Vec::new(),
            stalled: false,
        });
    }
    let detail = match failed.first() {
        None => format!("{count} connected from {host} to {}", spec.to),
        Some(first) => format!(
            "{} of {count} connected from {host} to {}, {} failed (the first: {first})",
            conns.len(),
            spec.to,
            failed.len()
        ),
    };
    let (group, interval, stall) = (name.to_string(), spec.interval, spec.stall);
    let failures = failed.len() as u64;
    let task = Task::spawn(format!("conns-{name}"), move |stop, stats| {
        update(&stats, |st: &mut ConnStats| {
            st.open = conns.len() as u64;
            st.failed = failures;
        });
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) && !cancelled() {
            let now = Instant::now();
            let mut broken: Vec<(usize, String)> = Vec::new();
            for (i, c) in conns.iter_mut().enumerate() {
                match &c.waiting {
                    Some((_, sent)) if !c.stalled && now.duration_since(*sent) > stall => {
                        c.stalled = true;
                        log.line(&format!(
                            "connection {} from {}: no echo for {} ms",
                            c.n,
                            c.local,
                            stall.as_millis()
                        ));
                        update(&stats, |st: &mut ConnStats| st.stalled += 1);
                    }
                    None if now >= c.next_send => {
                        let line = format!("{group} {} {}", c.n, c.seq);
                        match c.stream.write(format!("{line}\n").as_bytes()) {
                            Ok(_) => {
                                c.waiting = Some((line, now));
                                c.seq += 1;
                                // A connection that fell behind (a stall) goes on from now,
                                // not in a burst.
                                c.next_send = (c.next_send + interval).max(now);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => broken.push((i, format!("send: {e}"))),
                        }
                    }
                    _ => {}
                }
            }
            let fds: Vec<i32> = conns.iter().map(|c| c.stream.as_raw_fd()).collect();
            for i in poll_readable_for(&fds, POLL) {
                let c = &mut conns[i];
                match c.stream.read(&mut buf) {
                    Ok(0) => broken.push((i, "closed by the peer".into())),
                    Ok(n) => {
                        c.input.extend_from_slice(&buf[..n]);
                        while let Some(end) = c.input.iter().position(|&b| b == b'\n') {
                            let raw: Vec<u8> = c.input.drain(..=end).collect();
                            let text = String::from_utf8_lossy(&raw[..raw.len() - 1]).into_owned();
                            match echo(c, &text) {
                                Ok(first) => update(&stats, |st: &mut ConnStats| {
                                    st.exchanges += 1;
                                    if let Some(b) = first {
                                        st.backends.insert(b);
                                    }
                                }),
                                Err(why) => {
                                    broken.push((i, why));
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => broken.push((i, e.to_string())),
                }
            }
            broken.sort_by_key(|b| b.0);
            broken.dedup_by_key(|b| b.0);
            for (i, why) in broken.into_iter().rev() {
                let c = conns.remove(i);
                log.line(&format!(
                    "connection {} from {}: broken: {why}",
                    c.n, c.local
                ));
                update(&stats, |st: &mut ConnStats| {
                    st.broken += 1;
                    st.open -= 1;
                });
            }
        }
        log.line("stopped");
    })
    .map_err(|e| e.to_string())?;
    Ok((task, detail))
}

/// Takes an echo line on `c`: `Ok(Some(backend))` for its first answer, `Ok(None)` for a later
/// one, `Err` when it is not the echo of the line sent or comes from another backend.
fn echo(c: &mut Conn, text: &str) -> Result<Option<String>, String> {
    let Some((backend, line)) = text.split_once(": ") else {
        return Err(format!("not an echo: {}", printable(text.as_bytes())));
    };
    match &c.waiting {
        Some((sent, _)) if sent == line => {}
        _ => {
            return Err(format!(
                "an echo of a line not sent: {}",
                printable(text.as_bytes())
            ));
        }
    }
    c.waiting = None;
    match &c.backend {
        None => {
            c.backend = Some(backend.to_string());
            Ok(Some(backend.to_string()))
        }
        Some(b) if b == backend => Ok(None),
        Some(b) => Err(format!("answered by {backend}, its backend was {b}")),
    }
}
