//! The input model: [`NetSpec`], a wiring list of hosts, bridges and links (Mininet style).
//!
//! The spec is plain data, checked as it is built: every `add_*` call names the host, bridge
//! or link it was about in its [`SpecError`]. [`NetSpec::validate`] checks what only the whole
//! spec can tell (a gateway reachable through a connected route). Routes to the connected
//! subnets of interfaces are implicit, as the kernel adds them with the address.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use crate::addr::{Ipv4Net, MacAddr};

/// A whole simulated network before it is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSpec {
    hosts: Vec<HostSpec>,
    bridges: Vec<BridgeSpec>,
    links: Vec<LinkSpec>,
}

/// One host: a network namespace with its interfaces, loopback addresses, routes and sysctls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// The host's name, unique among hosts and bridges.
    pub name: String,
    /// Its Ethernet interfaces, in the order they were added.
    pub interfaces: Vec<InterfaceSpec>,
    /// Addresses on `lo` besides 127.0.0.1 (each a /32, as a VIP is added).
    pub loopback: Vec<Ipv4Addr>,
    /// Static routes, besides the implicit connected ones.
    pub routes: Vec<RouteSpec>,
    /// The modelled sysctls.
    pub sysctls: Sysctls,
    /// iptables rules as topology files write them (`-t nat -A POSTROUTING -j MASQUERADE`),
    /// loaded in order.
    pub iptables: Vec<String>,
    /// An nft ruleset, loaded after the iptables rules.
    pub nft: Option<String>,
}

/// One Ethernet interface of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// The interface name, unique in its host (`h1-eth0`).
    pub name: String,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its IPv4 address and prefix, if it has one.
    pub addr: Option<Ipv4Net>,
}

/// A static route: `ip route add <dest> via <via>` (`dest` 0.0.0.0/0 is `default via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// The destination prefix.
    pub dest: Ipv4Net,
    /// The gateway; it must be inside a connected subnet of the host.
    pub via: Ipv4Addr,
}

/// The sysctls the simulator honours; everything else is the kernel default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sysctls {
    /// `net.ipv4.ip_forward`.
    pub ip_forward: bool,
    /// `net.ipv4.conf.{all,<if>}.arp_ignore` (0 or 1).
    pub arp_ignore: PerInterface,
    /// `net.ipv4.conf.{all,<if>}.arp_announce` (0 or 2).
    pub arp_announce: PerInterface,
    /// `net.ipv4.conf.<if>.forwarding` (0 or 1): forwarding of what arrives on `<if>`;
    /// `conf.all.forwarding` is `ip_forward`.
    pub forwarding: PerInterface,
}

impl Sysctls {
    /// Writes one sysctl of host `host` whose interfaces are `interfaces`; values the
    /// simulator does not model are refused.
    pub fn apply(
        &mut self,
        host: &str,
        interfaces: &[&str],
        sysctl: Sysctl,
    ) -> Result<(), SpecError> {
        let unsupported = |name, value, supported| SpecError::UnsupportedSysctl {
            host: host.to_string(),
            name,
            value,
            supported,
        };
        let (table, scope, value) = match sysctl {
            Sysctl::IpForward(on) | Sysctl::Forwarding(IfScope::All, on) => {
                self.ip_forward = on;
                return Ok(());
            }
            Sysctl::Forwarding(scope, on) => (&mut self.forwarding, scope, u8::from(on)),
            // ICMP redirects are not modelled: the simulator sends none, whatever the value.
            Sysctl::SendRedirects(..) => return Ok(()),
            Sysctl::ArpIgnore(scope, v) => {
                if v > 1 {
                    return Err(unsupported("arp_ignore", v, "0, 1"));
                }
                (&mut self.arp_ignore, scope, v)
            }
            Sysctl::ArpAnnounce(scope, v) => {
                if v != 0 && v != 2 {
                    return Err(unsupported("arp_announce", v, "0, 2"));
                }
                (&mut self.arp_announce, scope, v)
            }
        };
        match scope {
            IfScope::All => table.all = value,
            IfScope::Interface(name) => {
                if !interfaces.contains(&name.as_str()) {
                    return Err(SpecError::UnknownInterface {
                        host: host.to_string(),
                        interface: name,
                    });
                }
                table.interfaces.insert(name, value);
            }
        }
        Ok(())
    }
}

