//! TCP as Linux does it, to the level a normalized trace shows (`impl World`): the three-way
//! handshake with initial sequence numbers from the seed, data with PSH, quick ACKs at
//! connection start (Linux acknowledges the first segments at once) and delayed ACKs (40 ms)
//! once the peer has closed, so an application that closes at once sends its FIN with the
//! ACK; FIN handshakes from either side; RST,ACK for a SYN to a closed port and RST for any
//! other segment that matches no socket; RST on close with unread data; SYN retransmission at
//! 1 s doubling, six times, then the connect times out.
//!
//! Simplified: no window, congestion control or data retransmission (the simulated links do
//! not lose data; a segment a rule drops is lost for good), segments up to 1460 bytes, only
//! the MSS option on SYNs, TIME_WAIT kept for the rest of the run, no SYN cookies or backlog
//! limit.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::error::SimError;
use crate::event::Event;
use crate::frame::{self, Ipv4View};
use crate::tcp::{ACK, FIN, Listener, PSH, RST, SYN, Tcb, TcpId, TcpState, TcpTimer};
use crate::world::World;

/// Linux's initial RTO and `tcp_syn_retries`.
const SYN_RTO: Duration = Duration::from_secs(1);
const SYN_RETRIES: u32 = 6;
/// `TCP_DELACK_MIN`.
const DELAYED_ACK: Duration = Duration::from_millis(40);
/// Quick ACKs at connection start (`TCP_MAX_QUICKACKS`).
const QUICKACKS: u8 = 16;
const MSS: usize = 1460;
const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;

impl World {
    fn conn_mut(&mut self, id: TcpId) -> Result<&mut Tcb, SimError> {
        self.tcp
            .conns
            .get_mut(id.0)
            .ok_or(SimError::UnknownSocket { socket: id.0 })
    }

    /// Listens on `local` in `host` (port required; 0.0.0.0 for every address).
    pub fn tcp_listen(&mut self, host: &str, local: SocketAddrV4) -> Result<TcpId, SimError> {
        let h = self.host_index(host)?;
        if !local.ip().is_unspecified() && !self.hosts[h].is_local(*local.ip()) {
            return Err(SimError::AddressNotAvailable {
                host: host.to_string(),
                addr: local,
            });
        }
        if self.tcp.in_use(h, local) {
            return Err(SimError::AddressInUse {
                host: host.to_string(),
                addr: local,
            });
        }
        self.tcp.listeners.push(Listener {
            host: h,
            local,
            open: true,
            accept_queue: Default::default(),
        });
        Ok(TcpId(self.tcp.listeners.len() - 1))
    }

    /// Whether a TCP socket of `host` listens on `local`'s port (0.0.0.0 matches any address).
    pub fn tcp_is_listening(&self, host: &str, local: SocketAddrV4) -> Result<bool, SimError> {
        let h = self.host_index(host)?;
        Ok(self.tcp.listeners.iter().any(|l| {
            l.open
                && l.host == h
                && l.local.port() == local.port()
                && (l.local.ip() == local.ip()
                    || l.local.ip().is_unspecified()
                    || local.ip().is_unspecified())
        }))
    }

    /// The next established connection on `listener`, if one is waiting.
    pub fn tcp_accept(&mut self, listener: TcpId) -> Result<Option<TcpId>, SimError> {
        let l = self
            .tcp
            .listeners
            .get_mut(listener.0)
            .ok_or(SimError::UnknownSocket { socket: listener.0 })?;
        Ok(l.accept_queue.pop_front().map(TcpId))
    }

    /// Starts a connection from `host` to `remote` (source address from the route, an
    /// ephemeral port from the seed); [`World::tcp_state`] says how it went.
    pub fn tcp_connect(&mut self, host: &str, remote: SocketAddrV4) -> Result<TcpId, SimError> {
        let h = self.host_index(host)?;
        let src = if self.hosts[h].is_local(*remote.ip()) {
            *remote.ip()
        } else {
            match self.hosts[h].routes.lookup(*remote.ip()) {
                Some(route) => route.src,
                None => {
                    return Err(SimError::NoRoute {
                        host: host.to_string(),
                        dst: *remote.ip(),
                    });
                }
            }
        };
        let span = u64::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
        let start = self.rng.below(span);
        let local = (0..span)
            .map(|k| SocketAddrV4::new(src, EPHEMERAL.start() + ((start + k) % span) as u16))
            .find(|a| !self.tcp.in_use(h, *a) && !self.sockets.conflicts(h, *a))
            .ok_or(SimError::NoFreePort {
                host: host.to_string(),
            })?;
        let iss = self.rng.next_u64() as u32;
        self.tcp.conns.push(Tcb {
            host: h,
            local,
            remote,
            state: TcpState::SynSent,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            rcv_nxt: 0,
            unread: Vec::new(),
            peer_fin: false,
            ack_owed: false,
            quick: QUICKACKS,
            pingpong: false,
            retries: 0,
            rtx_gen: 0,
            ack_gen: 0,
            listener: None,
        });
        let c = self.tcp.conns.len() - 1;
        self.tcp_out(c, SYN, &[]);
        self.tcp_arm(c, TcpTimer::Retransmit, SYN_RTO);
        Ok(TcpId(c))
    }

