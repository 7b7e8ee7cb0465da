//! The registrar, the server side of the registration protocol: registrations on TCP :1338 (Caplance's protocol, plus the
//! optional shared secret), active health checks, drain deadlines, the `lb ctl` socket, and
//! `/metrics` over HTTP (`--metrics`).
//!
//! It runs on its own thread, in a single-threaded tokio runtime: every task shares one
//! [`Hub`] through `Rc<RefCell<…>>` and never holds it across an `.await`. The registry
//! (`lb_core::registry`) decides; the data-path threads learn each change as a message
//! ([`crate::server::datapath::mailbox`]), and an answer that promises something (`REGISTERED`, `PAUSED`, a
//! drain) is written only after every thread has applied it.
//!
//! Hostile input is bounded: lines are at most `lb_core::protocol::agent::MAX_LINE` bytes, the whole
//! handshake must fit in `register_timeout` (half-open and slow clients are cut), at most
//! `max_pending` unregistered connections are served at once and at most 4 from one address
//! (the oldest handshake is closed to make room for a new connection, so idle connections
//! cannot keep a re-registering agent out), and registered connections are at most
//! `max_agents`.

use crate::ctl;
use crate::server::datapath::mailbox::PathHandle;
use crate::sys::now;
use anyhow::{Context, Result};
use lb_core::BackendSpec;
use lb_core::protocol::ctl::Role;
use lb_core::registry::{Registry, Thresholds};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod hub;
mod metrics;
mod ops;
mod session;

pub use hub::{Admission, ControlSettings};
use hub::{Hub, Shared};
use ops::{handler, start_checks, tick_loop};
use session::serve_conn;

/// The bound sockets, so that binding errors are reported before `ready:`.
pub struct Bound {
    tcp: Option<std::net::TcpListener>,
    udp: Option<std::net::UdpSocket>,
    ctl: Option<std::os::unix::net::UnixListener>,
    metrics: Option<std::net::TcpListener>,
}

/// A non-blocking TCP listener on `addr`, for `what` (`control: listen for agents`).
fn listen(addr: SocketAddrV4, what: &str) -> Result<std::net::TcpListener> {
    let tcp = match std::net::TcpListener::bind(addr) {
        Ok(t) => t,
        // An address this host lacks is a configuration mistake, not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            return Err(crate::cli::BadInput(format!(
                "{what} on {addr}: this host has no address {}",
                addr.ip()
            ))
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("{what} on {addr}")),
    };
    tcp.set_nonblocking(true)?;
    Ok(tcp)
}

/// Binds :1338 (if registration is on), the SANITY socket and the metrics port (if asked for);
/// `ctl` is the `lb ctl` listener.
pub fn bind(s: &ControlSettings, ctl: Option<std::os::unix::net::UnixListener>) -> Result<Bound> {
    let (tcp, udp) = match s.listen {
        Some(addr) => {
            let tcp = listen(addr, "control: listen for agents")?;
            let udp = std::net::UdpSocket::bind((s.data_addr, 0))
                .or_else(|_| std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
                .context("bind the SANITY socket")?;
            (Some(tcp), Some(udp))
        }
        None => (None, None),
    };
    let metrics = s
        .metrics
        .map(|addr| listen(addr, "metrics: serve /metrics"))
        .transpose()?;
    Ok(Bound {
        tcp,
        udp,
        ctl,
        metrics,
    })
}

/// Starts the control plane's thread; it runs until `stop`.
pub fn spawn(
    s: ControlSettings,
    reg: Registry,
    paths: Vec<PathHandle>,
    bound: Bound,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    crate::sys::spawn_local_thread("control", move || run(s, reg, paths, bound, stop))
}

/// The control plane on the current `LocalSet` until `stop` (tests call it directly).
pub async fn run(
    s: ControlSettings,
    reg: Registry,
    paths: Vec<PathHandle>,
    bound: Bound,
    stop: Arc<AtomicBool>,
) {
    let hub: Shared = Rc::new(RefCell::new(Hub {
        s,
        reg,
        paths,
        conns: HashMap::new(),
        next_conn: 1,
        pending: Default::default(),
        udp: bound.udp,
        started: now(),
        counters: Default::default(),
    }));
    let mut tasks = Vec::new();
    if let Some(tcp) = bound.tcp {
        match tokio::net::TcpListener::from_std(tcp) {
            Ok(l) => tasks.push(tokio::task::spawn_local(accept_loop(Rc::clone(&hub), l))),
            Err(e) => tracing::error!("control listener: {e}"),
        }
    }
    if let Some(m) = bound.metrics {
        match tokio::net::TcpListener::from_std(m) {
            Ok(l) => tasks.push(tokio::task::spawn_local(metrics::serve(Rc::clone(&hub), l))),
            Err(e) => tracing::error!("metrics listener: {e}"),
        }
    }
    if let Some(l) = bound.ctl {
        tasks.push(tokio::task::spawn_local(ctl::serve(
            l,
            Role::Server,
            handler(&hub),
        )));
    }
    tasks.push(tokio::task::spawn_local(tick_loop(Rc::clone(&hub))));
    let statics: Vec<(String, u64)> = hub
        .borrow()
        .reg
        .entries()
        .map(|e| (e.name.clone(), e.epoch))
        .collect();
    for (name, epoch) in statics {
        start_checks(&hub, name, epoch);
    }
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in tasks {
        t.abort();
    }
}

async fn accept_loop(hub: Shared, listener: tokio::net::TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept on the control port: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = {
            let mut h = hub.borrow_mut();
            h.counters.accepted += 1;
            // One address may hold only a few handshakes: a flood from one host cannot take
            // every slot.
            let from_peer = h.pending.values().filter(|p| p.source == peer.ip()).count();
            if from_peer >= MAX_PENDING_PER_SOURCE {
                h.counters.refused_busy += 1;
                drop(h);
                // Never wait for a refused peer: one try, then close.
                let line = format!(
                    "INVALID too many connections from {}, try later\n",
                    peer.ip()
                );
                let _ = stream.try_write(line.as_bytes());
                continue;
            }
            // All slots taken (by many addresses): the oldest handshake goes, not the new
            // one. A real agent completes its handshake in milliseconds; idle connections
            // grow old, so a re-registering agent always gets in.
            if h.pending.len() >= h.s.max_pending
                && let Some((&old, _)) = h.pending.iter().next()
                && let Some(p) = h.pending.remove(&old)
            {
                p.abort.abort();
                h.counters.evicted += 1;
            }
            h.next_conn += 1;
            h.next_conn
        };
        let task = tokio::task::spawn_local(serve_conn(Rc::clone(&hub), stream, peer, id));
        // Recorded before the task first runs (one thread: it cannot run before the next await).
        hub.borrow_mut().pending.insert(
            id,
            hub::PendingConn {
                source: peer.ip(),
                abort: task.abort_handle(),
            },
        );
    }
}

/// Handshakes one address may have under way at once.
const MAX_PENDING_PER_SOURCE: usize = 4;

/// The registry for the static backends.
pub fn registry(s: &ControlSettings, statics: &[BackendSpec]) -> Result<Registry> {
    let mut reg = Registry::new(
        s.max_agents,
        Thresholds {
            rise: s.check.rise,
            fall: s.check.fall,
        },
    );
    for spec in statics {
        reg.add_static(spec, now())
            .with_context(|| format!("backend {}", spec.name))?;
    }
    Ok(reg)
}

#[cfg(test)]
mod tests;
