//! The server's control plane: registrations on TCP :1338 (Caplance's protocol, plus the
//! optional shared secret), active health checks, drain deadlines, and the `lb ctl` socket.
//!
//! It runs on its own thread, in a single-threaded tokio runtime: every task shares one
//! [`Hub`] through `Rc<RefCell<…>>` and never holds it across an `.await`. The registry
//! (`lb::registry`) decides; the data-path threads learn each change as a message
//! ([`crate::pathctl`]), and an answer that promises something (`REGISTERED`, `PAUSED`, a
//! drain) is written only after every thread has applied it.
//!
//! Hostile input is bounded: lines are at most `lb::control::MAX_LINE` bytes, the whole
//! handshake must fit in `register_timeout` (half-open and slow clients are cut), at most
//! `max_pending` unregistered connections are served at once (the rest get an error line and
//! are closed), and registered connections are at most `max_agents`.

use crate::ctl::{self, Handler, Request};
use crate::lines::{LineError, LineReader, write_line};
use crate::pathctl::{PathHandle, PathMsg, PathReport};
use crate::sys::now;
use anyhow::{Context, Result};
use lb::config::{CheckSection, ControlSection};
use lb::control::{AgentMsg, MAX_LINE, NONCE_LEN, Secret, ServerMsg};
use lb::registry::{Origin, Registry, Thresholds, Update};
use lb::{BackendSpec, Nanos};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

/// Invalid lines a registered agent may send before it is dropped.
const MAX_STRIKES: u32 = 8;

/// What the control plane needs.
pub struct ControlSettings {
    /// The VIP (refused as a backend address).
    pub vip: Ipv4Addr,
    /// Where agents register; none: no registration, only static backends.
    pub listen: Option<SocketAddrV4>,
    /// Timing and secret file.
    pub timing: ControlSection,
    /// The loaded secret.
    pub secret: Option<Secret>,
    /// Unregistered connections served at once.
    pub max_pending: usize,
    /// Registered backends at most.
    pub max_agents: usize,
    /// Active checks.
    pub check: CheckSection,
    /// Default drain deadline.
    pub drain_timeout: Duration,
    /// Source address of SANITY datagrams (the data path's).
    pub data_addr: Ipv4Addr,
    /// Destination port of SANITY datagrams (1337).
    pub encap_port: u16,
    /// One line describing the data path, for `lb ctl state`.
    pub description: String,
}

/// Control-plane counters.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Counters {
    accepted: u64,
    refused_busy: u64,
    invalid: u64,
    handshake_timeouts: u64,
    auth_failures: u64,
    registrations: u64,
    deregistrations: u64,
    read_timeouts: u64,
}

struct Conn {
    kick: Option<oneshot::Sender<String>>,
}

/// State shared by the control plane's tasks.
struct Hub {
    s: ControlSettings,
    reg: Registry,
    paths: Vec<PathHandle>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    pending: usize,
    udp: Option<std::net::UdpSocket>,
    started: Nanos,
    counters: Counters,
}

type Shared = Rc<RefCell<Hub>>;

/// The bound sockets, so that binding errors are reported before `ready:`.
pub struct Bound {
    tcp: Option<std::net::TcpListener>,
    udp: Option<std::net::UdpSocket>,
    ctl: Option<std::os::unix::net::UnixListener>,
}

