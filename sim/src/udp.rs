//! UDP sockets: [`SocketTable`] binds (host, address, port) and queues received [`Datagram`]s.
//!
//! Binding follows the kernel without `SO_REUSEADDR`/`SO_REUSEPORT`: a port bound on
//! 0.0.0.0 conflicts with every address of the host, a specific address only with itself and
//! the wildcard. Receive queues are unbounded (`rmem` limits are not modelled).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::time::SimTime;

/// A socket handle, valid in the world that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId(pub(crate) usize);

/// A received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sender's address and port.
    pub from: SocketAddrV4,
    /// The address and port it was sent to.
    pub to: SocketAddrV4,
    /// The payload.
    pub payload: Vec<u8>,
    /// When it was queued on the socket.
    pub time: SimTime,
}

/// A bound socket: its host and address, and its receive queue.
#[derive(Debug, Clone)]
pub struct Socket {
    /// The host's index.
    pub host: usize,
    /// The bound address (0.0.0.0 for any) and port.
    pub local: SocketAddrV4,
    rx: VecDeque<Datagram>,
}

/// Every UDP socket of a world.
#[derive(Debug, Clone, Default)]
pub struct SocketTable {
    sockets: Vec<Option<Socket>>,
}

impl SocketTable {
    /// Whether binding `local` on `host` would conflict with an open socket.
    pub fn conflicts(&self, host: usize, local: SocketAddrV4) -> bool {
        self.open().any(|s| {
            s.host == host
                && s.local.port() == local.port()
                && (s.local.ip() == local.ip()
                    || s.local.ip().is_unspecified()
                    || local.ip().is_unspecified())
        })
    }

    /// Opens a socket bound to `local` on `host`; the caller checked [`Self::conflicts`].
    pub fn insert(&mut self, host: usize, local: SocketAddrV4) -> SocketId {
        self.sockets.push(Some(Socket {
            host,
            local,
            rx: VecDeque::new(),
        }));
        SocketId(self.sockets.len() - 1)
    }

    /// Closes a socket, dropping its queued datagrams; `false` if it was not open.
    pub fn close(&mut self, id: SocketId) -> bool {
        self.sockets.get_mut(id.0).and_then(Option::take).is_some()
    }

    /// An open socket.
    pub fn get(&self, id: SocketId) -> Option<&Socket> {
        self.sockets.get(id.0)?.as_ref()
    }

    /// The socket on `host` that receives datagrams to `dst:port`: an exact bind first, then
    /// the wildcard.
    pub fn lookup(&self, host: usize, dst: Ipv4Addr, port: u16) -> Option<SocketId> {
        let find = |ip: Ipv4Addr| {
            self.sockets.iter().position(|s| {
                s.as_ref().is_some_and(|s| {
                    s.host == host && s.local.port() == port && *s.local.ip() == ip
                })
            })
        };
        find(dst)
            .or_else(|| find(Ipv4Addr::UNSPECIFIED))
            .map(SocketId)
    }

    /// Queues `d` on socket `id` (ignored if it is closed).
    pub fn deliver(&mut self, id: SocketId, d: Datagram) {
        if let Some(Some(s)) = self.sockets.get_mut(id.0) {
            s.rx.push_back(d);
        }
    }

    /// Takes the oldest queued datagram of socket `id`.
    pub fn recv(&mut self, id: SocketId) -> Option<Datagram> {
        self.sockets.get_mut(id.0)?.as_mut()?.rx.pop_front()
    }

    fn open(&self) -> impl Iterator<Item = &Socket> {
        self.sockets.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    #[test]
    fn bind_conflicts_like_linux() {
        let mut t = SocketTable::default();
        let any = t.insert(0, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53));
        assert!(t.conflicts(0, SocketAddrV4::new(A, 53)));
        assert!(!t.conflicts(1, SocketAddrV4::new(A, 53)));
        assert!(!t.conflicts(0, SocketAddrV4::new(A, 54)));
        assert!(t.close(any));
        assert!(!t.close(any));
        t.insert(0, SocketAddrV4::new(A, 53));
        assert!(t.conflicts(0, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53)));
    }

    #[test]
    fn exact_bind_wins_over_wildcard() {
        let mut t = SocketTable::default();
        let any = t.insert(0, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7));
        let exact = t.insert(0, SocketAddrV4::new(A, 8));
        assert_eq!(t.lookup(0, A, 7), Some(any));
        assert_eq!(t.lookup(0, A, 8), Some(exact));
        assert_eq!(t.lookup(0, Ipv4Addr::new(10, 0, 0, 9), 8), None);
    }
}
