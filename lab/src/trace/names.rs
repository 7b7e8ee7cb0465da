//! [`NameMap`]: the topology names that addresses, MACs and service ports take in a trace.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Topology names for addresses (and MACs), and the ports that stay numeric.
#[derive(Debug, Clone, Default)]
pub struct NameMap {
    addrs: BTreeMap<IpAddr, String>,
    macs: BTreeMap<[u8; 6], String>,
    service_ports: BTreeSet<u16>,
}

impl NameMap {
    /// An empty map: every address shown as a number.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names `addr` (e.g. `h3` for 10.0.0.3).
    pub fn host(mut self, name: &str, addr: impl Into<IpAddr>) -> Self {
        self.addrs.insert(addr.into(), name.to_string());
        self
    }

    /// Names `addr` `vip`.
    pub fn vip(self, addr: impl Into<IpAddr>) -> Self {
        self.host("vip", addr)
    }

    /// The names of a lab's topology: each host for its addresses, then the aliases (`vip`).
    pub fn of_plan(plan: &crate::Plan) -> Self {
        plan.names()
            .into_iter()
            .fold(Self::new(), |m, (addr, name)| m.host(&name, addr))
    }

    /// Names a MAC address (ARP replies show it); unnamed MACs show as `macN`.
    pub fn mac(mut self, name: &str, mac: [u8; 6]) -> Self {
        self.macs.insert(mac, name.to_string());
        self
    }

    /// Keeps `port` numeric even when it lies in the ephemeral range.
    pub fn service_port(mut self, port: u16) -> Self {
        self.service_ports.insert(port);
        self
    }

    /// The name of `addr`, if it has one.
    pub fn name(&self, addr: IpAddr) -> Option<&str> {
        self.addrs.get(&addr).map(String::as_str)
    }

    pub(super) fn mac_name(&self, mac: [u8; 6]) -> Option<&str> {
        self.macs.get(&mac).map(String::as_str)
    }

    pub(super) fn is_service_port(&self, port: u16) -> bool {
        self.service_ports.contains(&port)
    }
}