/// Binds :1338 (if registration is on) and the SANITY socket; `ctl` is the `lb ctl` listener.
pub fn bind(s: &ControlSettings, ctl: Option<std::os::unix::net::UnixListener>) -> Result<Bound> {
    let (tcp, udp) = match s.listen {
        Some(addr) => {
            let tcp = std::net::TcpListener::bind(addr)
                .with_context(|| format!("listen for agents on {addr}"))?;
            tcp.set_nonblocking(true)?;
            let udp = std::net::UdpSocket::bind((s.data_addr, 0))
                .or_else(|_| std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
                .context("bind the SANITY socket")?;
            (Some(tcp), Some(udp))
        }
        None => (None, None),
    };
    Ok(Bound { tcp, udp, ctl })
}

/// Starts the control plane's thread; it runs until `stop`.
pub fn spawn(
    s: ControlSettings,
    reg: Registry,
    paths: Vec<PathHandle>,
    bound: Bound,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("control plane runtime: {e}");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(s, reg, paths, bound, stop));
        })
        .context("spawn the control thread")
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
        pending: 0,
        udp: bound.udp,
        started: now(),
        counters: Counters::default(),
    }));
    let mut tasks = Vec::new();
    if let Some(tcp) = bound.tcp {
        match tokio::net::TcpListener::from_std(tcp) {
            Ok(l) => tasks.push(tokio::task::spawn_local(accept_loop(Rc::clone(&hub), l))),
            Err(e) => tracing::error!("control listener: {e}"),
        }
    }
    if let Some(l) = bound.ctl {
        tasks.push(tokio::task::spawn_local(ctl::serve(l, handler(&hub))));
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

/// Sends `updates` to every data path and waits until each has applied them.
async fn apply(hub: &Shared, updates: Vec<Update>) {
    if updates.is_empty() {
        return;
    }
    for u in &updates {
        tracing::info!("backend change: {}", describe(u));
    }
    let waits: Vec<oneshot::Receiver<()>> = hub
        .borrow()
        .paths
        .iter()
        .filter_map(|p| {
            let (tx, rx) = oneshot::channel();
            (p.send(PathMsg::Apply(updates.clone())) && p.send(PathMsg::Sync(tx))).then_some(rx)
        })
        .collect();
    for w in waits {
        if tokio::time::timeout(Duration::from_secs(2), w)
            .await
            .is_err()
        {
            tracing::warn!("a data path did not confirm a backend change within 2s");
        }
    }
}

fn describe(u: &Update) -> String {
    match u {
        Update::Upsert(s) => format!("{} {} {:?} weight {}", s.name, s.addr, s.state, s.weight),
        Update::Remove(n) => format!("{n} removed"),
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
            if h.pending >= h.s.max_pending {
                h.counters.refused_busy += 1;
                drop(h);
                // Never wait for a refused peer: one try, then close.
                let _ = stream.try_write(b"INVALID too many connections, try later\n");
                continue;
            }
            h.pending += 1;
            h.next_conn += 1;
            h.next_conn
        };
        tokio::task::spawn_local(serve_conn(Rc::clone(&hub), stream, peer, id));
    }
}

/// Decrements the pending count when the handshake ends, however it ends.
struct Pending(Shared);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.borrow_mut().pending -= 1;
    }
}

async fn serve_conn(hub: Shared, stream: TcpStream, peer: SocketAddr, id: u64) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut rd = LineReader::new(r, MAX_LINE);
    let (limit, wt) = {
        let h = hub.borrow();
        (h.s.timing.register_timeout.0, h.s.timing.write_timeout.0)
    };
    let pending = Pending(Rc::clone(&hub));
    let outcome = tokio::time::timeout(limit, handshake(&hub, &mut rd, &mut w, id)).await;
    drop(pending);
    let (name, kick) = match outcome {
        Ok(Ok(x)) => x,
        Ok(Err(reason)) => {
            tracing::info!(%peer, "registration refused: {reason}");
            hub.borrow_mut().counters.invalid += 1;
            let _ = write_line(&mut w, &invalid(&reason), wt).await;
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "registration timed out");
            hub.borrow_mut().counters.handshake_timeouts += 1;
            let msg = format!("registration not completed within {limit:?}");
            let _ = write_line(&mut w, &invalid(&msg), wt).await;
            return;
        }
    };
    tracing::info!(backend = %name, %peer, "registered");
    registered(&hub, rd, w, id, name, kick).await;
    hub.borrow_mut().conns.remove(&id);
}

fn invalid(reason: &str) -> String {
    ServerMsg::Invalid {
        reason: reason.into(),
    }
    .to_string()
}

async fn read_msg(rd: &mut LineReader<OwnedReadHalf>) -> Result<AgentMsg, String> {
    let line = rd.next().await.map_err(|e| e.to_string())?;
    AgentMsg::parse(&line).map_err(|e| e.to_string())
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // getrandom fails only without any entropy source; a fixed token is then refused below.
    if getrandom::fill(&mut b).is_err() {
        tracing::error!("no random numbers: cannot make SANITY tokens");
    }
    b
}

