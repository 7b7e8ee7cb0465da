//! What a capture yields: [`Frame`]s, gathered per [`CapturePoint`] with their [`CaptureStats`].

use std::time::Duration;

/// The kernel's `sll_pkttype`: who the frame was for, or that this host sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PacketType {
    /// Received, addressed to this host.
    Host,
    /// Received, link-layer broadcast.
    Broadcast,
    /// Received, link-layer multicast.
    Multicast,
    /// Received, addressed to another host (promiscuous).
    OtherHost,
    /// Sent by this host.
    Outgoing,
    /// Not known (hand-built frames, pcaps without direction).
    Unknown,
}

impl PacketType {
    /// Maps the kernel's PACKET_* value.
    pub fn from_raw(raw: u8) -> Self {
        match raw {
            0 => Self::Host,
            1 => Self::Broadcast,
            2 => Self::Multicast,
            3 => Self::OtherHost,
            4 => Self::Outgoing,
            _ => Self::Unknown,
        }
    }

    /// The kernel's PACKET_* value (Unknown maps to PACKET_HOST).
    pub fn to_raw(self) -> u8 {
        match self {
            Self::Host | Self::Unknown => 0,
            Self::Broadcast => 1,
            Self::Multicast => 2,
            Self::OtherHost => 3,
            Self::Outgoing => 4,
        }
    }

    /// True when the capturing host sent the frame.
    pub fn is_outgoing(self) -> bool {
        self == Self::Outgoing
    }

    /// True when the capturing host received the frame.
    pub fn is_incoming(self) -> bool {
        !matches!(self, Self::Outgoing | Self::Unknown)
    }
}

/// How a frame's bytes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II header (veth, bridges, and loopback's all-zero header).
    Ethernet,
    /// Bare IP packet (tun and other ARPHRD_NONE devices).
    RawIp,
    /// Another ARPHRD_* type, kept as captured.
    Other(u16),
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Kernel receive time since the Unix epoch (one clock for all namespaces of the machine).
    pub timestamp: Duration,
    /// Sent or received, and for whom.
    pub packet_type: PacketType,
    /// Interface it was seen on.
    pub interface: String,
    /// What `data` starts with.
    pub link: LinkType,
    /// EtherType the kernel reported (`sll_protocol`).
    pub protocol: u16,
    /// Length on the wire; larger than `data.len()` when cut to the snap length.
    pub orig_len: u32,
    /// Captured bytes.
    pub data: Vec<u8>,
}

impl Frame {
    /// An Ethernet frame with the given direction, for hand-built traces and tests.
    pub fn ethernet(
        timestamp: Duration,
        packet_type: PacketType,
        interface: &str,
        data: Vec<u8>,
    ) -> Self {
        let protocol = match data.get(12..14) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => 0,
        };
        Self {
            timestamp,
            packet_type,
            interface: interface.to_string(),
            link: LinkType::Ethernet,
            protocol,
            orig_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
            data,
        }
    }
}

/// Why a capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StopReason {
    /// The count limit was reached.
    Count,
    /// The duration limit passed.
    Duration,
    /// [`Capture::stop`](super::Capture::stop) or a [`StopHandle`](super::StopHandle) asked
    /// for it.
    #[default]
    Stopped,
}

/// Counters that account for every frame the kernel offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames the kernel queued or dropped for this socket (PACKET_STATISTICS tp_packets).
    pub kernel_packets: u64,
    /// Frames the kernel dropped because the socket buffer was full (tp_drops).
    pub kernel_drops: u64,
    /// Frames read and kept.
    pub captured: u64,
    /// Frames cut to the snap length (kept, shorter than on the wire).
    pub truncated: u64,
    /// Loopback's outgoing copies, skipped because loopback shows each frame twice.
    pub loopback_duplicates: u64,
    /// Frames queued but not read because a count limit ended the capture.
    pub unread: u64,
    /// Why the capture ended.
    pub stop_reason: StopReason,
}

/// The frames of one capture point, in the order the host saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturePoint {
    /// Topology host name (the trace section is named after it).
    pub host: String,
    /// Interface captured on; `None` for every interface of the host.
    pub interface: Option<String>,
    /// Captured frames.
    pub frames: Vec<Frame>,
    /// Accounting of what the kernel offered.
    pub stats: CaptureStats,
}

impl CapturePoint {
    /// An empty capture point, for building traces by hand.
    pub fn new(host: &str, interface: Option<&str>) -> Self {
        Self {
            host: host.to_string(),
            interface: interface.map(str::to_string),
            ..Self::default()
        }
    }

    /// `host (iface)` or `host (any)`: how sections and pcaps name this point.
    pub fn label(&self) -> String {
        format!(
            "{} ({})",
            self.host,
            self.interface.as_deref().unwrap_or("any")
        )
    }
}
