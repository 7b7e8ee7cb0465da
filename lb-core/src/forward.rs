//! How forwarded packets leave the balancer ([`ForwardMode`], [`ForwardConfig`]) and the
//! encapsulation's constants: read by `decide` (the MTU check) and by `emit` (the bytes).

use crate::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// UDP port Caplance's backend agent listens on.
pub const ENCAP_PORT: u16 = 1337;
/// Bytes the UDP encapsulation adds: a 20-byte IPv4 header and an 8-byte UDP header.
pub const ENCAP_OVERHEAD: usize = 28;
/// IPv4 + TCP headers without options: MSS = MTU − 40.
const TCP_IP_HEADERS: u16 = 40;
/// How forwarded packets leave the balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardMode {
    /// Caplance's UDP encapsulation to `<backend>:1337` (`encap` in configuration files).
    #[default]
    #[serde(alias = "encap")]
    UdpEncap,
    /// L2 direct server return by MAC rewrite: `lb` writes the frame itself.
    Dsr,
    /// L2 direct server return sent by the kernel (`dsr-kernel` in configuration files): the
    /// packet is accepted with a per-backend mark, and policy routing (`fwmark` → a table whose
    /// default route is the backend) hands it to the backend's MAC. Nothing is copied back
    /// into the kernel; see docs/lb.md.
    #[serde(rename = "dsr-kernel", alias = "dsr_kernel")]
    DsrKernel,
}

impl ForwardMode {
    /// The name used in configuration files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ForwardMode::UdpEncap => "encap",
            ForwardMode::Dsr => "dsr",
            ForwardMode::DsrKernel => "dsr-kernel",
        }
    }

    /// True for both DSR modes: backends on the VIP's LAN, holding the VIP on `lo`.
    pub fn is_dsr(self) -> bool {
        matches!(self, ForwardMode::Dsr | ForwardMode::DsrKernel)
    }
}

/// Forwarding settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardConfig {
    /// Encapsulation or DSR.
    pub mode: ForwardMode,
    /// The balancer's own address: outer source, and source of ICMP errors.
    pub local_ip: Ipv4Addr,
    /// The balancer's MAC: source of DSR frames.
    pub local_mac: MacAddr,
    /// MTU of the path to the backends.
    pub mtu: u16,
    /// Outer UDP source port.
    pub encap_src_port: u16,
    /// Lower the MSS of forwarded TCP SYNs to `mtu − 68`. Off by default: with direct server
    /// return it only limits the backend → client direction, which skips the tunnel; the
    /// client → backend direction needs the backend's SYN-ACK clamped (see docs/mtu.md).
    pub clamp_mss: bool,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            mode: ForwardMode::UdpEncap,
            local_ip: Ipv4Addr::UNSPECIFIED,
            local_mac: MacAddr::default(),
            mtu: 1500,
            encap_src_port: ENCAP_PORT,
            clamp_mss: false,
        }
    }
}

/// The largest MSS whose segments fit `mtu` once encapsulated: `mtu − 40 − 28`.
pub const fn max_mss(mtu: u16) -> u16 {
    mtu.saturating_sub(TCP_IP_HEADERS + ENCAP_OVERHEAD as u16)
}
