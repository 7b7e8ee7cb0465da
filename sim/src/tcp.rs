//! TCP sockets' state: connections (a transmission control block each) and listeners. The
//! state machine that moves them is in `tcp_stack` (`impl World`); this file knows no world.

use std::collections::VecDeque;
use std::net::SocketAddrV4;

/// A TCP connection or listener, valid in the world that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TcpId(pub(crate) usize);

/// Where a connection is (RFC 793's states, plus how a failed connect ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// A listening socket.
    Listen,
    /// SYN sent, waiting for SYN-ACK.
    SynSent,
    /// SYN received on a listener, SYN-ACK sent.
    SynRecv,
    /// Open both ways.
    Established,
    /// Our FIN sent, not yet acknowledged.
    FinWait1,
    /// Our FIN acknowledged; the peer's not yet received.
    FinWait2,
    /// The peer's FIN received; ours not yet sent.
    CloseWait,
    /// Both FINs sent, ours not yet acknowledged.
    Closing,
    /// The peer's FIN received after ours; waiting for our FIN's ACK.
    LastAck,
    /// Both sides closed (kept, not timed out: the simulator does not reuse 4-tuples).
    TimeWait,
    /// Closed: by the application, or reset by the peer.
    Closed,
    /// The connect was refused (RST in answer to the SYN).
    Refused,
    /// The connect timed out (every SYN retransmission unanswered).
    TimedOut,
}

/// Which timer of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpTimer {
    /// SYN (or SYN-ACK) retransmission.
    Retransmit,
    /// The delayed ACK.
    DelayedAck,
}

/// Flag bits of a segment.
pub(crate) const FIN: u8 = 1;
pub(crate) const SYN: u8 = 2;
pub(crate) const RST: u8 = 4;
pub(crate) const PSH: u8 = 8;
pub(crate) const ACK: u8 = 16;

/// One connection.
#[derive(Debug, Clone)]
pub(crate) struct Tcb {
    pub host: usize,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub state: TcpState,
    /// Initial send sequence number.
    pub iss: u32,
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub rcv_nxt: u32,
    /// Received and not yet read by the application.
    pub unread: Vec<u8>,
    /// The peer's FIN has arrived.
    pub peer_fin: bool,
    /// An ACK is owed (a delayed ACK timer runs).
    pub ack_owed: bool,
    /// Quick ACKs left (Linux acknowledges at once at connection start).
    pub quick: u8,
    /// Interactive mode (after the peer's FIN): ACKs wait for data to ride on.
    pub pingpong: bool,
    /// SYN retransmissions so far.
    pub retries: u32,
    /// Timer generations: a timer event is stale when they differ.
    pub rtx_gen: u64,
    pub ack_gen: u64,
    /// The listener that accepted it, if any.
    pub listener: Option<usize>,
}

impl Tcb {
    /// Bytes sent and not yet acknowledged (FIN and SYN excluded).
    pub fn unacked(&self) -> u32 {
        self.snd_nxt.wrapping_sub(self.snd_una)
    }
}

/// A listening socket and its accept queue.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    pub host: usize,
    pub local: SocketAddrV4,
    pub open: bool,
    pub accept_queue: VecDeque<usize>,
}

/// Every TCP socket of the world.
#[derive(Debug, Clone, Default)]
pub(crate) struct TcpTable {
    pub conns: Vec<Tcb>,
    pub listeners: Vec<Listener>,
}

impl TcpTable {
    /// The connection a segment from `remote` to `local` on `host` belongs to.
    pub fn conn(&self, host: usize, local: SocketAddrV4, remote: SocketAddrV4) -> Option<usize> {
        self.conns.iter().position(|c| {
            c.host == host
                && c.local == local
                && c.remote == remote
                && !matches!(
                    c.state,
                    TcpState::Closed | TcpState::Refused | TcpState::TimedOut
                )
        })
    }

    /// The open listener for `local` on `host` (an exact address before 0.0.0.0).
    pub fn listener(&self, host: usize, local: SocketAddrV4) -> Option<usize> {
        let open = |l: &&Listener| l.open && l.host == host && l.local.port() == local.port();
        let all: Vec<(usize, &Listener)> = self
            .listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| open(l))
            .collect();
        all.iter()
            .find(|(_, l)| l.local.ip() == local.ip())
            .or_else(|| all.iter().find(|(_, l)| l.local.ip().is_unspecified()))
            .map(|(i, _)| *i)
    }

    /// Whether binding `local` on `host` would conflict with a listener or connection.
    pub fn in_use(&self, host: usize, local: SocketAddrV4) -> bool {
        let clash = |a: &SocketAddrV4| {
            a.port() == local.port()
                && (a.ip() == local.ip() || a.ip().is_unspecified() || local.ip().is_unspecified())
        };
        self.listeners
            .iter()
            .any(|l| l.open && l.host == host && clash(&l.local))
            || self.conns.iter().any(|c| {
                c.host == host
                    && c.listener.is_none()
                    && clash(&c.local)
                    && !matches!(
                        c.state,
                        TcpState::Closed | TcpState::Refused | TcpState::TimedOut
                    )
            })
    }
}
