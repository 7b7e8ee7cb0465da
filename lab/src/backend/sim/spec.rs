//! The resolved [`Plan`] as the simulator's wiring list ([`NetSpec`]): the same hosts,
//! interface names, addresses, loopback addresses, default routes, sysctls, switches and links
//! that `lab up` creates. What the simulator does not model is refused here, with the host (or
//! link) and what it is, never dropped.

use crate::impair::Way;
use crate::resolve::{NodeKind, Plan};
use sim::{Endpoint, IfScope, Ipv4Net, MacAddr, NetSpec, Sysctl};

/// The MTU every simulated link has.
const SIM_MTU: u32 = 1500;

/// The wiring list of `plan`, or one line saying what in it cannot be simulated.
pub fn net_spec(plan: &Plan) -> Result<NetSpec, String> {
    let mut spec = NetSpec::new();
    let mut macs = 0u64;
    let mut next_mac = || {
        macs += 1;
        MacAddr::from_index(macs)
    };
    for h in &plan.hosts {
        spec.add_host(&h.name).map_err(|e| e.to_string())?;
        for i in &h.interfaces {
            if i.addresses.len() > 1 {
                return Err(format!(
                    "host {}: interface {} has {} addresses; the simulator models one per interface",
                    h.name,
                    i.name,
                    i.addresses.len()
                ));
            }
            let addr = match i.addresses.first() {
                Some(c) => Some(Ipv4Net::new(c.addr, c.prefix).ok_or_else(|| {
                    format!("host {}: bad prefix /{} on {}", h.name, c.prefix, i.name)
                })?),
                None => None,
            };
            spec.add_interface(&h.name, &i.name, next_mac(), addr)
                .map_err(|e| e.to_string())?;
        }
        for l in &h.loopback {
            if l.prefix != 32 {
                return Err(format!(
                    "host {}: loopback address {}/{}: the simulator models /32 loopback addresses only",
                    h.name, l.addr, l.prefix
                ));
            }
            spec.add_loopback(&h.name, l.addr)
                .map_err(|e| e.to_string())?;
        }
        if let Some(gw) = h.default_route {
            spec.add_default_route(&h.name, gw)
                .map_err(|e| e.to_string())?;
        }
        for s in &h.sysctls {
            let sysctl = sysctl(&s.key, &s.value)
                .map_err(|why| format!("host {}: sysctl {} = {}: {why}", h.name, s.key, s.value))?;
            if let Some(sysctl) = sysctl {
                spec.set_sysctl(&h.name, sysctl)
                    .map_err(|e| e.to_string())?;
            }
        }
        for rule in &h.iptables {
            spec.add_iptables(&h.name, &rule.written)
                .map_err(|e| e.to_string())?;
        }
        if let Some(nft) = &h.nft {
            spec.set_nft(&h.name, nft).map_err(|e| e.to_string())?;
        }
    }
    for s in &plan.switches {
        spec.add_bridge(&s.name).map_err(|e| e.to_string())?;
    }
    for (i, l) in plan.links.iter().enumerate() {
        if let Some(mtu) = l.mtu.filter(|m| *m != SIM_MTU) {
            return Err(format!(
                "link {}:{} - {}:{}: mtu {mtu}: the simulator's links have mtu {SIM_MTU}",
                l.a.node, l.a.iface, l.b.node, l.b.iface
            ));
        }
        let impair = crate::impair::tclink::of_link(l)?;
        if let Some(e) = [&l.a, &l.b].into_iter().find(|e| e.mac.is_some()) {
            return Err(format!(
                "{}:{}: a chosen MAC address cannot be simulated yet",
                e.node, e.iface
            ));
        }
        let end = |e: &crate::resolve::Endpoint| match e.kind {
            NodeKind::Host => Endpoint::host(&e.node, &e.iface),
            NodeKind::Switch => Endpoint::bridge(&e.node, &e.iface),
        };
        spec.add_link(end(&l.a), end(&l.b))
            .map_err(|e| e.to_string())?;
        // The same streams as the lab's engines: one seed, one drop pattern in both.
        for way in [Way::Forward, Way::Reverse] {
            let p = impair.clone().unwrap_or_default().way(way).clone();
            let stream = p.stream(i, way);
            spec.impair_link(i, way, p, stream)
                .map_err(|e| e.to_string())?;
        }
    }
    spec.validate().map_err(|e| e.to_string())?;
    Ok(spec)
}

/// A topology sysctl as the simulator's; `None` for a value that is the simulated kernel's
/// own behaviour anyway (`rp_filter = 0`).
fn sysctl(key: &str, value: &str) -> Result<Option<Sysctl>, String> {
    let number = || -> Result<u8, String> {
        value
            .trim()
            .parse()
            .map_err(|_| format!("{value:?} is not a number"))
    };
    if key == "net.ipv4.ip_forward" {
        return match value.trim() {
            "0" | "false" => Ok(Some(Sysctl::IpForward(false))),
            "1" | "true" => Ok(Some(Sysctl::IpForward(true))),
            _ => Err("ip_forward is 0 or 1".into()),
        };
    }
    if let Some(rest) = key.strip_prefix("net.ipv4.conf.") {
        if let Some((scope, name)) = rest.rsplit_once('.') {
            let scope = match scope {
                "all" => IfScope::All,
                iface => IfScope::Interface(iface.to_string()),
            };
            return match name {
                "arp_ignore" => Ok(Some(Sysctl::ArpIgnore(scope, number()?))),
                "arp_announce" => Ok(Some(Sysctl::ArpAnnounce(scope, number()?))),
                "rp_filter" if number()? == 0 => Ok(None),
                _ => Err("not simulated".into()),
            };
        }
    }
    Err("not simulated".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::builtin;

    #[test]
    fn single_3_becomes_three_hosts_on_one_bridge() {
        let plan = crate::resolve(&builtin("single,3").unwrap()).unwrap();
        let spec = net_spec(&plan).unwrap();
        let names: Vec<&str> = spec.hosts().iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["h1", "h2", "h3"]);
        assert_eq!(spec.hosts()[0].interfaces[0].name, "h1-eth0");
        assert_eq!(spec.bridges().len(), 1);
        assert_eq!(spec.links().len(), 3);
    }

    #[test]
    fn what_is_not_simulated_is_named() {
        assert_eq!(
            sysctl("net.ipv4.tcp_syncookies", "1").unwrap_err(),
            "not simulated"
        );
        assert!(
            sysctl("net.ipv4.conf.all.rp_filter", "0")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            sysctl("net.ipv4.conf.h1-eth0.arp_ignore", "1").unwrap(),
            Some(Sysctl::ArpIgnore(IfScope::Interface("h1-eth0".into()), 1))
        );
    }
}