    /// The connection's state.
    pub fn tcp_state(&self, id: TcpId) -> Result<TcpState, SimError> {
        self.tcp
            .conns
            .get(id.0)
            .map(|c| c.state)
            .ok_or(SimError::UnknownSocket { socket: id.0 })
    }

    /// The connection's peer has closed its side (its FIN arrived).
    pub fn tcp_peer_closed(&self, id: TcpId) -> Result<bool, SimError> {
        self.tcp
            .conns
            .get(id.0)
            .map(|c| c.peer_fin)
            .ok_or(SimError::UnknownSocket { socket: id.0 })
    }

    /// Bytes sent on the connection that the peer has not acknowledged.
    pub fn tcp_unacked(&self, id: TcpId) -> Result<u32, SimError> {
        self.tcp
            .conns
            .get(id.0)
            .map(Tcb::unacked)
            .ok_or(SimError::UnknownSocket { socket: id.0 })
    }

    /// The connection's (local, remote) addresses.
    pub fn tcp_addrs(&self, id: TcpId) -> Result<(SocketAddrV4, SocketAddrV4), SimError> {
        self.tcp
            .conns
            .get(id.0)
            .map(|c| (c.local, c.remote))
            .ok_or(SimError::UnknownSocket { socket: id.0 })
    }

    /// Sends `data` now (segments of at most 1460 bytes, PSH on each), acknowledging what
    /// arrived on the way.
    pub fn tcp_send(&mut self, id: TcpId, data: &[u8]) -> Result<(), SimError> {
        let c = self.conn_mut(id)?;
        if !matches!(c.state, TcpState::Established | TcpState::CloseWait) {
            return Ok(());
        }
        for chunk in data.chunks(MSS) {
            self.tcp_out(id.0, PSH | ACK, chunk);
        }
        Ok(())
    }

    /// What arrived and was not read yet.
    pub fn tcp_recv(&mut self, id: TcpId) -> Result<Vec<u8>, SimError> {
        Ok(std::mem::take(&mut self.conn_mut(id)?.unread))
    }

    /// What arrived and was not read yet, left in place (empty for an unknown connection).
    pub fn tcp_recv_peek(&self, id: TcpId) -> &[u8] {
        self.tcp
            .conns
            .get(id.0)
            .map_or(&[], |c| c.unread.as_slice())
    }

    /// `shutdown(SHUT_WR)`: our FIN (with the ACK owed).
    pub fn tcp_shutdown(&mut self, id: TcpId) -> Result<(), SimError> {
        let c = self.conn_mut(id)?;
        let next = match c.state {
            TcpState::Established => TcpState::FinWait1,
            TcpState::CloseWait => TcpState::LastAck,
            _ => return Ok(()),
        };
        c.state = next;
        self.tcp_out(id.0, FIN | ACK, &[]);
        Ok(())
    }

    /// `close()`: a FIN, or a RST when data arrived that the application never read (as
    /// Linux does); a connection still connecting is abandoned.
    pub fn tcp_close(&mut self, id: TcpId) -> Result<(), SimError> {
        let c = self.conn_mut(id)?;
        match c.state {
            TcpState::Established | TcpState::CloseWait if !c.unread.is_empty() => {
                self.tcp_out(id.0, RST | ACK, &[]);
                self.conn_mut(id)?.state = TcpState::Closed;
                Ok(())
            }
            TcpState::SynSent | TcpState::SynRecv => {
                c.state = TcpState::Closed;
                Ok(())
            }
            _ => self.tcp_shutdown(id),
        }
    }

    /// Stops listening (connections already accepted stay).
    pub fn tcp_close_listener(&mut self, listener: TcpId) -> Result<(), SimError> {
        let l = self
            .tcp
            .listeners
            .get_mut(listener.0)
            .ok_or(SimError::UnknownSocket { socket: listener.0 })?;
        l.open = false;
        Ok(())
    }