/// REGISTER (after AUTH/CHALLENGE with a secret) → SANITY over UDP → SANE → REGISTERED.
/// Returns the name and the receiver another registration uses to replace this one.
async fn handshake(
    hub: &Shared,
    rd: &mut LineReader<OwnedReadHalf>,
    w: &mut OwnedWriteHalf,
    id: u64,
) -> Result<(String, oneshot::Receiver<String>), String> {
    let (secret, wt) = {
        let h = hub.borrow();
        (h.s.secret.clone(), h.s.timing.write_timeout.0)
    };
    let first = read_msg(rd).await?;
    let (name, ip, nonces) = match (first, &secret) {
        (
            AgentMsg::Register {
                name,
                data_ip,
                mac: None,
            },
            None,
        ) => (name, data_ip, None),
        (AgentMsg::Register { .. }, Some(_)) => {
            hub.borrow_mut().counters.auth_failures += 1;
            return Err("authentication required: send AUTH <nonce> first".into());
        }
        (AgentMsg::Auth { .. }, None) => {
            return Err("authentication is not configured on this server".into());
        }
        (AgentMsg::Auth { nonce }, Some(secret)) => {
            let server_nonce = lb::control::hex(&random::<{ NONCE_LEN / 2 }>());
            let challenge = ServerMsg::Challenge {
                nonce: server_nonce.clone(),
            };
            write_line(w, &challenge.to_string(), wt)
                .await
                .map_err(|e| e.to_string())?;
            match read_msg(rd).await? {
                AgentMsg::Register {
                    name,
                    data_ip,
                    mac: Some(mac),
                } => {
                    let want = secret.register_mac(&nonce, &server_nonce, &name, data_ip);
                    if !lb::control::mac_eq(&mac, &want) {
                        hub.borrow_mut().counters.auth_failures += 1;
                        return Err("authentication failed".into());
                    }
                    (name, data_ip, Some((nonce, server_nonce)))
                }
                _ => return Err("want REGISTER <name> <dataIP> <mac> after CHALLENGE".into()),
            }
        }
        _ => return Err("registration failed: want REGISTER <name> <dataIP>".into()),
    };
    {
        let h = hub.borrow();
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip == h.s.vip {
            return Err(format!("{ip} cannot be a backend's data address"));
        }
        h.reg.may_register(&name, ip).map_err(|e| e.to_string())?;
    }
    let token = lb::control::token_from(random());
    let datagram = lb::control::sanity_datagram(&token);
    let dest = SocketAddrV4::new(ip, hub.borrow().s.encap_port);
    // SANITY over the data path; a lost datagram is sent again until SANE or the deadline.
    let mut every = tokio::time::interval(Duration::from_millis(500));
    let answer = loop {
        tokio::select! {
            m = read_msg(rd) => break m?,
            _ = every.tick() => {
                if let Some(u) = &hub.borrow().udp
                    && let Err(e) = u.send_to(&datagram, dest)
                {
                    tracing::debug!("SANITY to {dest}: {e}");
                }
            }
        }
    };
    match answer {
        AgentMsg::Sane { token: t } if t == token => {}
        AgentMsg::Sane { .. } => return Err("bad sanity check token".into()),
        _ => return Err("want SANE <token>".into()),
    }
    let (tx, rx) = oneshot::channel();
    let updates = {
        let mut h = hub.borrow_mut();
        let old = h.reg.may_register(&name, ip).map_err(|e| e.to_string())?;
        if let Some(old) = old
            && let Some(kick) = h.conns.get_mut(&old).and_then(|c| c.kick.take())
        {
            let _ = kick.send("replaced by a new registration".into());
        }
        let u = h
            .reg
            .register(&name, ip, id, now())
            .map_err(|e| e.to_string())?;
        h.conns.insert(id, Conn { kick: Some(tx) });
        h.counters.registrations += 1;
        u
    };
    apply(hub, updates).await;
    let epoch = hub.borrow().reg.get(&name).map(|e| e.epoch);
    if let Some(epoch) = epoch {
        start_checks(hub, name.clone(), epoch);
    }
    let mac = match (&secret, nonces) {
        (Some(s), Some((a, b))) => Some(s.registered_mac(&a, &b, &name, ip)),
        _ => None,
    };
    let ok = ServerMsg::Registered {
        name: name.clone(),
        data_ip: ip,
        mac,
    };
    if let Err(e) = write_line(w, &ok.to_string(), wt).await {
        remove(hub, &name, id).await;
        return Err(e.to_string());
    }
    Ok((name, rx))
}

async fn remove(hub: &Shared, name: &str, id: u64) {
    let u = {
        let mut h = hub.borrow_mut();
        h.counters.deregistrations += 1;
        h.reg.deregister(name, id, now())
    };
    apply(hub, u).await;
}