/// A `net.ipv4.conf` value set for `all` and per interface; the kernel uses the larger.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PerInterface {
    /// The `all` value.
    pub all: u8,
    /// Values for named interfaces.
    pub interfaces: BTreeMap<String, u8>,
}

impl PerInterface {
    /// The value in effect on `interface`: the larger of `all` and its own, as the kernel's
    /// `IN_DEV_ARP_IGNORE` / `IN_DEV_ARP_ANNOUNCE` take it.
    pub fn effective(&self, interface: &str) -> u8 {
        self.all
            .max(self.interfaces.get(interface).copied().unwrap_or(0))
    }
}

/// Which `net.ipv4.conf` entry a sysctl is written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfScope {
    /// `net.ipv4.conf.all`.
    All,
    /// `net.ipv4.conf.<name>`.
    Interface(String),
}

/// One sysctl write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sysctl {
    /// `net.ipv4.ip_forward`.
    IpForward(bool),
    /// `arp_ignore`: 0 answers for any local address, 1 only for addresses on the receiving
    /// interface. Other values are not modelled.
    ArpIgnore(IfScope, u8),
    /// `arp_announce`: 0 uses the waiting packet's source address, 2 the best local address
    /// for the target. Value 1 is not modelled.
    ArpAnnounce(IfScope, u8),
    /// `forwarding`: `all` is `ip_forward`; per interface, forwarding of what arrives on it.
    Forwarding(IfScope, bool),
    /// `send_redirects`: accepted, but the simulator sends no ICMP redirects (docs/sim.md).
    SendRedirects(IfScope, bool),
}

/// A bridge (a Linux learning bridge, no STP, no VLANs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// The bridge's name, unique among hosts and bridges.
    pub name: String,
    /// Its port names, in the order links added them.
    pub ports: Vec<String>,
}

/// One end of a link.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    /// A host's interface (it must exist when the link is added).
    Host {
        /// The host.
        host: String,
        /// The interface.
        interface: String,
    },
    /// A bridge port (created by the link if the bridge has no port of that name).
    Bridge {
        /// The bridge.
        bridge: String,
        /// The port.
        port: String,
    },
}

impl Endpoint {
    /// A host interface endpoint.
    pub fn host(host: &str, interface: &str) -> Endpoint {
        Endpoint::Host {
            host: host.to_string(),
            interface: interface.to_string(),
        }
    }

    /// A bridge port endpoint.
    pub fn bridge(bridge: &str, port: &str) -> Endpoint {
        Endpoint::Bridge {
            bridge: bridge.to_string(),
            port: port.to_string(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Host { host, interface } => write!(f, "{host}:{interface}"),
            Endpoint::Bridge { bridge, port } => write!(f, "{bridge}:{port}"),
        }
    }
}

/// A point-to-point link (a veth pair) between two endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// One end.
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// Impairments from `a` to `b` and from `b` to `a`, each with its decider's stream
    /// ([`crate::impair::stream_seed`]).
    pub impair: [Option<(crate::impair::Impairment, u64)>; 2],
}

