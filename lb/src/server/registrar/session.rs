//! One registration session: the handshake on one TCP connection, then a registered agent's lines.

use super::hub::{Conn, Shared, apply};
use super::ops::start_checks;
use crate::lines::{LineError, LineReader, write_line};
use crate::sys::now;
use lb_core::protocol::agent::{AgentMsg, MAX_LINE, NONCE_LEN, ServerMsg};
use std::net::{SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

/// Invalid lines a registered agent may send before it is dropped.
const MAX_STRIKES: u32 = 8;
/// Forgets the pending connection when the handshake ends, however it ends.
struct Pending(Shared, u64);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.borrow_mut().pending.remove(&self.1);
    }
}

pub(super) async fn serve_conn(hub: Shared, stream: TcpStream, peer: SocketAddr, id: u64) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut rd = LineReader::new(r, MAX_LINE);
    let (limit, wt) = {
        let h = hub.borrow();
        (h.s.timing.register_timeout.0, h.s.timing.write_timeout.0)
    };
    let pending = Pending(Rc::clone(&hub), id);
    let outcome = tokio::time::timeout(limit, handshake(&hub, &mut rd, &mut w, id, peer)).await;
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

/// SANITY datagrams one registration sends at most (one every 500 ms: 2.5 s of resends).
const MAX_SANITY: u32 = 6;

/// REGISTER (after AUTH/CHALLENGE with a secret) → SANITY over UDP → SANE → REGISTERED.
/// Returns the name and the receiver another registration uses to replace this one.
async fn handshake(
    hub: &Shared,
    rd: &mut LineReader<OwnedReadHalf>,
    w: &mut OwnedWriteHalf,
    id: u64,
    peer: SocketAddr,
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
            let server_nonce = lb_core::protocol::agent::hex(&random::<{ NONCE_LEN / 2 }>());
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
                    if !lb_core::protocol::agent::mac_eq(&mac, &want) {
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
        // Unauthenticated, a REGISTER could name any address: the server would then send it
        // SANITY datagrams (a reflection) and, if a host there answered, traffic.
        if nonces.is_none() && peer.ip() != std::net::IpAddr::V4(ip) {
            return Err(format!(
                "{ip} is not the address this connection comes from ({}): without a shared secret an agent registers only its own address",
                peer.ip()
            ));
        }
        h.reg.may_register(&name, ip).map_err(|e| e.to_string())?;
    }
    let token = lb_core::protocol::agent::token_from(random());
    let datagram = lb_core::protocol::agent::sanity_datagram(&token);
    let dest = SocketAddrV4::new(ip, hub.borrow().s.encap_port);
    // SANITY over the data path; a lost datagram is sent again every 500 ms, at most
    // MAX_SANITY times per registration (a bound on what one REGISTER makes the server send),
    // then the agent has until the deadline to answer.
    let mut every = tokio::time::interval(Duration::from_millis(500));
    let mut sent = 0;
    let answer = loop {
        tokio::select! {
            m = read_msg(rd) => break m?,
            _ = every.tick(), if sent < MAX_SANITY => {
                sent += 1;
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
        // From here the registry holds this backend: the connection is no longer a pending
        // handshake that a new connection may evict (an eviction now would leave the backend
        // registered with no session to time it out).
        h.pending.remove(&id);
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

pub(super) async fn remove(hub: &Shared, name: &str, id: u64) {
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
