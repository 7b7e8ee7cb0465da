//! The scenario's listeners as programs in the simulator: a UDP socket that counts datagrams,
//! and a TCP listener that accepts, logs, replies once per connection after the first data
//! (counting when that reply is acknowledged) and closes when its peer does — what the native
//! backend's threads do, polled after every event so they react at the instant.

use crate::backend::ListenerStats;
use sim::{SimTime, SocketId, TcpId, World};
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

/// What a listener listens with.
pub(super) enum Sock {
    /// A bound UDP socket.
    Udp(SocketId),
    /// A TCP listener, the reply it sends, its open connections.
    Tcp {
        listener: TcpId,
        reply: Option<String>,
        conns: Vec<Conn>,
    },
}

/// An accepted connection.
pub(super) struct Conn {
    id: TcpId,
    peer: SocketAddrV4,
    replied: bool,
    ack_pending: bool,
}

/// A listener program: its socket, counts and log.
pub(super) struct Listener {
    pub sock: Sock,
    pub stats: ListenerStats,
    pub log: PathBuf,
    pub text: String,
}

fn at(t: SimTime) -> f64 {
    Duration::from_nanos(t.as_nanos()).as_secs_f64()
}

impl Listener {
    /// A listener whose log starts with `first`.
    pub fn new(sock: Sock, log: PathBuf, first: String) -> Listener {
        Listener {
            sock,
            stats: ListenerStats::default(),
            log,
            text: format!("{first}\n"),
        }
    }

    fn line(&mut self, t: SimTime, text: &str) {
        let _ = writeln!(self.text, "{:>12.6} {text}", at(t));
    }

    /// Takes in what arrived since the last poll and reacts to it.
    pub fn poll(&mut self, world: &mut World) {
        let now = world.now();
        match &mut self.sock {
            Sock::Udp(socket) => {
                let socket = *socket;
                while let Ok(Some(d)) = world.udp_recv(socket) {
                    let line = format!(
                        "datagram from {}, {} bytes: {}",
                        d.from,
                        d.payload.len(),
                        d.payload.escape_ascii()
                    );
                    self.line(d.time, &line);
                    self.stats.datagrams += 1;
                    self.stats.bytes += d.payload.len() as u64;
                    self.stats.received.extend_from_slice(&d.payload);
                }
            }
            Sock::Tcp {
                listener,
                reply,
                conns,
            } => {
                let mut lines = Vec::new();
                while let Ok(Some(id)) = world.tcp_accept(*listener) {
                    let peer = world.tcp_addrs(id).map(|(_, r)| r);
                    let Ok(peer) = peer else { continue };
                    lines.push(format!("connection from {peer}"));
                    self.stats.connections += 1;
                    conns.push(Conn {
                        id,
                        peer,
                        replied: false,
                        ack_pending: false,
                    });
                }
                let mut closed = Vec::new();
                for (i, c) in conns.iter_mut().enumerate() {
                    if c.ack_pending && world.tcp_unacked(c.id) == Ok(0) {
                        c.ack_pending = false;
                        lines.push(format!("{} acknowledged the reply", c.peer));
                        self.stats.replies_acked += 1;
                    }
                    let data = world.tcp_recv(c.id).unwrap_or_default();
                    if !data.is_empty() {
                        lines.push(format!(
                            "received {} bytes from {}: {}",
                            data.len(),
                            c.peer,
                            data.escape_ascii()
                        ));
                        self.stats.bytes += data.len() as u64;
                        self.stats.received.extend_from_slice(&data);
                        if let (Some(r), false) = (reply.as_ref(), c.replied) {
                            c.replied = true;
                            let _ = world.tcp_send(c.id, format!("{r}\n").as_bytes());
                            c.ack_pending = true;
                            lines.push(format!("replied {} bytes", r.len() + 1));
                        }
                    }
                    let gone = matches!(world.tcp_state(c.id), Ok(sim::TcpState::Closed) | Err(_));
                    if world.tcp_peer_closed(c.id).unwrap_or(true) || gone {
                        lines.push(format!("{} closed the connection", c.peer));
                        let _ = world.tcp_close(c.id);
                        closed.push(i);
                    }
                }
                for i in closed.into_iter().rev() {
                    conns.remove(i);
                }
                for l in lines {
                    self.line(now, &l);
                }
            }
        }
    }
}
