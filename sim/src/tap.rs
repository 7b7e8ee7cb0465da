//! Capture taps: [`Captured`] frames recorded at a host's interfaces with time and direction.

use crate::time::SimTime;

/// Which way a captured frame went through the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Sent by the host (`PACKET_OUTGOING`).
    Outgoing,
    /// Received by the interface, whatever its destination MAC.
    Incoming,
}

/// Where a tap listens on its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapPoint {
    /// Every interface of the host, `lo` included (`tcpdump -i any`; loopback's packets once).
    Any,
    /// One interface, by name (`lo` too).
    Interface(String),
}

/// A tap handle, valid in the world that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TapId(pub(crate) usize);

/// One frame as a tap saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The virtual time it crossed the interface.
    pub time: SimTime,
    /// The interface's name.
    pub interface: String,
    /// Sent or received.
    pub direction: Direction,
    /// The Ethernet frame's bytes.
    pub frame: Vec<u8>,
}

/// A tap's filter and what it recorded.
#[derive(Debug, Clone)]
pub struct Tap {
    /// The host's index.
    pub host: usize,
    /// The interface's index, or `None` for all.
    pub iface: Option<usize>,
    /// The frames, in the order they crossed.
    pub frames: Vec<Captured>,
}

impl Tap {
    /// Whether this tap sees interface `iface` of host `host`.
    pub fn sees(&self, host: usize, iface: usize) -> bool {
        self.host == host && self.iface.is_none_or(|i| i == iface)
    }
}