    /// Sends a segment of connection `c` and advances its send sequence.
    fn tcp_out(&mut self, c: usize, flags: u8, payload: &[u8]) {
        let t = &mut self.tcp.conns[c];
        let seq = if flags & SYN != 0 { t.iss } else { t.snd_nxt };
        let window = if flags & SYN != 0 { 64240 } else { 502 };
        if flags & ACK != 0 && t.ack_owed {
            t.ack_owed = false;
            t.ack_gen += 1;
        }
        let advance = payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        if flags & SYN != 0 {
            t.snd_nxt = t.iss.wrapping_add(1);
        } else if flags & RST == 0 {
            t.snd_nxt = t.snd_nxt.wrapping_add(advance);
        }
        let (host, local, remote, ack) = (t.host, t.local, t.remote, t.rcv_nxt);
        let packet = frame::tcp_packet(
            (*local.ip(), local.port()),
            (*remote.ip(), remote.port()),
            seq,
            ack,
            flags,
            window,
            payload,
        );
        if let Some(p) = packet {
            self.ip_output(host, *remote.ip(), *local.ip(), p);
        }
    }

    fn tcp_arm(&mut self, c: usize, timer: TcpTimer, after: Duration) {
        let t = &mut self.tcp.conns[c];
        let generation = match timer {
            TcpTimer::Retransmit => {
                t.rtx_gen += 1;
                t.rtx_gen
            }
            TcpTimer::DelayedAck => {
                t.ack_gen += 1;
                t.ack_gen
            }
        };
        self.schedule(
            after,
            Event::Tcp {
                conn: c,
                timer,
                generation,
            },
        );
    }

    /// A connection's timer fired.
    pub(crate) fn tcp_timer(&mut self, c: usize, timer: TcpTimer, generation: u64) {
        let Some(t) = self.tcp.conns.get_mut(c) else {
            return;
        };
        match timer {
            TcpTimer::Retransmit if t.rtx_gen == generation => match t.state {
                TcpState::SynSent | TcpState::SynRecv => {
                    t.retries += 1;
                    if t.retries > SYN_RETRIES {
                        t.state = if t.state == TcpState::SynSent {
                            TcpState::TimedOut
                        } else {
                            TcpState::Closed
                        };
                        return;
                    }
                    let flags = if t.state == TcpState::SynSent {
                        SYN
                    } else {
                        SYN | ACK
                    };
                    let next = SYN_RTO * (1 << t.retries);
                    self.tcp_out(c, flags, &[]);
                    self.tcp_arm(c, TcpTimer::Retransmit, next);
                }
                _ => {}
            },
            TcpTimer::DelayedAck if t.ack_gen == generation && t.ack_owed => {
                self.tcp_out(c, ACK, &[]);
            }
            _ => {}
        }
    }

    /// Owes the peer an ACK: at once while quick ACKs last, else within 40 ms.
    fn tcp_ack(&mut self, c: usize) {
        let t = &mut self.tcp.conns[c];
        if t.quick > 0 && !t.pingpong {
            t.quick -= 1;
            self.tcp_out(c, ACK, &[]);
        } else if !t.ack_owed {
            t.ack_owed = true;
            self.tcp_arm(c, TcpTimer::DelayedAck, DELAYED_ACK);
        }
    }

