//! The agent side of the registration protocol: registration with the server over TCP :1338, the health beat,
//! pause/resume/deregister, re-registration when the server goes away, and the `lb ctl`
//! socket. Caplance's states: Unregistered → Registering → Active ⇄ Paused → Deregistering.
//!
//! The SANITY datagram arrives on the data socket (:1337), which the data-path thread owns;
//! it hands the token over a bounded channel. Everything else runs on one thread, in a
//! single-threaded tokio runtime.

use crate::ctl::{self, Handler};
use crate::lines::{LineError, LineReader, write_line};
use anyhow::Result;
use lb_core::config::ControlSection;
use lb_core::protocol::agent::{AgentMsg, AgentState, MAX_LINE, NONCE_LEN, Secret, ServerMsg};
use lb_core::protocol::ctl::{AgentStatus, Answer, Request, Role};
use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

/// Data-path counters, written by the data thread once per batch.
#[derive(Debug, Default)]
pub struct Stats {
    /// Datagrams received on the data socket.
    pub received: AtomicU64,
    /// Packets re-injected.
    pub injected: AtomicU64,
    /// Re-injections the kernel refused.
    pub failed: AtomicU64,
    /// Datagrams neither re-injected nor SANITY.
    pub refused: AtomicU64,
    /// SANITY datagrams seen.
    pub sanity: AtomicU64,
    /// Balancers learned from completed registrations: the source of the SANITY datagram whose
    /// token the server then confirmed with REGISTERED (the data loop re-injects their packets).
    pub balancers: std::sync::Mutex<Vec<Ipv4Addr>>,
    /// Why the agent must end: the server refused its first registration for a reason that
    /// will not change by retrying (its name is taken, its secret is wrong).
    pub fatal: std::sync::Mutex<Option<String>>,
}

/// A SANITY token as the data path received it, with the address it came from.
pub type Sanity = (String, Ipv4Addr);

/// True for a refusal that retrying cannot fix: the agent's own configuration is wrong.
fn permanent(reason: &str) -> bool {
    reason.starts_with("refused: ")
        && [
            "is taken by",
            "authentication",
            "cannot be a backend's data address",
        ]
        .iter()
        .any(|p| reason.contains(p))
}

/// What the agent's control plane needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server; none: no registration.
    pub server: Option<SocketAddrV4>,
    /// The name to register.
    pub name: String,
    /// The data IP to announce (UNSPECIFIED: the local address of the control connection).
    pub data_ip: Ipv4Addr,
    /// Timing.
    pub timing: ControlSection,
    /// The shared secret.
    pub secret: Option<Secret>,
    /// Longest wait between attempts.
    pub retry_max: Duration,
}

#[derive(Debug)]
struct Shared {
    state: AgentState,
    want_registered: bool,
    want_paused: bool,
    registered_at: Option<Instant>,
    data_ip: Option<Ipv4Addr>,
    registrations: u64,
    last_error: Option<String>,
}

type Reply = oneshot::Sender<Answer>;

enum Cmd {
    Pause,
    Resume,
    Deregister,
    Register,
}

/// Starts the control thread: registration (if a server is set) and the ctl socket.
pub fn spawn(
    s: Settings,
    ctl: Option<std::os::unix::net::UnixListener>,
    sanity: mpsc::Receiver<Sanity>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    crate::sys::spawn_local_thread("control", move || run(s, ctl, sanity, stats, stop))
}

/// The agent's control plane on the current `LocalSet` until `stop` (tests call it directly).
pub async fn run(
    s: Settings,
    ctl: Option<std::os::unix::net::UnixListener>,
    sanity: mpsc::Receiver<Sanity>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let shared = Rc::new(RefCell::new(Shared {
        state: AgentState::Unregistered,
        want_registered: s.server.is_some(),
        want_paused: false,
        registered_at: None,
        data_ip: None,
        registrations: 0,
        last_error: None,
    }));
    let (tx, rx) = mpsc::channel::<(Cmd, Reply)>(8);
    let ctl_task = ctl.map(|l| {
        tokio::task::spawn_local(ctl::serve(
            l,
            Role::Agent,
            handler(Rc::clone(&shared), s.clone(), tx, Arc::clone(&stats)),
        ))
    });
    main_loop(&shared, &s, sanity, rx, &stop, &stats).await;
    if let Some(t) = ctl_task {
        t.abort();
    }
}

