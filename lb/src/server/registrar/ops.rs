//! What runs beside the connections: active checks, drain deadlines, and `lb ctl` answers.

use super::hub::{Shared, apply};
use crate::ctl::{self, Handler};
use crate::server::datapath::mailbox::{PathMsg, PathReport};
use crate::sys::now;
use lb_core::Nanos;
use lb_core::config::BackendEntry;
use lb_core::protocol::ctl::{
    self as proto, Answer, BackendRow, Backends, Metrics, Request, Role, ServerState,
};
use lb_core::protocol::metrics::{QueueCounters, exposition};
use lb_core::registry::{Origin, RegistryError};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Starts the active checks of backend `name` (registration `epoch`); they stop by themselves
/// when the backend is removed or registered again.
pub(super) fn start_checks(hub: &Shared, name: String, epoch: u64) {
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

pub(super) async fn tick_loop(hub: Shared) {
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

pub(super) fn handler(hub: &Shared) -> Handler {
    let hub = Rc::clone(hub);
    Rc::new(move |req: Request| {
        let hub = Rc::clone(&hub);
        Box::pin(async move { answer(&hub, req).await })
    })
}

async fn answer(hub: &Shared, req: Request) -> Answer {
    let t = now();
    match req {
        Request::State => {
            let r = reports(hub).await;
            server_state(hub, &r, t).into()
        }
        Request::Backends => {
            let r = reports(hub).await;
            backends(hub, &r, t).into()
        }
        Request::Metrics => metrics(hub).await.into(),
        Request::Add { backend } => add(hub, backend, t).await,
        Request::Remove { name } => remove(hub, name, t).await,
        Request::Drain { name, deadline } => {
            let span = deadline.unwrap_or_else(|| hub.borrow().s.drain_timeout);
            let r = hub.borrow_mut().reg.drain(&name, t.plus(span.into()), t);
            match r {
                Ok(u) => {
                    apply(hub, u).await;
                    tracing::info!(backend = %name, "draining for up to {span:?}");
                    ctl::done(format!(
                        "{name}: draining, no new flows; tracked flows kept for up to {span:?}"
                    ))
                }
                Err(e) => ctl::error(e),
            }
        }
        Request::Undrain { name } => {
            let r = hub.borrow_mut().reg.undrain(&name, t);
            match r {
                Ok(u) => {
                    apply(hub, u).await;
                    tracing::info!(backend = %name, "drain ended");
                    ctl::done(format!("{name}: takes new flows again"))
                }
                Err(e) => ctl::error(e),
            }
        }
        // `ctl::serve` refuses the agent's verbs before they reach this handler.
        other @ (Request::Pause | Request::Resume | Request::Deregister | Request::Register) => {
            ctl::not_served(&other, Role::Server)
        }
    }
}

/// `lb ctl add`: a static backend more. Checked, made reachable (MAC, routes) off the control
/// thread, then added to the registry and every data path.
async fn add(hub: &Shared, backend: BackendEntry, t: Nanos) -> Answer {
    let (name, addr) = (backend.name.clone(), backend.addr);
    let admission = {
        let h = hub.borrow();
        if addr == h.s.vip {
            return ctl::error(format!("{name}: {addr} is the VIP"));
        }
        if let Some(e) = h.reg.get(&name) {
            return ctl::error(format!(
                "{name}: a backend of that name exists ({})",
                e.addr
            ));
        }
        if let Some(e) = h.reg.entries().find(|e| e.addr == addr) {
            return ctl::error(format!("{name}: {addr} is backend {}'s address", e.name));
        }
        match &h.s.admission {
            Some(a) => Arc::clone(a),
            None => return ctl::error("this server takes no backends at run time"),
        }
    };
    let a = Arc::clone(&admission);
    let spec = match tokio::task::spawn_blocking(move || a.admit(&backend)).await {
        Ok(Ok(spec)) => spec,
        Ok(Err(e)) => return ctl::error(e),
        Err(e) => return ctl::error(format!("{name}: {e}")),
    };
    let r = hub.borrow_mut().reg.add_static(&spec, t);
    match r {
        Ok(u) => {
            apply(hub, u).await;
            let epoch = hub.borrow().reg.get(&name).map(|e| e.epoch);
            if let Some(epoch) = epoch {
                start_checks(hub, name.clone(), epoch);
            }
            tracing::info!(backend = %name, %addr, "added");
            ctl::done(format!("{name} ({addr}): added, takes new flows"))
        }
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || admission.release(addr)).await;
            ctl::error(e)
        }
    }
}

