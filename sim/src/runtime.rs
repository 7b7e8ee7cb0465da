//! Changes a program makes to its host while the world runs (`impl World`): addresses, sysctls,
//! iptables rules, policy rules and routing tables, raw IPv4 sends, and a queue closed by a
//! dying process. What `lb server` and `lb agent` do to a namespace, as calls.

use std::net::Ipv4Addr;

use netfilter_model::Table;

use crate::addr::{Ipv4Net, MacAddr};
use crate::error::SimError;
use crate::frame;
use crate::hooks::{Ct, ip_dst};
use crate::host::PolicyRule;
use crate::ipv4::{Route, RouteTable};
use crate::nfqueue::NfqId;
use crate::spec::Sysctl;
use crate::world::World;

/// One interface of a host as `ip addr` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfInfo {
    /// Its name (`lo` for loopback).
    pub name: String,
    /// Its MAC address (zero for `lo`).
    pub mac: MacAddr,
    /// Its addresses with their prefixes, the primary first.
    pub addrs: Vec<Ipv4Net>,
}

impl World {
    /// The interfaces of `host`, `lo` first, with their addresses.
    pub fn interfaces(&self, host: &str) -> Result<Vec<IfInfo>, SimError> {
        let h = &self.hosts[self.host_index(host)?];
        let host32 = |a: Ipv4Addr| Ipv4Net::new(a, 32).expect("a /32 is valid");
        let mut lo = vec![Ipv4Net::new(Ipv4Addr::LOCALHOST, 8).expect("127/8 is valid")];
        lo.extend(h.loopback.iter().copied().map(host32));
        let mut out = vec![IfInfo {
            name: "lo".into(),
            mac: MacAddr::ZERO,
            addrs: lo,
        }];
        for i in &h.ifaces {
            let mut addrs: Vec<Ipv4Net> = i.addr.into_iter().collect();
            addrs.extend(i.secondary.iter().copied().map(host32));
            out.push(IfInfo {
                name: i.name.clone(),
                mac: i.mac,
                addrs,
            });
        }
        Ok(out)
    }

    /// `ip addr add ADDR/32 dev IFACE` (`lo` included); `false` if the interface held it
    /// already.
    pub fn add_address(
        &mut self,
        host: &str,
        iface: &str,
        addr: Ipv4Addr,
    ) -> Result<bool, SimError> {
        let h = self.host_index(host)?;
        let primary = self.hosts[h]
            .iface_index(iface)
            .and_then(|i| self.hosts[h].ifaces[i].addr);
        let list = self.address_list(h, iface)?;
        if primary.map(|n| n.addr()) == Some(addr) || list.contains(&addr) {
            return Ok(false);
        }
        list.push(addr);
        Ok(true)
    }

    /// `ip addr del ADDR/32 dev IFACE` of an address added at run time or on `lo`; `false` if
    /// the interface did not hold it.
    pub fn del_address(
        &mut self,
        host: &str,
        iface: &str,
        addr: Ipv4Addr,
    ) -> Result<bool, SimError> {
        let h = self.host_index(host)?;
        let list = self.address_list(h, iface)?;
        let before = list.len();
        list.retain(|a| *a != addr);
        Ok(list.len() < before)
    }

    /// The addresses added to interface `iface` of host `h` (`lo`: those besides 127/8).
    fn address_list(&mut self, h: usize, iface: &str) -> Result<&mut Vec<Ipv4Addr>, SimError> {
        if iface == "lo" {
            return Ok(&mut self.hosts[h].loopback);
        }
        let i = self.hosts[h]
            .iface_index(iface)
            .ok_or_else(|| SimError::UnknownInterface {
                host: self.hosts[h].name.clone(),
                interface: iface.to_string(),
            })?;
        Ok(&mut self.hosts[h].ifaces[i].secondary)
    }