/// A registered agent's connection: heartbeats, pause/resume, deregistration, silence.
async fn registered(
    hub: &Shared,
    mut rd: LineReader<OwnedReadHalf>,
    mut w: OwnedWriteHalf,
    id: u64,
    name: String,
    mut kick: oneshot::Receiver<String>,
) {
    let (read_timeout, wt) = {
        let h = hub.borrow();
        (h.s.timing.read_timeout.0, h.s.timing.write_timeout.0)
    };
    let mut strikes = 0;
    let bye = |reason: &str| {
        ServerMsg::Deregistered {
            name: name.clone(),
            reason: reason.into(),
        }
        .to_string()
    };
    loop {
        let next = tokio::select! {
            r = tokio::time::timeout(read_timeout, rd.next()) => r,
            reason = &mut kick => {
                let reason = reason.unwrap_or_else(|_| "server stopping".into());
                tracing::info!(backend = %name, "connection replaced: {reason}");
                let _ = write_line(&mut w, &bye(&reason), wt).await;
                return;
            }
        };
        let reply = match next {
            Err(_) => {
                tracing::info!(backend = %name, "no word for {read_timeout:?}: deregistered");
                hub.borrow_mut().counters.read_timeouts += 1;
                remove(hub, &name, id).await;
                let _ = write_line(&mut w, &bye("health check timeout ran out"), wt).await;
                return;
            }
            Ok(Err(LineError::Eof)) | Ok(Err(LineError::Io(_))) => {
                tracing::info!(backend = %name, "control connection closed: deregistered");
                remove(hub, &name, id).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::info!(backend = %name, "{e}: deregistered");
                hub.borrow_mut().counters.invalid += 1;
                remove(hub, &name, id).await;
                let _ = write_line(&mut w, &invalid(&e.to_string()), wt).await;
                return;
            }
            Ok(Ok(line)) => match AgentMsg::parse(&line) {
                Ok(AgentMsg::Health { .. }) => ServerMsg::HealthAck.to_string(),
                Ok(AgentMsg::Pause) => {
                    let r = hub.borrow_mut().reg.pause(&name, now());
                    match r {
                        Ok(u) => {
                            apply(hub, u).await;
                            tracing::info!(backend = %name, "paused");
                            ServerMsg::Paused { name: name.clone() }.to_string()
                        }
                        Err(e) => invalid(&e.to_string()),
                    }
                }
                Ok(AgentMsg::Resume) => {
                    let r = hub.borrow_mut().reg.resume(&name, now());
                    match r {
                        Ok(u) => {
                            apply(hub, u).await;
                            tracing::info!(backend = %name, "resumed");
                            ServerMsg::Resumed { name: name.clone() }.to_string()
                        }
                        Err(e) => invalid(&e.to_string()),
                    }
                }
                Ok(AgentMsg::Deregister) => {
                    tracing::info!(backend = %name, "deregistered on request");
                    remove(hub, &name, id).await;
                    let _ = write_line(&mut w, &bye("client requested deregistration"), wt).await;
                    return;
                }
                Ok(AgentMsg::Register { .. } | AgentMsg::Sane { .. } | AgentMsg::Auth { .. }) => {
                    strikes += 1;
                    invalid(&format!("already registered as {name}"))
                }
                Err(e) => {
                    strikes += 1;
                    hub.borrow_mut().counters.invalid += 1;
                    invalid(&e.to_string())
                }
            },
        };
        if strikes > MAX_STRIKES {
            tracing::info!(backend = %name, "too many invalid lines: deregistered");
            remove(hub, &name, id).await;
            let _ = write_line(&mut w, &bye("too many invalid lines"), wt).await;
            return;
        }
        if write_line(&mut w, &reply, wt).await.is_err() {
            tracing::info!(backend = %name, "cannot write to the agent: deregistered");
            remove(hub, &name, id).await;
            return;
        }
    }
}

/// Starts the active checks of backend `name` (registration `epoch`); they stop by themselves
/// when the backend is removed or registered again.
fn start_checks(hub: &Shared, name: String, epoch: u64) {
    let Some(port) = hub.borrow().s.check.port else {
        return;
    };
    let hub = Rc::clone(hub);
    tokio::task::spawn_local(async move {
        let (interval, timeout) = {
            let h = hub.borrow();
            (h.s.check.interval.0, h.s.check.timeout.0)
        };
        loop {
            let addr = match hub.borrow().reg.get(&name) {
                Some(e) if e.epoch == epoch => e.addr,
                _ => return,
            };
            let result = match tokio::time::timeout(timeout, TcpStream::connect((addr, port))).await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connect {addr}:{port}: {e}")),
                Err(_) => Err(format!("connect {addr}:{port}: no answer in {timeout:?}")),
            };
            let (u, was_up, is_up) = {
                let mut h = hub.borrow_mut();
                let was = h.reg.get(&name).is_some_and(|e| e.health.up);
                let u = h.reg.check_result(&name, epoch, result.clone(), now());
                (u, was, h.reg.get(&name).is_some_and(|e| e.health.up))
            };
            if was_up != is_up {
                match &result {
                    Err(e) => tracing::warn!(backend = %name, "health check: down ({e})"),
                    Ok(()) => tracing::info!(backend = %name, "health check: up"),
                }
            }
            apply(&hub, u).await;
            tokio::time::sleep(interval).await;
        }
    });
}