/// What is wrong with a spec; each variant names the host, bridge, interface or link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A link index past the links added.
    #[error("no link {link}: {count} links were added")]
    NoSuchLink {
        /// The index asked for.
        link: usize,
        /// How many links there are.
        count: usize,
    },
    /// A second host or bridge with a name already taken.
    #[error("name {name:?} is already used by a host or bridge")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A host name that was never added.
    #[error("no host named {host:?}")]
    UnknownHost {
        /// The name.
        host: String,
    },
    /// A bridge name that was never added.
    #[error("no bridge named {bridge:?}")]
    UnknownBridge {
        /// The name.
        bridge: String,
    },
    /// An interface the host does not have.
    #[error("host {host:?} has no interface {interface:?}")]
    UnknownInterface {
        /// The host.
        host: String,
        /// The interface.
        interface: String,
    },
    /// A second interface with a name the host already has (`lo` included).
    #[error("host {host:?} already has an interface {interface:?}")]
    DuplicateInterface {
        /// The host.
        host: String,
        /// The interface.
        interface: String,
    },
    /// An address that is unusable on an interface (multicast, broadcast, 0.0.0.0, loopback).
    #[error("host {host:?}: {addr} cannot be an interface address ({why})")]
    BadAddress {
        /// The host.
        host: String,
        /// The address.
        addr: Ipv4Addr,
        /// Why.
        why: &'static str,
    },
    /// An address the host already holds.
    #[error("host {host:?} already holds {addr}")]
    DuplicateAddress {
        /// The host.
        host: String,
        /// The address.
        addr: Ipv4Addr,
    },
    /// An endpoint already used by another link.
    #[error("link {link}: {endpoint} is already linked")]
    EndpointInUse {
        /// The link refused, `a <-> b`.
        link: String,
        /// The end already in use.
        endpoint: Endpoint,
    },
    /// A link from an endpoint to itself.
    #[error("link {endpoint} <-> {endpoint}: both ends are the same")]
    SelfLink {
        /// The endpoint.
        endpoint: Endpoint,
    },
    /// A second static route to the same prefix.
    #[error("host {host:?} already has a route to {dest}")]
    DuplicateRoute {
        /// The host.
        host: String,
        /// The prefix.
        dest: Ipv4Net,
    },
    /// A gateway outside every connected subnet of the host (the kernel says "Nexthop has
    /// invalid gateway").
    #[error("host {host:?}: route to {dest} via {via}: the gateway is on no connected subnet")]
    GatewayUnreachable {
        /// The host.
        host: String,
        /// The route's prefix.
        dest: Ipv4Net,
        /// The gateway.
        via: Ipv4Addr,
    },
    /// A sysctl value the simulator does not model.
    #[error("host {host:?}: {name}={value} is not modelled (supported: {supported})")]
    UnsupportedSysctl {
        /// The host.
        host: String,
        /// The sysctl.
        name: &'static str,
        /// The value given.
        value: u8,
        /// The values that are modelled.
        supported: &'static str,
    },
}

impl NetSpec {
    /// An empty network.
    pub fn new() -> NetSpec {
        NetSpec::default()
    }

    /// Mininet's `single,n`: bridge `s1`; hosts `h1..hn`, each with `hK-eth0`
    /// (MAC `00:00:00:00:00:0K`, 10.0.0.K/24) linked to port `s1-ethK`.
    pub fn single(n: u8) -> Result<NetSpec, SpecError> {
        let mut net = NetSpec::new();
        net.add_bridge("s1")?;
        for k in 1..=n {
            let host = format!("h{k}");
            let iface = format!("{host}-eth0");
            net.add_host(&host)?;
            let addr = Ipv4Net::new(Ipv4Addr::new(10, 0, 0, k), 24);
            net.add_interface(&host, &iface, MacAddr::from_index(u64::from(k)), addr)?;
            net.add_link(
                Endpoint::host(&host, &iface),
                Endpoint::bridge("s1", &format!("s1-eth{k}")),
            )?;
        }
        Ok(net)
    }

    /// The hosts, in the order they were added.
    pub fn hosts(&self) -> &[HostSpec] {
        &self.hosts
    }

    /// The bridges, in the order they were added.
    pub fn bridges(&self) -> &[BridgeSpec] {
        &self.bridges
    }

