//! The balancer's fast path (`lb server --fast-path`) as the kernel runs it: an nftables
//! netdev table at an interface's ingress whose map sends a known flow's packets to its backend
//! with `fwd ip to … device` (the neighbour layer addresses the frame, the TTL is decremented),
//! before the IP stack, and so before any netfilter hook or queue, sees them. Fragments, TCP
//! segments with FIN or RST, and flows not in the map go on into the stack, as the rules
//! `lb_core::rules::FastPathRules` writes say.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::error::SimError;
use crate::flowmap::FastTable;
pub use crate::flowmap::FlowKey;
use crate::frame;
use crate::world::World;

impl World {
    /// Installs the fast path's table at the ingress of `ifname` in `host` (replacing one
    /// there): packets to `vip` of the protocols given (`tcp`, `udp`) are looked up.
    pub fn fast_install(
        &mut self,
        host: &str,
        ifname: &str,
        vip: Ipv4Addr,
        protocols: &[String],
    ) -> Result<(), SimError> {
        let h = self.host_index(host)?;
        let iface =
            self.hosts[h]
                .iface_index(ifname)
                .ok_or_else(|| SimError::UnknownInterface {
                    host: host.to_string(),
                    interface: ifname.to_string(),
                })?;
        let has = |p: &str| protocols.iter().any(|x| x == p);
        self.fast.insert(
            h,
            FastTable {
                iface,
                vip,
                tcp: has("tcp"),
                udp: has("udp"),
                flows: HashMap::new(),
            },
        );
        Ok(())
    }

    /// Removes `host`'s table, flows and all.
    pub fn fast_remove(&mut self, host: &str) -> Result<(), SimError> {
        let h = self.host_index(host)?;
        self.fast.remove(&h);
        Ok(())
    }

    /// Puts `key → backend` in `host`'s map (`None`: takes the key out).
    pub fn fast_set(
        &mut self,
        host: &str,
        key: FlowKey,
        backend: Option<Ipv4Addr>,
    ) -> Result<(), SimError> {
        let h = self.host_index(host)?;
        if let Some(t) = self.fast.get_mut(&h) {
            match backend {
                Some(b) => t.flows.insert(key, b),
                None => t.flows.remove(&key),
            };
        }
        Ok(())
    }

    /// Flows in `host`'s map.
    pub fn fast_flows(&self, host: &str) -> Result<usize, SimError> {
        let h = self.host_index(host)?;
        Ok(self.fast.get(&h).map_or(0, |t| t.flows.len()))
    }

    /// The ingress chain: forwards `bytes` (an IPv4 packet that arrived on `iface` of `host`)
    /// if its flow is in the map; whether it did.
    pub(crate) fn fast_forward(&mut self, host: usize, iface: usize, bytes: &[u8]) -> bool {
        let Some(t) = self.fast.get(&host) else {
            return false;
        };
        let Some(ip) = frame::parse_ipv4(bytes) else {
            return false;
        };
        let h = &ip.header;
        if t.iface != iface
            || Ipv4Addr::from(h.destination) != t.vip
            || h.more_fragments
            || h.fragment_offset.value() != 0
        {
            return false;
        }
        let proto = h.protocol.0;
        let l4 = ip.payload;
        let open = match proto {
            6 if t.tcp => l4.get(13).is_some_and(|f| f & 0x05 == 0), // no FIN, no RST
            17 if t.udp => l4.len() >= 4,
            _ => false,
        };
        if !open {
            return false;
        }
        let key = (
            Ipv4Addr::from(h.source),
            t.vip,
            proto,
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        );
        let Some(&backend) = t.flows.get(&key) else {
            return false;
        };
        let Some(packet) = frame::decrement_ttl(ip.packet) else {
            return false;
        };
        let source = Ipv4Addr::from(h.source);
        self.neigh_output(host, iface, backend, source, packet);
        true
    }
}