/// `lb ctl remove`: a static backend less; its tracked flows move to the others.
async fn remove(hub: &Shared, name: String, t: Nanos) -> Answer {
    let addr = hub.borrow().reg.get(&name).map(|e| e.addr);
    let r = hub.borrow_mut().reg.remove_static(&name, t);
    match r {
        Ok(u) => {
            apply(hub, u).await;
            let admission = hub.borrow().s.admission.clone();
            if let (Some(a), Some(addr)) = (admission, addr) {
                let _ = tokio::task::spawn_blocking(move || a.release(addr)).await;
            }
            tracing::info!(backend = %name, "removed");
            ctl::done(format!(
                "{name}: removed; its tracked flows go to the other backends"
            ))
        }
        Err(e @ RegistryError::Unknown(_)) => ctl::error(e),
        Err(e) => ctl::error(format!("{name}: {e}")),
    }
}

/// The `state` answer from the data paths' reports `r`.
fn server_state(hub: &Shared, r: &PathReport, t: Nanos) -> ServerState {
    let h = hub.borrow();
    ServerState {
        ok: true,
        role: Role::Server,
        vip: h.s.vip,
        data_path: h.s.description.clone(),
        control: h.s.listen,
        auth: h.s.secret.is_some(),
        active_checks: h.s.check.port,
        uptime_s: secs(t.since(h.started)),
        backends: h.reg.entries().count() as u64,
        registered: h.reg.agents() as u64,
        pending_connections: h.pending.len() as u64,
        tracked_flows: r.tracked,
        received: r.received,
        sent: r.sent,
        send_failed: r.send_failed,
        flows_moved: r.flows_moved,
        previous_table: r.previous_table,
        drops: r.drops.clone(),
        control_counters: h.counters.clone(),
        fast_path: r.fast_path.clone().map(Box::new),
        table_fingerprint: r.table_fingerprint.map(|f| format!("{f:016x}")),
    }
}

/// The `backends` answer from the data paths' reports `r`.
fn backends(hub: &Shared, r: &PathReport, t: Nanos) -> Backends {
    let h = hub.borrow();
    let checks = h.s.check.port.is_some();
    let backends = h
        .reg
        .entries()
        .map(|e| {
            let tr = r.backends.get(&e.name).cloned().unwrap_or_default();
            BackendRow {
                name: e.name.clone(),
                addr: e.addr,
                origin: match e.origin {
                    Origin::Static => proto::Origin::Static,
                    Origin::Agent { .. } => proto::Origin::Agent,
                },
                status: e.status(t),
                weight: e.weight,
                health: match (checks, e.health.up) {
                    (false, _) => proto::Health::Unchecked,
                    (true, true) => proto::Health::Up,
                    (true, false) => proto::Health::Down,
                },
                checks: e.health.checks,
                last_check_error: e.health.last_error.clone(),
                drain_remaining_s: e.drain.map(|d| secs(d.deadline.since(t))),
                packets: tr.packets,
                bytes: tr.bytes,
                flows: tr.flows,
                tracked: tr.tracked,
            }
        })
        .collect();
    Backends { ok: true, backends }
}

/// The `metrics` answer: `state`, `backends` and the kernel's counters of the server's queues,
/// in the Prometheus text format (`/metrics` serves the same text).
pub(super) async fn metrics(hub: &Shared) -> Metrics {
    let r = reports(hub).await;
    let t = now();
    let state = server_state(hub, &r, t);
    let backends = backends(hub, &r, t);
    let queues = match hub.borrow().s.queues.clone() {
        Some(ours) => match nfqueue::QueueStats::read_all() {
            Ok(all) => all
                .into_iter()
                .filter(|q| ours.contains(&q.queue_num))
                .map(|q| QueueCounters {
                    queue: q.queue_num,
                    waiting: u64::from(q.queue_total),
                    queue_dropped: q.queue_dropped,
                    user_dropped: q.user_dropped,
                })
                .collect(),
            Err(e) => {
                tracing::warn!("metrics: the queues' counters: {e}");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    Metrics {
        ok: true,
        text: exposition(&state, &backends, &queues),
    }
}