async fn tick_loop(hub: Shared) {
    let mut last = now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = now();
        let u = hub.borrow_mut().reg.tick(last, t);
        last = t;
        apply(&hub, u).await;
    }
}

async fn reports(hub: &Shared) -> PathReport {
    let waits: Vec<oneshot::Receiver<PathReport>> = hub
        .borrow()
        .paths
        .iter()
        .filter_map(|p| {
            let (tx, rx) = oneshot::channel();
            p.send(PathMsg::Report(tx)).then_some(rx)
        })
        .collect();
    let mut total = PathReport::default();
    for w in waits {
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), w).await {
            total.add(&r);
        }
    }
    total
}

fn secs(n: Nanos) -> f64 {
    (n.0 / 1_000_000) as f64 / 1000.0
}

fn handler(hub: &Shared) -> Handler {
    let hub = Rc::clone(hub);
    Rc::new(move |req: Request| {
        let hub = Rc::clone(&hub);
        Box::pin(async move { answer(&hub, req).await })
    })
}

async fn answer(hub: &Shared, req: Request) -> Value {
    let t = now();
    match req.cmd.as_str() {
        "state" => {
            let r = reports(hub).await;
            let h = hub.borrow();
            json!({
                "ok": true,
                "role": "server",
                "vip": h.s.vip.to_string(),
                "data_path": h.s.description,
                "control": h.s.listen.map(|a| a.to_string()),
                "auth": h.s.secret.is_some(),
                "active_checks": h.s.check.port,
                "uptime_s": secs(t.since(h.started)),
                "backends": h.reg.entries().count(),
                "registered": h.reg.agents(),
                "pending_connections": h.pending,
                "tracked_flows": r.tracked,
                "received": r.received,
                "sent": r.sent,
                "send_failed": r.send_failed,
                "flows_moved": r.flows_moved,
                "drops": r.drops,
                "control_counters": h.counters,
            })
        }
        "backends" => {
            let r = reports(hub).await;
            let h = hub.borrow();
            let checks = h.s.check.port.is_some();
            let list: Vec<Value> = h
                .reg
                .entries()
                .map(|e| {
                    let tr = r.backends.get(&e.name).cloned().unwrap_or_default();
                    json!({
                        "name": e.name,
                        "addr": e.addr.to_string(),
                        "origin": match e.origin { Origin::Static => "static", Origin::Agent { .. } => "agent" },
                        "status": e.status(t),
                        "weight": e.weight,
                        "health": if !checks { "unchecked" } else if e.health.up { "up" } else { "down" },
                        "checks": e.health.checks,
                        "last_check_error": e.health.last_error,
                        "drain_remaining_s": e.drain.map(|d| secs(d.deadline.since(t))),
                        "packets": tr.packets,
                        "bytes": tr.bytes,
                        "flows": tr.flows,
                        "tracked": tr.tracked,
                    })
                })
                .collect();
            json!({"ok": true, "backends": list})
        }
        "drain" => {
            let Some(name) = req.name else {
                return ctl::error("drain: give a backend name");
            };
            let span = match req.deadline.as_deref().map(lb::config::parse_duration) {
                Some(Ok(d)) => d,
                Some(Err(e)) => return ctl::error(format!("deadline: {e}")),
                None => hub.borrow().s.drain_timeout,
            };
            let r = hub.borrow_mut().reg.drain(&name, t.plus(span.into()), t);
            match r {
                Ok(u) => {
                    apply(hub, u).await;
                    tracing::info!(backend = %name, "draining for up to {span:?}");
                    json!({"ok": true, "message": format!("{name}: draining, no new flows; tracked flows kept for up to {span:?}")})
                }
                Err(e) => ctl::error(e),
            }
        }
        "undrain" => {
            let Some(name) = req.name else {
                return ctl::error("undrain: give a backend name");
            };
            let r = hub.borrow_mut().reg.undrain(&name, t);
            match r {
                Ok(u) => {
                    apply(hub, u).await;
                    tracing::info!(backend = %name, "drain ended");
                    json!({"ok": true, "message": format!("{name}: takes new flows again")})
                }
                Err(e) => ctl::error(e),
            }
        }
        other => ctl::error(format!(
            "{other:?} is not a server command (state, backends, drain, undrain)"
        )),
    }
}

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
#[path = "control_server_tests.rs"]
mod tests;