    /// `sysctl -w`: one of the modelled sysctls of `host` (others are refused).
    pub fn set_sysctl(&mut self, host: &str, sysctl: Sysctl) -> Result<(), SimError> {
        let h = self.host_index(host)?;
        let hs = &mut self.hosts[h];
        let names: Vec<String> = hs.ifaces.iter().map(|i| i.name.clone()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        hs.sysctls.apply(host, &names, sysctl)?;
        hs.sysctls_changed();
        Ok(())
    }

    /// The sysctls of `host` as written so far.
    pub fn sysctls(&self, host: &str) -> Result<&crate::spec::Sysctls, SimError> {
        Ok(&self.hosts[self.host_index(host)?].sysctls)
    }

    /// Runs one iptables command line on `host` (`-t filter -I INPUT …`), as the topology
    /// files write them; a rule the simulator cannot evaluate is refused, naming the host.
    pub fn iptables(&mut self, host: &str, line: &str) -> Result<(), SimError> {
        let h = self.host_index(host)?;
        let cmd = netfilter_model::iptables::parse(line).map_err(|e| e.on_host(host))?;
        let nf = &mut self.nf[h];
        nf.ruleset.apply(&cmd).map_err(|e| e.on_host(host))?;
        nf.rebuild();
        Ok(())
    }

    /// Removes the rules of `host` tagged `-m comment --comment TAG`; how many.
    pub fn iptables_remove_tagged(&mut self, host: &str, tag: &str) -> Result<usize, SimError> {
        let h = self.host_index(host)?;
        let nf = &mut self.nf[h];
        let n = nf.ruleset.remove_tagged(tag);
        nf.rebuild();
        Ok(n)
    }

    /// `iptables -t TABLE -S [CHAIN]` of `host`; `None` for a chain that does not exist.
    pub fn iptables_list(
        &self,
        host: &str,
        table: Table,
        chain: Option<&str>,
    ) -> Result<Option<Vec<String>>, SimError> {
        let h = self.host_index(host)?;
        Ok(self.nf[h].ruleset.list_rules(table, chain))
    }

    /// `ip rule add to TO fwmark M lookup T`, ahead of the local table's rule.
    pub fn add_policy_rule(&mut self, host: &str, rule: PolicyRule) -> Result<(), SimError> {
        let h = self.host_index(host)?;
        let rules = &mut self.hosts[h].rules;
        if !rules.contains(&rule) {
            rules.push(rule);
        }
        Ok(())
    }

    /// Removes the policy rules of `host` to `to`; how many.
    pub fn del_policy_rules(&mut self, host: &str, to: Ipv4Net) -> Result<usize, SimError> {
        let h = self.host_index(host)?;
        let rules = &mut self.hosts[h].rules;
        let before = rules.len();
        rules.retain(|r| r.to != to);
        Ok(before - rules.len())
    }

    /// `ip route replace DEST via GW table T`: the gateway must be on a connected subnet.
    pub fn set_table_route(
        &mut self,
        host: &str,
        table: u32,
        dest: Ipv4Net,
        via: Ipv4Addr,
    ) -> Result<(), SimError> {
        let h = self.host_index(host)?;
        let hs = &mut self.hosts[h];
        let gw = hs
            .routes
            .routes()
            .iter()
            .find(|r| r.via.is_none() && r.dest.contains(via))
            .copied()
            .ok_or_else(|| SimError::NoRoute {
                host: host.to_string(),
                dst: via,
            })?;
        let t = hs.tables.entry(table).or_default();
        let mut kept = RouteTable::default();
        for r in t.routes().iter().filter(|r| r.dest != dest) {
            kept.add(*r);
        }
        kept.add(Route {
            dest,
            iface: gw.iface,
            via: Some(via),
            src: gw.src,
        });
        *t = kept;
        Ok(())
    }

    /// A raw IPv4 socket's send with the header included (`IPPROTO_RAW`): the packet is
    /// routed by its destination and goes through OUTPUT and POSTROUTING as it is; to a local
    /// address it comes back in through `lo`.
    pub fn raw_send(&mut self, host: &str, packet: Vec<u8>) -> Result<(), SimError> {
        let h = self.host_index(host)?;
        let dst = match frame::parse_ipv4(&packet) {
            Some(_) => ip_dst(&packet),
            None => {
                return Err(SimError::NotModelled {
                    host: host.to_string(),
                    dst: std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    what: "a raw send of bytes that are not one whole IPv4 packet",
                });
            }
        };
        self.send_local(h, dst, packet, Ct::None);
        Ok(())
    }

    /// The process bound to queue `id` is gone (its netlink socket closed): the queue is
    /// unbound and the packets waiting in it are dropped, as the kernel flushes them.
    pub fn nfq_unbind(&mut self, id: NfqId) -> Result<usize, SimError> {
        let q = self.nf[id.host]
            .queues
            .0
            .get_mut(&id.queue)
            .ok_or(SimError::UnknownQueue {
                id: usize::from(id.queue),
            })?;
        q.bound = None;
        let dropped = q.waiting.len();
        q.waiting.clear();
        Ok(dropped)
    }
}