fn handler(
    shared: Rc<RefCell<Shared>>,
    s: Settings,
    tx: mpsc::Sender<(Cmd, Reply)>,
    stats: Arc<Stats>,
) -> Handler {
    Rc::new(move |req: Request| {
        let (shared, s, tx, stats) = (
            Rc::clone(&shared),
            s.clone(),
            tx.clone(),
            Arc::clone(&stats),
        );
        Box::pin(async move {
            let cmd = match req {
                Request::State => {
                    let sh = shared.borrow();
                    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
                    return AgentStatus {
                        ok: true,
                        role: Role::Agent,
                        name: s.name.clone(),
                        state: sh.state,
                        server: s.server,
                        auth: s.secret.is_some(),
                        data_ip: sh.data_ip,
                        registered_for_s: sh.registered_at.map(|t| t.elapsed().as_secs_f64()),
                        registrations: sh.registrations,
                        pause_requested: sh.want_paused,
                        last_error: sh.last_error.clone(),
                        received: n(&stats.received),
                        injected: n(&stats.injected),
                        inject_failed: n(&stats.failed),
                        refused: n(&stats.refused),
                        sanity: n(&stats.sanity),
                    }
                    .into();
                }
                Request::Pause => Cmd::Pause,
                Request::Resume => Cmd::Resume,
                Request::Deregister => Cmd::Deregister,
                Request::Register => Cmd::Register,
                // `ctl::serve` refuses the server's verbs before they reach this handler.
                other @ (Request::Backends
                | Request::Metrics
                | Request::Add { .. }
                | Request::Remove { .. }
                | Request::Drain { .. }
                | Request::Undrain { .. }) => {
                    return ctl::not_served(&other, Role::Agent);
                }
            };
            if s.server.is_none() {
                return ctl::error("this agent has no server to register with (give --server)");
            }
            let (rtx, rrx) = oneshot::channel();
            if tx.send((cmd, rtx)).await.is_err() {
                return ctl::error("the agent is stopping");
            }
            match tokio::time::timeout(Duration::from_secs(10), rrx).await {
                Ok(Ok(v)) => v,
                _ => ctl::error("no answer from the server in 10s"),
            }
        })
    })
}

fn ok(message: impl Into<String>) -> Answer {
    ctl::done(message.into())
}

/// How a session ended.
enum Ended {
    Stopped,
    Deregistered,
    Lost(String),
}

async fn main_loop(
    shared: &Rc<RefCell<Shared>>,
    s: &Settings,
    mut sanity: mpsc::Receiver<Sanity>,
    mut cmds: mpsc::Receiver<(Cmd, Reply)>,
    stop: &AtomicBool,
    stats: &Stats,
) {
    let first_wait = Duration::from_millis(200);
    // A refusal of the first registration ends the agent when retrying cannot help; once
    // registered, the agent keeps trying (a restarted server may still hold its old session).
    let mut ever_registered = false;
    let mut wait = first_wait;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let server = match s.server {
            Some(a) if shared.borrow().want_registered && retry_at.is_none() => a,
            _ => {
                // Idle: answer commands, wake for the next attempt or the stop flag.
                let tick = tokio::time::sleep(Duration::from_millis(100));
                tokio::select! {
                    Some((cmd, reply)) = cmds.recv() => {
                        let mut sh = shared.borrow_mut();
                        let v = match cmd {
                            Cmd::Pause => { sh.want_paused = true; ok("not registered: will pause once registered") }
                            Cmd::Resume => { sh.want_paused = false; ok("not registered: will be active once registered") }
                            Cmd::Deregister => { sh.want_registered = false; retry_at = None; ok("deregistered; stays out until `lb ctl register`") }
                            Cmd::Register => {
                                sh.want_registered = true;
                                retry_at = None;
                                wait = first_wait;
                                ok("registering")
                            }
                        };
                        let _ = reply.send(v);
                    }
                    _ = tick => {}
                }
                if retry_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
                    retry_at = None;
                }
                continue;
            }
        };
        shared.borrow_mut().state = AgentState::Registering;
        let ended = session(shared, s, server, &mut sanity, &mut cmds, stop, stats).await;
        let mut sh = shared.borrow_mut();
        let was_registered = sh.registered_at.is_some();
        ever_registered |= was_registered;
        sh.state = AgentState::Unregistered;
        sh.registered_at = None;
        match ended {
            Ended::Stopped => return,
            Ended::Deregistered => {
                sh.want_registered = false;
                tracing::info!("deregistered");
            }
            Ended::Lost(reason) if !ever_registered && permanent(&reason) => {
                tracing::error!("registration with {server}: {reason}: giving up");
                sh.last_error = Some(reason.clone());
                if let Ok(mut f) = stats.fatal.lock() {
                    *f = Some(reason);
                }
                stop.store(true, Ordering::Relaxed);
                return;
            }
            Ended::Lost(reason) => {
                if was_registered {
                    wait = first_wait;
                }
                tracing::warn!("registration with {server}: {reason}; again in {wait:?}");
                sh.last_error = Some(reason);
                retry_at = Some(tokio::time::Instant::now() + wait);
                wait = (wait * 2).min(s.retry_max);
            }
        }
    }
}

