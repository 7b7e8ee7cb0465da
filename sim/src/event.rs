//! [`Event`]: what the world's queue holds.

use std::net::Ipv4Addr;

use crate::link::Attach;
use crate::tcp::TcpTimer;

/// Something that happens at an instant of virtual time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The oldest frame in flight towards a link end arrives there. Frames wait in a FIFO
    /// per link end, so the seeded tie-break can interleave links but never reorder one.
    Arrive {
        /// Where it arrives.
        at: Attach,
    },
    /// A neighbour entry's retransmission timer expires.
    NeighTimer {
        /// The host's index.
        host: usize,
        /// The interface's index.
        iface: usize,
        /// The address being resolved.
        ip: Ipv4Addr,
        /// The entry's generation when the timer was armed.
        generation: u64,
    },
    /// A holder's delay after its batch is full has passed: it gives the batch its verdict.
    HolderRelease {
        /// The holder's index.
        holder: usize,
    },
    /// A TCP connection's timer.
    Tcp {
        /// The connection's index.
        conn: usize,
        /// Which timer.
        timer: TcpTimer,
        /// The connection's timer generation when it was armed.
        generation: u64,
    },
    /// A packet parked between two hooks goes on (exploring only: another packet of the same
    /// host may be processed in between, as by another CPU).
    Resume {
        /// The host's index.
        host: usize,
        /// The parked packet's number.
        id: u64,
    },
    /// A driver asked to be woken: nothing happens in the network, but stepping stops here
    /// (a program's work that takes time, done when it is due).
    Wake,
    /// The oldest packet on a host's loopback arrives back at the host (`loopback_xmit` →
    /// `netif_rx`: received in a later softirq, not within the send).
    Loopback {
        /// The host's index.
        host: usize,
    },
}
