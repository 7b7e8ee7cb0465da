//! The data of the fast path's table (see [`crate::fastpath`], which runs it).

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// A flow as the map keys it: source, destination, protocol number, source port, destination
/// port.
pub type FlowKey = (Ipv4Addr, Ipv4Addr, u8, u16, u16);

/// One host's table: the interface it hooks, the VIP, the protocols, and the map.
#[derive(Debug)]
pub(crate) struct FastTable {
    pub(crate) iface: usize,
    pub(crate) vip: Ipv4Addr,
    pub(crate) tcp: bool,
    pub(crate) udp: bool,
    pub(crate) flows: HashMap<FlowKey, Ipv4Addr>,
}