struct Conn {
    rd: LineReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    wt: Duration,
}

impl Conn {
    async fn send(&mut self, m: &AgentMsg) -> Result<(), String> {
        write_line(&mut self.w, &m.to_string(), self.wt)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    async fn recv(&mut self) -> Result<ServerMsg, String> {
        let line = self.rd.next().await.map_err(|e| match e {
            LineError::Eof => "the server closed the connection".to_string(),
            e => e.to_string(),
        })?;
        ServerMsg::parse(&line).map_err(|e| format!("server said {line:?}: {e}"))
    }
}

fn nonce() -> String {
    let mut b = [0u8; NONCE_LEN / 2];
    let _ = getrandom::fill(&mut b);
    lb_core::protocol::agent::hex(&b)
}

/// Connect, register, then beat until the connection ends.
async fn session(
    shared: &Rc<RefCell<Shared>>,
    s: &Settings,
    server: SocketAddrV4,
    sanity: &mut mpsc::Receiver<Sanity>,
    cmds: &mut mpsc::Receiver<(Cmd, Reply)>,
    stop: &AtomicBool,
    stats: &Stats,
) -> Ended {
    let t = &s.timing;
    let hs = tokio::time::timeout(t.register_timeout.0, handshake(s, server, sanity)).await;
    let (mut c, ip, balancer) = match hs {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Ended::Lost(e),
        Err(_) => {
            return Ended::Lost(format!("not registered within {:?}", t.register_timeout.0));
        }
    };
    if let Ok(mut b) = stats.balancers.lock()
        && !b.contains(&balancer)
    {
        tracing::info!(%balancer, "encapsulated packets from this balancer are re-injected");
        b.push(balancer);
    }
    {
        let mut sh = shared.borrow_mut();
        sh.state = AgentState::Active;
        sh.registered_at = Some(Instant::now());
        sh.data_ip = Some(ip);
        sh.registrations += 1;
        sh.last_error = None;
    }
    tracing::info!(name = %s.name, %ip, %server, "registered");
    let mut pending: Option<Reply> = None;
    if shared.borrow().want_paused
        && let Err(e) = c.send(&AgentMsg::Pause).await
    {
        return Ended::Lost(e);
    }
    let mut beat = tokio::time::interval(t.health_interval.0);
    let mut poll_stop = tokio::time::interval(Duration::from_millis(100));
    // Not a timeout around each read: the other branches restart the loop all the time.
    let mut silent_at = tokio::time::Instant::now() + t.read_timeout.0;
    loop {
        tokio::select! {
            _ = beat.tick() => {
                if let Err(e) = c.send(&AgentMsg::Health { code: "200".into() }).await {
                    return Ended::Lost(e);
                }
            }
            _ = poll_stop.tick() => {
                if stop.load(Ordering::Relaxed) {
                    shared.borrow_mut().state = AgentState::Deregistering;
                    if c.send(&AgentMsg::Deregister).await.is_ok() {
                        // Bounded: a stop must not hang on a silent server.
                        let _ = tokio::time::timeout(Duration::from_secs(1), async {
                            while let Ok(m) = c.recv().await {
                                if matches!(m, ServerMsg::Deregistered { .. }) {
                                    break;
                                }
                            }
                        })
                        .await;
                    }
                    return Ended::Stopped;
                }
            }
            Some((cmd, reply)) = cmds.recv() => {
                let msg = {
                    let mut sh = shared.borrow_mut();
                    match cmd {
                        Cmd::Pause => { sh.want_paused = true; Some(AgentMsg::Pause) }
                        Cmd::Resume => { sh.want_paused = false; Some(AgentMsg::Resume) }
                        Cmd::Deregister => {
                            sh.want_registered = false;
                            sh.state = AgentState::Deregistering;
                            Some(AgentMsg::Deregister)
                        }
                        Cmd::Register => None,
                    }
                };
                match msg {
                    None => { let _ = reply.send(ok("already registered")); }
                    Some(m) => {
                        if let Some(old) = pending.replace(reply) {
                            let _ = old.send(ctl::error("superseded by a newer command"));
                        }
                        if let Err(e) = c.send(&m).await {
                            return Ended::Lost(e);
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(silent_at) => {
                return Ended::Lost(format!("the server was silent for {:?}", t.read_timeout.0));
            }
            r = c.recv() => {
                silent_at = tokio::time::Instant::now() + t.read_timeout.0;
                let m = match r {
                    Err(e) => return Ended::Lost(e),
                    Ok(m) => m,
                };
                let mut sh = shared.borrow_mut();
                match m {
                    ServerMsg::HealthAck => {}
                    ServerMsg::Paused { .. } => {
                        sh.state = AgentState::Paused;
                        tracing::info!("paused: no new flows");
                        if let Some(p) = pending.take() { let _ = p.send(ok("paused: no new flows; established flows continue")); }
                    }
                    ServerMsg::Resumed { .. } => {
                        sh.state = AgentState::Active;
                        tracing::info!("resumed");
                        if let Some(p) = pending.take() { let _ = p.send(ok("active")); }
                    }
                    ServerMsg::Deregistered { reason, .. } => {
                        if sh.state == AgentState::Deregistering {
                            if let Some(p) = pending.take() { let _ = p.send(ok("deregistered; stays out until `lb ctl register`")); }
                            return Ended::Deregistered;
                        }
                        return Ended::Lost(format!("the server deregistered us: {reason}"));
                    }
                    ServerMsg::Invalid { reason } => {
                        tracing::warn!("server: INVALID {reason}");
                        if let Some(p) = pending.take() { let _ = p.send(ctl::error(format!("server: {reason}"))); }
                    }
                    other => tracing::warn!("unexpected from the server: {other}"),
                }
            }
        }
    }
}

/// The registration handshake; returns the connection, the data IP announced, and the address
/// the confirmed SANITY came from (the balancer's data address).
async fn handshake(
    s: &Settings,
    server: SocketAddrV4,
    sanity: &mut mpsc::Receiver<Sanity>,
) -> Result<(Conn, Ipv4Addr, Ipv4Addr), String> {
    let stream = TcpStream::connect(server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => *a.ip(),
        _ => return Err("the control connection is not IPv4".into()),
    };
    let ip = if s.data_ip.is_unspecified() {
        local
    } else {
        s.data_ip
    };
    let (r, w) = stream.into_split();
    let mut c = Conn {
        rd: LineReader::new(r, MAX_LINE),
        w,
        wt: s.timing.write_timeout.0,
    };
    // Tokens from an earlier attempt are stale.
    while sanity.try_recv().is_ok() {}
    let nonces = match &s.secret {
        None => {
            c.send(&AgentMsg::Register {
                name: s.name.clone(),
                data_ip: ip,
                mac: None,
            })
            .await?;
            None
        }
        Some(secret) => {
            let mine = nonce();
            c.send(&AgentMsg::Auth {
                nonce: mine.clone(),
            })
            .await?;
            let theirs = match c.recv().await? {
                ServerMsg::Challenge { nonce } => nonce,
                ServerMsg::Invalid { reason } => return Err(format!("refused: {reason}")),
                other => return Err(format!("want CHALLENGE, got {other}")),
            };
            c.send(&AgentMsg::Register {
                name: s.name.clone(),
                data_ip: ip,
                mac: Some(secret.register_mac(&mine, &theirs, &s.name, ip)),
            })
            .await?;
            Some((mine, theirs))
        }
    };
    let (token, from) = tokio::select! {
        t = sanity.recv() => t.ok_or("the data path stopped")?,
        m = c.recv() => return Err(match m? {
            ServerMsg::Invalid { reason } => format!("refused: {reason}"),
            other => format!("want SANITY on the data path, got {other} on the control connection"),
        }),
    };
    c.send(&AgentMsg::Sane { token }).await?;
    match c.recv().await? {
        ServerMsg::Registered { mac, .. } => {
            if let (Some(secret), Some((a, b))) = (&s.secret, nonces) {
                let want = secret.registered_mac(&a, &b, &s.name, ip);
                if !mac.is_some_and(|m| lb_core::protocol::agent::mac_eq(&m, &want)) {
                    return Err("the server did not prove the shared secret".into());
                }
            }
            Ok((c, ip, from))
        }
        ServerMsg::Invalid { reason } => Err(format!("refused: {reason}")),
        other => Err(format!("want REGISTERED, got {other}")),
    }
}

#[cfg(test)]
mod tests;