    /// A TCP segment for `host` (local delivery).
    pub(crate) fn tcp_input(&mut self, host: usize, ip: &Ipv4View<'_>) {
        let Some((tcp, data)) = frame::parse_tcp(&ip.header, ip.payload) else {
            return;
        };
        let local = SocketAddrV4::new(Ipv4Addr::from(ip.header.destination), tcp.destination_port);
        let remote = SocketAddrV4::new(Ipv4Addr::from(ip.header.source), tcp.source_port);
        let (seq, ack) = (tcp.sequence_number, tcp.acknowledgment_number);
        let c = match self.tcp.conn(host, local, remote) {
            Some(c) => c,
            None => {
                if tcp.syn && !tcp.ack && !tcp.rst {
                    if let Some(l) = self.tcp.listener(host, local) {
                        self.tcp_syn_received(host, l, local, remote, seq);
                        return;
                    }
                }
                if !tcp.rst {
                    self.tcp_reset(host, local, remote, &tcp, data.len());
                }
                return;
            }
        };
        let t = &mut self.tcp.conns[c];
        if tcp.rst {
            t.state = match t.state {
                TcpState::SynSent if tcp.ack && ack == t.snd_nxt => TcpState::Refused,
                TcpState::SynSent => return,
                _ => TcpState::Closed,
            };
            t.rtx_gen += 1;
            return;
        }
        match t.state {
            TcpState::SynSent => {
                if tcp.syn && tcp.ack && ack == t.snd_nxt {
                    t.rcv_nxt = seq.wrapping_add(1);
                    t.snd_una = ack;
                    t.state = TcpState::Established;
                    t.rtx_gen += 1;
                    self.tcp_out(c, ACK, &[]);
                } else if tcp.ack {
                    self.tcp_reset(host, local, remote, &tcp, data.len());
                }
                return;
            }
            TcpState::SynRecv => {
                if !tcp.ack || ack != t.snd_nxt {
                    return;
                }
                t.snd_una = ack;
                t.state = TcpState::Established;
                t.rtx_gen += 1;
                if let Some(l) = t.listener {
                    self.tcp.listeners[l].accept_queue.push_back(c);
                }
            }
            _ => {}
        }
        let t = &mut self.tcp.conns[c];
        if tcp.ack && ack.wrapping_sub(t.snd_una) <= t.snd_nxt.wrapping_sub(t.snd_una) {
            t.snd_una = ack;
            if t.snd_una == t.snd_nxt {
                t.state = match t.state {
                    TcpState::FinWait1 => TcpState::FinWait2,
                    TcpState::Closing => TcpState::TimeWait,
                    TcpState::LastAck => TcpState::Closed,
                    s => s,
                };
            }
        }
        if !data.is_empty() {
            if seq == t.rcv_nxt && !t.peer_fin {
                t.unread.extend_from_slice(data);
                t.rcv_nxt = t.rcv_nxt.wrapping_add(data.len() as u32);
                self.tcp_ack(c);
            } else {
                self.tcp_out(c, ACK, &[]);
                return;
            }
        }
        let t = &mut self.tcp.conns[c];
        if tcp.fin && seq.wrapping_add(data.len() as u32) == t.rcv_nxt && !t.peer_fin {
            t.rcv_nxt = t.rcv_nxt.wrapping_add(1);
            t.peer_fin = true;
            match t.state {
                TcpState::Established => {
                    t.state = TcpState::CloseWait;
                    t.pingpong = true;
                    self.tcp_ack(c);
                }
                TcpState::FinWait1 => {
                    t.state = TcpState::Closing;
                    self.tcp_out(c, ACK, &[]);
                }
                TcpState::FinWait2 => {
                    t.state = TcpState::TimeWait;
                    self.tcp_out(c, ACK, &[]);
                }
                _ => {}
            }
        }
    }

    /// A SYN for listener `l`: a connection in SYN_RECV, SYN-ACK sent.
    fn tcp_syn_received(
        &mut self,
        host: usize,
        l: usize,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        seq: u32,
    ) {
        let iss = self.rng.next_u64() as u32;
        self.tcp.conns.push(Tcb {
            host,
            local,
            remote,
            state: TcpState::SynRecv,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            rcv_nxt: seq.wrapping_add(1),
            unread: Vec::new(),
            peer_fin: false,
            ack_owed: false,
            quick: QUICKACKS,
            pingpong: false,
            retries: 0,
            rtx_gen: 0,
            ack_gen: 0,
            listener: Some(l),
        });
        let c = self.tcp.conns.len() - 1;
        self.tcp_out(c, SYN | ACK, &[]);
        self.tcp_arm(c, TcpTimer::Retransmit, SYN_RTO);
    }

    /// `tcp_v4_send_reset`: RST with seq = their ACK, or RST,ACK acknowledging the segment.
    fn tcp_reset(
        &mut self,
        host: usize,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        tcp: &etherparse::TcpHeader,
        len: usize,
    ) {
        let (seq, ack, flags) = if tcp.ack {
            (tcp.acknowledgment_number, 0, RST)
        } else {
            let ack = tcp
                .sequence_number
                .wrapping_add(len as u32)
                .wrapping_add(u32::from(tcp.syn))
                .wrapping_add(u32::from(tcp.fin));
            (0, ack, RST | ACK)
        };
        let packet = frame::tcp_packet(
            (*local.ip(), local.port()),
            (*remote.ip(), remote.port()),
            seq,
            ack,
            flags,
            0,
            &[],
        );
        if let Some(p) = packet {
            self.ip_output(host, *remote.ip(), *local.ip(), p);
        }
    }
}