    /// Impairs link `link` (its index in the order links were added) in the direction `way`
    /// (`Forward`: from its `a` to its `b`), drawing fates from the stream `stream`.
    pub fn impair_link(
        &mut self,
        link: usize,
        way: crate::impair::Way,
        imp: crate::impair::Impairment,
        stream: u64,
    ) -> Result<&mut NetSpec, SpecError> {
        let count = self.links.len();
        let l = self
            .links
            .get_mut(link)
            .ok_or(SpecError::NoSuchLink { link, count })?;
        let slot = usize::from(way == crate::impair::Way::Reverse);
        l.impair[slot] = (!imp.is_empty()).then_some((imp, stream));
        Ok(self)
    }

    /// The links, in the order they were added.
    pub fn links(&self) -> &[LinkSpec] {
        &self.links
    }

    fn name_taken(&self, name: &str) -> bool {
        self.hosts.iter().any(|h| h.name == name) || self.bridges.iter().any(|b| b.name == name)
    }

    /// Adds a host with no interfaces, no extra addresses, no routes and default sysctls.
    pub fn add_host(&mut self, name: &str) -> Result<&mut NetSpec, SpecError> {
        if self.name_taken(name) {
            return Err(SpecError::DuplicateName {
                name: name.to_string(),
            });
        }
        self.hosts.push(HostSpec {
            name: name.to_string(),
            interfaces: Vec::new(),
            loopback: Vec::new(),
            routes: Vec::new(),
            sysctls: Sysctls::default(),
            iptables: Vec::new(),
            nft: None,
        });
        Ok(self)
    }

    /// Adds an iptables rule to `host` (checked when the world is built).
    pub fn add_iptables(&mut self, host: &str, rule: &str) -> Result<&mut NetSpec, SpecError> {
        self.host_mut(host)?.iptables.push(rule.to_string());
        Ok(self)
    }

    /// Sets `host`'s nft ruleset (checked when the world is built).
    pub fn set_nft(&mut self, host: &str, ruleset: &str) -> Result<&mut NetSpec, SpecError> {
        self.host_mut(host)?.nft = Some(ruleset.to_string());
        Ok(self)
    }

    /// Adds a bridge with no ports (links add them).
    pub fn add_bridge(&mut self, name: &str) -> Result<&mut NetSpec, SpecError> {
        if self.name_taken(name) {
            return Err(SpecError::DuplicateName {
                name: name.to_string(),
            });
        }
        self.bridges.push(BridgeSpec {
            name: name.to_string(),
            ports: Vec::new(),
        });
        Ok(self)
    }

    fn host_mut(&mut self, host: &str) -> Result<&mut HostSpec, SpecError> {
        self.hosts
            .iter_mut()
            .find(|h| h.name == host)
            .ok_or_else(|| SpecError::UnknownHost {
                host: host.to_string(),
            })
    }

    /// Adds an Ethernet interface to `host`, with an address or none.
    pub fn add_interface(
        &mut self,
        host: &str,
        interface: &str,
        mac: MacAddr,
        addr: Option<Ipv4Net>,
    ) -> Result<&mut NetSpec, SpecError> {
        let h = self.host_mut(host)?;
        if interface == "lo" || h.interfaces.iter().any(|i| i.name == interface) {
            return Err(SpecError::DuplicateInterface {
                host: host.to_string(),
                interface: interface.to_string(),
            });
        }
        if let Some(net) = addr {
            check_unicast(host, net.addr())?;
            if net.prefix_len() < 31 && net.addr() == net.broadcast() {
                return Err(SpecError::BadAddress {
                    host: host.to_string(),
                    addr: net.addr(),
                    why: "it is the subnet's broadcast address",
                });
            }
            check_new_addr(h, net.addr())?;
        }
        h.interfaces.push(InterfaceSpec {
            name: interface.to_string(),
            mac,
            addr,
        });
        Ok(self)
    }

    /// Adds `addr/32` to `host`'s `lo` (a VIP, as the balancer's backends hold it).
    pub fn add_loopback(&mut self, host: &str, addr: Ipv4Addr) -> Result<&mut NetSpec, SpecError> {
        check_unicast(host, addr)?;
        let h = self.host_mut(host)?;
        check_new_addr(h, addr)?;
        h.loopback.push(addr);
        Ok(self)
    }

