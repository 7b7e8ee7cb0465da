//! What steps run inside hosts: listener threads, telnet, UDP bursts, readiness probes.
//!
//! Sockets are created inside the host's namespace (`Lab::run_in`) and then served from a
//! thread of their own; every loop polls with a short timeout so that [`Task::stop`] (and a
//! cancelled run) ends it promptly. Each task writes a log file like a process would.

use crate::Lab;
use crate::backend::{ListenerStats, Proto, TelnetOutcome, TelnetResult};
use crate::cancel::{cancelled, pause};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often loops look at their stop flag.
const TICK: Duration = Duration::from_millis(20);

/// A line-oriented log file shared with a thread.
#[derive(Clone)]
pub struct Log(Arc<Mutex<File>>);

impl Log {
    /// Creates (truncates) the log file.
    pub fn create(path: &Path) -> io::Result<Log> {
        Ok(Log(Arc::new(Mutex::new(File::create(path)?))))
    }

    /// Appends one line.
    pub fn line(&self, text: &str) {
        if let Ok(mut f) = self.0.lock() {
            let _ = writeln!(f, "{text}");
        }
    }
}

/// Shared counts of a task and the condition variable that signals their changes.
pub type Shared<S> = Arc<(Mutex<S>, Condvar)>;

/// A background thread serving a socket in a host, stopped with [`Task::stop`].
pub struct Task<S> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Shared<S>,
}

impl<S: Clone + Default + Send + 'static> Task<S> {
    /// The counts so far.
    pub fn stats(&self) -> S {
        self.stats.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until `done(stats)` holds or `timeout` passes; returns the last stats and
    /// whether it held.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&S) -> bool) -> (S, bool) {
        let end = Instant::now() + timeout;
        let (lock, cv) = &*self.stats;
        let mut g = match lock.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        loop {
            if done(&g) {
                return (g.clone(), true);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || cancelled() {
                return (g.clone(), false);
            }
            g = match cv.wait_timeout(g, left.min(TICK)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Runs `f` on a new thread with the stop flag and the shared counts.
    pub fn spawn(
        name: String,
        f: impl FnOnce(Arc<AtomicBool>, Shared<S>) + Send + 'static,
    ) -> io::Result<Task<S>> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new((Mutex::new(S::default()), Condvar::new()));
        let (s, st) = (Arc::clone(&stop), Arc::clone(&stats));
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || f(s, st))?;
        Ok(Task {
            stop,
            thread: Some(thread),
            stats,
        })
    }
}

impl<S> Drop for Task<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Changes the shared counts and wakes waiters.
pub fn update<S>(stats: &(Mutex<S>, Condvar), f: impl FnOnce(&mut S)) {
    if let Ok(mut g) = stats.0.lock() {
        f(&mut g);
    }
    stats.1.notify_all();
}

/// poll(2) on `fds` for input, `TICK` at most; returns the readable ones' indexes.
pub fn poll_readable(fds: &[i32]) -> Vec<usize> {
    poll_readable_for(fds, TICK)
}

/// poll(2) on `fds` for input, `timeout` at most; returns the readable ones' indexes.
pub fn poll_readable_for(fds: &[i32], timeout: Duration) -> Vec<usize> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of pollfd for the duration of the call.
    let n = unsafe {
        libc::poll(
            p.as_mut_ptr(),
            p.len() as libc::nfds_t,
            timeout.as_millis() as i32,
        )
    };
    if n <= 0 {
        return vec![];
    }
    p.iter()
        .enumerate()
        .filter(|(_, x)| x.revents != 0)
        .map(|(i, _)| i)
        .collect()
}

