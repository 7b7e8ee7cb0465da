//! [`RouteTable`]: a host's IPv4 routes, looked up by longest prefix.

use std::net::Ipv4Addr;

use crate::addr::Ipv4Net;

/// One route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destination prefix.
    pub dest: Ipv4Net,
    /// The outgoing interface's index.
    pub iface: usize,
    /// The gateway, or `None` for a connected route (the destination is the next hop).
    pub via: Option<Ipv4Addr>,
    /// The preferred source address (`src` in `ip route`): the interface's address.
    pub src: Ipv4Addr,
}

impl Route {
    /// The next hop for `dst`: the gateway, or `dst` itself on a connected route.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Ipv4Addr {
        self.via.unwrap_or(dst)
    }
}

/// The main routing table; the local table is the host's set of addresses.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Adds a route; among equal prefixes the first added wins.
    pub fn add(&mut self, route: Route) {
        self.routes.push(route);
    }

    /// The route with the longest prefix containing `dst`.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| r.dest.contains(dst))
            .fold(None, |best: Option<&Route>, r| match best {
                Some(b) if b.dest.prefix_len() >= r.dest.prefix_len() => Some(b),
                _ => Some(r),
            })
    }

    /// All routes, in the order added.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dest: &str, iface: usize) -> Route {
        Route {
            dest: dest.parse().expect("net"),
            iface,
            via: None,
            src: Ipv4Addr::new(10, 0, 0, 1),
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::default();
        t.add(route("0.0.0.0/0", 0));
        t.add(route("10.0.0.0/8", 1));
        t.add(route("10.1.0.0/16", 2));
        t.add(route("10.1.0.0/16", 3));
        let iface = |ip: [u8; 4]| t.lookup(Ipv4Addr::from(ip)).map(|r| r.iface);
        assert_eq!(iface([10, 1, 2, 3]), Some(2));
        assert_eq!(iface([10, 2, 2, 3]), Some(1));
        assert_eq!(iface([192, 0, 2, 1]), Some(0));
        assert_eq!(RouteTable::default().lookup(Ipv4Addr::LOCALHOST), None);
    }
}