    /// Adds `ip route add <dest> via <via>` to `host` (checked by [`NetSpec::validate`]).
    pub fn add_route(
        &mut self,
        host: &str,
        dest: Ipv4Net,
        via: Ipv4Addr,
    ) -> Result<&mut NetSpec, SpecError> {
        let h = self.host_mut(host)?;
        let dest = dest.network();
        if h.routes.iter().any(|r| r.dest == dest) {
            return Err(SpecError::DuplicateRoute {
                host: host.to_string(),
                dest,
            });
        }
        h.routes.push(RouteSpec { dest, via });
        Ok(self)
    }

    /// Adds `ip route add default via <via>` to `host`.
    pub fn add_default_route(
        &mut self,
        host: &str,
        via: Ipv4Addr,
    ) -> Result<&mut NetSpec, SpecError> {
        self.add_route(host, Ipv4Net::DEFAULT, via)
    }

    /// Writes one sysctl of `host`; values the simulator does not model are refused.
    pub fn set_sysctl(&mut self, host: &str, sysctl: Sysctl) -> Result<&mut NetSpec, SpecError> {
        let h = self.host_mut(host)?;
        let names: Vec<String> = h.interfaces.iter().map(|i| i.name.clone()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        h.sysctls.apply(host, &names, sysctl)?;
        Ok(self)
    }

    /// Links two endpoints; a bridge port endpoint is created if the bridge lacks it.
    pub fn add_link(&mut self, a: Endpoint, b: Endpoint) -> Result<&mut NetSpec, SpecError> {
        if a == b {
            return Err(SpecError::SelfLink { endpoint: a });
        }
        for end in [&a, &b] {
            self.check_endpoint(end)?;
            let used = self.links.iter().any(|l| l.a == *end || l.b == *end);
            if used {
                return Err(SpecError::EndpointInUse {
                    link: format!("{a} <-> {b}"),
                    endpoint: end.clone(),
                });
            }
        }
        for end in [&a, &b] {
            if let Endpoint::Bridge { bridge, port } = end {
                if let Some(br) = self.bridges.iter_mut().find(|x| x.name == *bridge) {
                    if !br.ports.contains(port) {
                        br.ports.push(port.clone());
                    }
                }
            }
        }
        self.links.push(LinkSpec {
            a,
            b,
            impair: [None, None],
        });
        Ok(self)
    }

    fn check_endpoint(&self, end: &Endpoint) -> Result<(), SpecError> {
        match end {
            Endpoint::Host { host, interface } => {
                let h = self
                    .hosts
                    .iter()
                    .find(|h| h.name == *host)
                    .ok_or_else(|| SpecError::UnknownHost { host: host.clone() })?;
                if h.interfaces.iter().any(|i| i.name == *interface) {
                    Ok(())
                } else {
                    Err(SpecError::UnknownInterface {
                        host: host.clone(),
                        interface: interface.clone(),
                    })
                }
            }
            Endpoint::Bridge { bridge, .. } => {
                if self.bridges.iter().any(|b| b.name == *bridge) {
                    Ok(())
                } else {
                    Err(SpecError::UnknownBridge {
                        bridge: bridge.clone(),
                    })
                }
            }
        }
    }

    /// Checks what only the whole spec tells: every gateway is on a connected subnet.
    pub fn validate(&self) -> Result<(), SpecError> {
        for h in &self.hosts {
            for r in &h.routes {
                let connected = h
                    .interfaces
                    .iter()
                    .filter_map(|i| i.addr)
                    .any(|net| net.contains(r.via));
                if !connected {
                    return Err(SpecError::GatewayUnreachable {
                        host: h.name.clone(),
                        dest: r.dest,
                        via: r.via,
                    });
                }
            }
        }
        Ok(())
    }
}

fn check_unicast(host: &str, addr: Ipv4Addr) -> Result<(), SpecError> {
    let why = if addr.is_unspecified() {
        "it is 0.0.0.0"
    } else if addr.is_multicast() {
        "it is multicast"
    } else if addr.is_broadcast() {
        "it is the limited broadcast address"
    } else if addr.is_loopback() {
        "127.0.0.0/8 is lo's already"
    } else {
        return Ok(());
    };
    Err(SpecError::BadAddress {
        host: host.to_string(),
        addr,
        why,
    })
}

fn check_new_addr(h: &HostSpec, addr: Ipv4Addr) -> Result<(), SpecError> {
    let held = h.loopback.contains(&addr)
        || h.interfaces
            .iter()
            .any(|i| i.addr.map(|n| n.addr()) == Some(addr));
    if held {
        Err(SpecError::DuplicateAddress {
            host: h.name.clone(),
            addr,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("net")
    }

    #[test]
    fn single_reads_like_mininet() {
        let spec = NetSpec::single(3).expect("single");
        assert_eq!(spec.hosts().len(), 3);
        assert_eq!(spec.bridges()[0].ports, ["s1-eth1", "s1-eth2", "s1-eth3"]);
        assert_eq!(spec.hosts()[2].interfaces[0].addr, Some(net("10.0.0.3/24")));
        assert_eq!(
            spec.links()[1],
            LinkSpec {
                a: Endpoint::host("h2", "h2-eth0"),
                b: Endpoint::bridge("s1", "s1-eth2"),
                impair: [None, None],
            }
        );
        assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn errors_name_what_was_wrong() {
        let mut spec = NetSpec::single(2).expect("single");
        assert_eq!(
            spec.add_host("s1").err(),
            Some(SpecError::DuplicateName { name: "s1".into() })
        );
        let e = spec
            .add_link(
                Endpoint::host("h1", "h1-eth0"),
                Endpoint::bridge("s1", "p9"),
            )
            .expect_err("in use");
        assert_eq!(
            e.to_string(),
            "link h1:h1-eth0 <-> s1:p9: h1:h1-eth0 is already linked"
        );
        let e = spec
            .add_link(Endpoint::host("h9", "x"), Endpoint::bridge("s1", "p9"))
            .expect_err("unknown");
        assert_eq!(e, SpecError::UnknownHost { host: "h9".into() });
        let e = spec
            .set_sysctl("h1", Sysctl::ArpIgnore(IfScope::All, 2))
            .expect_err("2");
        assert_eq!(
            e.to_string(),
            "host \"h1\": arp_ignore=2 is not modelled (supported: 0, 1)"
        );
        let e = spec
            .set_sysctl(
                "h1",
                Sysctl::ArpAnnounce(IfScope::Interface("eth7".into()), 2),
            )
            .expect_err("eth7");
        assert!(matches!(e, SpecError::UnknownInterface { .. }), "{e}");
        let e = spec
            .add_loopback("h1", Ipv4Addr::new(10, 0, 0, 1))
            .expect_err("dup");
        assert!(matches!(e, SpecError::DuplicateAddress { .. }), "{e}");
        let e = spec
            .add_interface("h1", "lo", MacAddr::ZERO, None)
            .expect_err("lo");
        assert!(matches!(e, SpecError::DuplicateInterface { .. }), "{e}");
    }

    #[test]
    fn gateway_must_be_connected() {
        let mut spec = NetSpec::single(1).expect("single");
        spec.add_default_route("h1", Ipv4Addr::new(10, 0, 9, 1))
            .expect("route");
        assert_eq!(
            spec.validate().expect_err("gw").to_string(),
            "host \"h1\": route to 0.0.0.0/0 via 10.0.9.1: the gateway is on no connected subnet"
        );
    }

    #[test]
    fn effective_is_the_larger() {
        let mut spec = NetSpec::single(1).expect("single");
        spec.set_sysctl(
            "h1",
            Sysctl::ArpIgnore(IfScope::Interface("h1-eth0".into()), 1),
        )
        .expect("ok");
        let s = &spec.hosts()[0].sysctls;
        assert_eq!(s.arp_ignore.effective("h1-eth0"), 1);
        assert_eq!(s.arp_ignore.effective("other"), 0);
    }
}