/// Text for a log line: printable ASCII kept, the rest escaped.
pub fn printable(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Starts a TCP listener in `host`: accepts connections, logs and counts what arrives, sends
/// `reply` once per connection after its first data, closes a connection when its peer does.
pub fn tcp_listener(
    lab: &Lab,
    host: &str,
    name: &str,
    addr: SocketAddrV4,
    reply: Option<String>,
    log: Log,
) -> Result<Task<ListenerStats>, String> {
    let listener = lab
        .run_in(host, || TcpListener::bind(addr))
        .map_err(|e| e.to_string())?
        .map_err(|e| bind_error("listen on", addr, host, e))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    log.line(&format!("listening on tcp {addr}"));
    Task::spawn(format!("tcp-{name}"), move |stop, stats| {
        struct Conn {
            stream: TcpStream,
            peer: SocketAddr,
            replied: bool,
            /// The reply is sent but not yet acknowledged by the client.
            ack_pending: bool,
        }
        let mut conns: Vec<Conn> = Vec::new();
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) && !cancelled() {
            let mut fds = vec![listener.as_raw_fd()];
            fds.extend(conns.iter().map(|c| c.stream.as_raw_fd()));
            // While a reply waits for its ACK, look again soon: a client may be waiting on it.
            let pending = conns.iter().any(|c| c.ack_pending);
            let ready = poll_readable_for(
                &fds,
                if pending {
                    Duration::from_millis(1)
                } else {
                    TICK
                },
            );
            if ready.contains(&0) {
                while let Ok((stream, peer)) = listener.accept() {
                    let _ = stream.set_nonblocking(true);
                    log.line(&format!("connection from {peer}"));
                    update(&stats, |st: &mut ListenerStats| st.connections += 1);
                    conns.push(Conn {
                        stream,
                        peer,
                        replied: false,
                        ack_pending: false,
                    });
                }
            }
            let mut closed = Vec::new();
            for (i, c) in conns.iter_mut().enumerate() {
                if c.ack_pending && unacknowledged(&c.stream) == Some(0) {
                    c.ack_pending = false;
                    log.line(&format!("{} acknowledged the reply", c.peer));
                    update(&stats, |st: &mut ListenerStats| st.replies_acked += 1);
                }
                if !ready.contains(&(i + 1)) {
                    continue;
                }
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        log.line(&format!("{} closed the connection", c.peer));
                        closed.push(i);
                    }
                    Ok(n) => {
                        log.line(&format!(
                            "received {n} bytes from {}: {}",
                            c.peer,
                            printable(&buf[..n])
                        ));
                        update(&stats, |st: &mut ListenerStats| {
                            st.bytes += n as u64;
                            st.received.extend_from_slice(&buf[..n]);
                        });
                        if let (Some(r), false) = (&reply, c.replied) {
                            c.replied = true;
                            match c.stream.write_all(format!("{r}\n").as_bytes()) {
                                Ok(()) => {
                                    c.ack_pending = true;
                                    log.line(&format!("replied {} bytes", r.len() + 1));
                                }
                                Err(e) => log.line(&format!("reply failed: {e}")),
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        log.line(&format!("read from {}: {e}", c.peer));
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

/// Bytes sent on a TCP socket that its peer has not acknowledged yet (SIOCOUTQ).
fn unacknowledged(s: &TcpStream) -> Option<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the pointer we own.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (r == 0).then_some(n)
}

/// Starts a UDP socket in `host` that counts, logs and keeps every datagram it receives.
pub fn udp_listener(
    lab: &Lab,
    host: &str,
    name: &str,
    addr: SocketAddrV4,
    log: Log,
) -> Result<Task<ListenerStats>, String> {
    let sock = lab
        .run_in(host, || UdpSocket::bind(addr))
        .map_err(|e| e.to_string())?
        .map_err(|e| bind_error("bind", addr, host, e))?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    log.line(&format!("listening on udp {addr}"));
    Task::spawn(format!("udp-{name}"), move |stop, stats| {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::SeqCst) && !cancelled() {
            if poll_readable(&[sock.as_raw_fd()]).is_empty() {
                continue;
            }
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                log.line(&format!(
                    "datagram from {peer}, {n} bytes: {}",
                    printable(&buf[..n])
                ));
                update(&stats, |st: &mut ListenerStats| {
                    st.datagrams += 1;
                    st.bytes += n as u64;
                    st.received.extend_from_slice(&buf[..n]);
                });
            }
        }
        log.line("stopped");
    })
    .map_err(|e| e.to_string())
}

pub(super) fn bind_error(what: &str, addr: SocketAddrV4, host: &str, e: io::Error) -> String {
    let hint = if e.kind() == io::ErrorKind::AddrNotAvailable {
        format!(" ({} is not an address of {host} at this point)", addr.ip())
    } else {
        String::new()
    };
    format!("cannot {what} {addr} in {host}: {e}{hint}")
}

/// How a telnet session goes once connected.
#[derive(Debug, Clone, Default)]
pub struct TelnetPlan {
    /// Lines to send, each followed by `\n`.
    pub send: Vec<String>,
    /// Read until a whole line (`\n`) has arrived before closing (a person reading the answer).
    pub wait_reply: bool,
}

/// Connects from `host` to `addr` like `telnet`. On success: `before_send` runs (it may wait
/// for the server to have accepted), the lines are sent, then (with `wait_reply`) a reply line
/// is read and `after_reply` runs (it may wait for the server to see its reply acknowledged),
/// then the client half-closes (FIN) and reads until the server closes, all within `timeout`.
pub fn telnet(
    lab: &Lab,
    host: &str,
    addr: SocketAddrV4,
    plan: &TelnetPlan,
    timeout: Duration,
    before_send: impl FnOnce(Duration) -> Result<(), String>,
    after_reply: impl FnOnce(Duration) -> Result<(), String>,
) -> Result<TelnetResult, String> {
    let start = Instant::now();
    let conn = lab
        .run_in(host, || {
            TcpStream::connect_timeout(&SocketAddr::V4(addr), timeout)
        })
        .map_err(|e| e.to_string())?;
    let mut stream = match conn {
        Ok(s) => s,
        Err(e) => {
            let (outcome, why) = match (e.kind(), e.raw_os_error()) {
                (io::ErrorKind::ConnectionRefused, _) => {
                    (TelnetOutcome::Refused, "Connection refused")
                }
                (io::ErrorKind::TimedOut, _) | (_, Some(libc::ETIMEDOUT)) => {
                    (TelnetOutcome::Timeout, "Connection timed out")
                }
                (_, Some(libc::EHOSTUNREACH)) => (TelnetOutcome::Unreachable, "No route to host"),
                (_, Some(libc::ENETUNREACH)) => {
                    (TelnetOutcome::Unreachable, "Network is unreachable")
                }
                _ => return Err(format!("connect from {host} to {addr}: {e}")),
            };
            return Ok(TelnetResult {
                outcome,
                message: format!("Unable to connect to remote host: {why}"),
                received: vec![],
                closed_by_peer: false,
            });
        }
    };
    before_send(timeout.saturating_sub(start.elapsed()))?;
    for l in &plan.send {
        stream
            .write_all(format!("{l}\n").as_bytes())
            .map_err(|e| format!("send to {addr}: {e}"))?;
    }
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut replied_and_closed = false;
    if plan.wait_reply {
        while !received.contains(&b'\n') {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() || cancelled() {
                return Err(format!(
                    "no reply line from {addr} within {} ms",
                    timeout.as_millis()
                ));
            }
            let _ = stream.set_read_timeout(Some(left.min(TICK)));
            match stream.read(&mut buf) {
                Ok(0) => {
                    replied_and_closed = true;
                    break;
                }
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("read from {addr}: {e}")),
            }
        }
    }
    if plan.wait_reply && !replied_and_closed {
        after_reply(timeout.saturating_sub(start.elapsed()))?;
    }
    // telnet's `close`: nothing more to send. The server sees EOF and closes its side.
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("close towards {addr}: {e}"))?;
    let closed_by_peer = replied_and_closed
        || loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() || cancelled() {
                break false;
            }
            let _ = stream.set_read_timeout(Some(left.min(TICK)));
            match stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break true,
                Err(e) => return Err(format!("read from {addr}: {e}")),
            }
        };
    Ok(TelnetResult {
        outcome: TelnetOutcome::Connected,
        message: format!("Connected to {}.", addr.ip()),
        received,
        closed_by_peer,
    })
}

