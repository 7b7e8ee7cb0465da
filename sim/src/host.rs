//! [`Host`]: one simulated network namespace's state (interfaces, addresses, routes, ARP cache).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::addr::{Ipv4Net, MacAddr};
use crate::ipv4::{Route, RouteTable};
use crate::neigh::NeighTable;
use crate::spec::{HostSpec, Sysctls};

/// The interface index that stands for `lo` (the hosts' interface lists hold Ethernet
/// interfaces only).
pub const LO: usize = usize::MAX;

/// An Ethernet interface as the stack sees it.
#[derive(Debug, Clone)]
pub struct Iface {
    /// Its name.
    pub name: String,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its address and prefix, if any.
    pub addr: Option<Ipv4Net>,
    /// The effective `arp_ignore` (0 or 1).
    pub arp_ignore: u8,
    /// The effective `arp_announce` (0 or 2).
    pub arp_announce: u8,
    /// Addresses added at run time besides `addr`, each a /32 (`ip addr add VIP/32 dev …`).
    pub secondary: Vec<Ipv4Addr>,
    /// `conf.<if>.forwarding`: what arrives here is forwarded even with `ip_forward` off.
    pub forwarding: bool,
}

impl Iface {
    /// Whether `ip` is an address of this interface.
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        self.addr.map(|n| n.addr()) == Some(ip) || self.secondary.contains(&ip)
    }
}

/// A policy routing rule before the local table's (`ip rule add to DST fwmark M lookup T`,
/// placed ahead of `lookup local`, as `lb --forward dsr-kernel` places it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyRule {
    /// The destination it applies to.
    pub to: Ipv4Net,
    /// The packet mark it applies to.
    pub fwmark: u32,
    /// The table it looks up.
    pub table: u32,
}

/// A host's network state.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its name.
    pub name: String,
    /// Its Ethernet interfaces, by index.
    pub ifaces: Vec<Iface>,
    /// Addresses on `lo` besides 127.0.0.0/8.
    pub loopback: Vec<Ipv4Addr>,
    /// The main routing table (connected routes first, then static ones).
    pub routes: RouteTable,
    /// The ARP cache.
    pub neigh: NeighTable,
    /// `net.ipv4.ip_forward`.
    pub ip_forward: bool,
    /// The sysctls as written (the interfaces' effective values follow from them).
    pub sysctls: Sysctls,
    /// Policy rules ahead of the local table, in order.
    pub rules: Vec<PolicyRule>,
    /// Routing tables besides main, by number.
    pub tables: BTreeMap<u32, RouteTable>,
}

impl Host {
    /// The host a validated spec describes (connected routes derived from the addresses).
    pub fn from_spec(spec: &HostSpec) -> Host {
        let ifaces: Vec<Iface> = spec
            .interfaces
            .iter()
            .map(|i| Iface {
                name: i.name.clone(),
                mac: i.mac,
                addr: i.addr,
                // Set from the sysctls below.
                arp_ignore: 0,
                arp_announce: 0,
                secondary: Vec::new(),
                forwarding: false,
            })
            .collect();
        let mut routes = RouteTable::default();
        for (index, i) in ifaces.iter().enumerate() {
            if let Some(net) = i.addr {
                routes.add(Route {
                    dest: net.network(),
                    iface: index,
                    via: None,
                    src: net.addr(),
                });
            }
        }
        for r in &spec.routes {
            // validate() guaranteed a connected route to the gateway.
            if let Some(gw) = routes.lookup(r.via).copied() {
                routes.add(Route {
                    dest: r.dest,
                    iface: gw.iface,
                    via: Some(r.via),
                    src: gw.src,
                });
            }
        }
        let mut host = Host {
            name: spec.name.clone(),
            ifaces,
            loopback: spec.loopback.clone(),
            routes,
            neigh: NeighTable::default(),
            ip_forward: false,
            sysctls: spec.sysctls.clone(),
            rules: Vec::new(),
            tables: BTreeMap::new(),
        };
        host.sysctls_changed();
        host
    }

    /// Takes the interfaces' effective values from [`Host::sysctls`] again, after a write.
    pub fn sysctls_changed(&mut self) {
        let s = &self.sysctls;
        self.ip_forward = s.ip_forward;
        for i in &mut self.ifaces {
            i.arp_ignore = s.arp_ignore.effective(&i.name);
            i.arp_announce = s.arp_announce.effective(&i.name);
            i.forwarding = s.forwarding.effective(&i.name) == 1;
        }
    }

    /// The route a policy rule gives a packet to `dst` with `mark`, ahead of the local table.
    pub fn policy_route(&self, dst: Ipv4Addr, mark: u32) -> Option<&crate::ipv4::Route> {
        self.rules
            .iter()
            .filter(|r| r.fwmark == mark && r.to.contains(dst))
            .find_map(|r| self.tables.get(&r.table)?.lookup(dst))
    }

    /// Whether `ip` is one of the host's addresses (any interface, `lo`, 127.0.0.0/8): the
    /// local table's `RTN_LOCAL`.
    pub fn is_local(&self, ip: Ipv4Addr) -> bool {
        ip.is_loopback() || self.loopback.contains(&ip) || self.ifaces.iter().any(|i| i.holds(ip))
    }

    /// Whether `ip` is a broadcast address of one of the host's subnets, or 255.255.255.255.
    pub fn is_broadcast(&self, ip: Ipv4Addr) -> bool {
        ip.is_broadcast()
            || self
                .ifaces
                .iter()
                .filter_map(|i| i.addr)
                .any(|n| n.prefix_len() < 31 && n.broadcast() == ip)
    }

    /// The index of the interface named `name`.
    pub fn iface_index(&self, name: &str) -> Option<usize> {
        self.ifaces.iter().position(|i| i.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NetSpec;

    #[test]
    fn connected_and_static_routes() {
        let mut spec = NetSpec::single(1).expect("single");
        spec.add_default_route("h1", Ipv4Addr::new(10, 0, 0, 254))
            .expect("route");
        spec.add_loopback("h1", Ipv4Addr::new(192, 0, 2, 1))
            .expect("lo");
        let h = Host::from_spec(&spec.hosts()[0]);
        let r = h.routes.lookup(Ipv4Addr::new(8, 8, 8, 8)).expect("default");
        assert_eq!(r.via, Some(Ipv4Addr::new(10, 0, 0, 254)));
        assert_eq!(r.src, Ipv4Addr::new(10, 0, 0, 1));
        assert!(h.is_local(Ipv4Addr::new(192, 0, 2, 1)) && h.is_local(Ipv4Addr::LOCALHOST));
        assert!(h.is_broadcast(Ipv4Addr::new(10, 0, 0, 255)));
        assert!(!h.is_local(Ipv4Addr::new(10, 0, 0, 2)));
    }
}