/// Sends `count` datagrams from one socket in `host` (one 5-tuple), `interval` apart.
/// Returns how many were sent.
pub fn udp_burst(
    lab: &Lab,
    host: &str,
    to: SocketAddrV4,
    source_port: u16,
    count: usize,
    interval: Duration,
    payload: &str,
) -> Result<usize, String> {
    let sock = lab
        .run_in(host, || {
            UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, source_port))
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("bind udp port {source_port} in {host}: {e}"))?;
    let mut sent = 0;
    for n in 1..=count {
        if n > 1 && !interval.is_zero() && !pause(interval) {
            break;
        }
        let data = crate::backend::program::burst_payload(payload, n);
        sock.send_to(data.as_bytes(), to)
            .map_err(|e| format!("send datagram {n} to {to}: {e}"))?;
        sent += 1;
    }
    Ok(sent)
}

/// True when a socket in the calling thread's namespace listens (TCP) or is bound (UDP) on
/// `addr` (0.0.0.0 on either side matches any address).
pub fn is_listening(proto: Proto, addr: SocketAddrV4) -> io::Result<bool> {
    let file = match proto {
        Proto::Tcp => "/proc/thread-self/net/tcp",
        Proto::Udp => "/proc/thread-self/net/udp",
    };
    let text = std::fs::read_to_string(file)?;
    Ok(proc_net_sockets(&text).into_iter().any(|(local, state)| {
        let state_ok = match proto {
            Proto::Tcp => state == 0x0A, // TCP_LISTEN
            Proto::Udp => true,
        };
        state_ok
            && local.port() == addr.port()
            && (local.ip() == addr.ip()
                || local.ip().is_unspecified()
                || addr.ip().is_unspecified())
    }))
}

/// (local address, state) of each socket line of /proc/net/{tcp,udp}.
fn proc_net_sockets(text: &str) -> Vec<(SocketAddrV4, u8)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let local = f.nth(1)?;
            let state = f.nth(1)?;
            let (ip, port) = local.split_once(':')?;
            // The kernel prints the __be32 as a native integer: its native bytes are the
            // address in network order.
            let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
            let port = u16::from_str_radix(port, 16).ok()?;
            Some((
                SocketAddrV4::new(ip, port),
                u8::from_str_radix(state, 16).ok()?,
            ))
        })
        .collect()
}

/// NFQUEUE numbers bound in the calling thread's namespace (none while `nfnetlink_queue` is
/// not loaded).
pub fn bound_queues() -> Result<Vec<u16>, nfqueue::Error> {
    match nfqueue::QueueStats::read_all() {
        Ok(queues) => Ok(queues.iter().map(|q| q.queue_num).collect()),
        Err(nfqueue::Error::StatsRead { source, .. })
            if source.kind() == io::ErrorKind::NotFound =>
        {
            Ok(vec![])
        }
        Err(e) => Err(e),
    }
}

/// Interfaces of the calling thread's namespace that are not yet running (IFF_RUNNING: the
/// carrier is on and linkwatch has activated the queue, so frames are no longer dropped).
pub fn not_running(interfaces: &[String]) -> io::Result<Vec<String>> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new, valid descriptor that nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut down = Vec::new();
    for name in interfaces {
        // SAFETY: ifreq is plain data; zeroed is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        let bytes = name.as_bytes();
        if bytes.len() >= req.ifr_name.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {name} too long"),
            ));
        }
        for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS reads into the ifreq we own.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(io::Error::other(format!(
                "{name}: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: after SIOCGIFFLAGS the flags member of the union is the one written.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        if (i32::from(flags) & libc::IFF_RUNNING) == 0 {
            down.push(name.clone());
        }
    }
    Ok(down)
}

/// Waits until every interface of every node of `lab` is running. Frames sent before that are
/// dropped by the kernel (the queue is a no-op until linkwatch activates it).
pub fn wait_links_up(lab: &Lab, timeout: Duration) -> Result<(), String> {
    let plan = lab.plan();
    let mut nodes: HashMap<String, Vec<String>> = HashMap::new();
    for h in &plan.hosts {
        nodes.insert(
            h.name.clone(),
            h.interfaces.iter().map(|i| i.name.clone()).collect(),
        );
    }
    // A Mininet lab's switches are in the root namespace (this thread's), under the names
    // recorded for them.
    let mininet = lab.record().mininet.as_ref();
    let mut root: HashMap<String, Vec<String>> = HashMap::new();
    for s in &plan.switches {
        let mut v = vec![s.name.clone()];
        v.extend(s.ports.iter().map(|p| p.name.clone()));
        match mininet {
            None => {
                nodes.insert(s.name.clone(), v);
            }
            Some(m) => {
                let rename = |n: &String| m.bridges.get(n).or(m.ports.get(n)).unwrap_or(n).clone();
                root.insert(s.name.clone(), v.iter().map(rename).collect());
            }
        }
    }
    let end = Instant::now() + timeout;
    loop {
        let mut down = Vec::new();
        for (node, ifaces) in &root {
            let d = not_running(ifaces).map_err(|e| format!("{node}: {e}"))?;
            down.extend(d.into_iter().map(|i| format!("{node}:{i}")));
        }
        for (node, ifaces) in &nodes {
            let d = lab
                .run_in(node, || not_running(ifaces))
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{node}: {e}"))?;
            down.extend(d.into_iter().map(|i| format!("{node}:{i}")));
        }
        if down.is_empty() {
            return Ok(());
        }
        if Instant::now() >= end || cancelled() {
            down.sort();
            return Err(format!(
                "links not up after {} ms: {}",
                timeout.as_millis(),
                down.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_sockets() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 3200000A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:2328 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2 2 0000000000000000 0
";
        let s = proc_net_sockets(text);
        let vip = if cfg!(target_endian = "little") {
            Ipv4Addr::new(10, 0, 0, 50)
        } else {
            Ipv4Addr::new(50, 0, 0, 10)
        };
        assert_eq!(s[0], (SocketAddrV4::new(vip, 8080), 0x0A));
        assert_eq!(s[1], (SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9000), 0x07));
    }

    #[test]
    fn printable_escapes() {
        assert_eq!(printable(b"Is this working?\n"), "Is this working?\\n");
    }
}
