//! The fast path's policy (`lb server --fast-path`): which flows the kernel may forward on its
//! own, and what the kernel's counts mean for the connection table. Pure: `lb` carries the
//! answers to the kernel's flow map (an nftables map from flow key to backend address, read by
//! a rule at the ingress of the VIP's interface, see [`crate::rules::FastPathRules`]).
//!
//! The connection table stays the one authority on a flow's life. A flow is in the kernel's map
//! only while it has a live entry here, with the same backend, and is open: user space still
//! sees a flow's first packet (the decision), its FIN or RST (which the kernel's rule leaves
//! to the queue, and which removes the flow from the map, so the close and whatever follows it
//! are decided here), and its fragments. The kernel counts each flow's packets; `lb` reads
//! the counts now and then and [`State::kernel_flow`] turns them into renewed entries and
//! backend counters, or into the answer that the kernel's element must go (the entry
//! expired, the backend is gone or down, the flow is closing).

use super::{State, classify, live_mut};
use crate::action::Action;
use crate::backend::BackendState;
use crate::select::conntable::ConnState;
use crate::select::hash::{HashMode, flow_hash};
use crate::time::Nanos;
use crate::wire::{FlowKey, Protocol};
use std::net::Ipv4Addr;

/// What the kernel's flow map must learn from one packet that [`crate::decide`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapOp {
    /// The flow goes to `addr` from now on, in the kernel. `replace`: the flow was (re)assigned
    /// by this packet, so an element left from an earlier life of the 5-tuple is replaced.
    Add {
        /// The flow.
        key: FlowKey,
        /// Its backend's address.
        addr: Ipv4Addr,
        /// Replace an element the map may hold for the key.
        replace: bool,
    },
    /// The flow leaves the kernel (its FIN or RST): what follows is decided in user space.
    Remove {
        /// The flow.
        key: FlowKey,
    },
}

impl MapOp {
    /// True when this change must reach the kernel only after the verdict on the packet that
    /// asked for it: a new UDP flow, whose next datagram may follow at once and must not be
    /// forwarded ahead of the first. A TCP flow's change goes before (nothing follows a SYN
    /// until its answer, and the handshake's ACK must find the map updated), as removals may.
    pub fn after_verdict(&self) -> bool {
        matches!(self, MapOp::Add { key, .. } if key.protocol == Protocol::Udp)
    }
}

impl State {
    /// What the kernel's flow map must learn from `packet`, which `decide` answered with
    /// `action` (call it right after, before any other packet): an open, tracked flow that was
    /// forwarded goes into the map; a FIN or RST takes its flow out; the rest (drops,
    /// fragments, untracked flows when the table is full, closing flows) change nothing.
    pub fn map_op(&self, packet: &[u8], action: &Action) -> Option<MapOp> {
        let Action::Forward { addr, new_flow, .. } = *action else {
            return None;
        };
        let flow = classify(&self.config, packet).ok()?;
        if flow.flags.is_some_and(|f| f.fin() || f.rst()) {
            return Some(MapOp::Remove { key: flow.key });
        }
        let conn = self.conns.get(flow.hash, &flow.key)?;
        (conn.state != ConnState::TcpClosing).then_some(MapOp::Add {
            key: flow.key,
            addr,
            replace: new_flow,
        })
    }

    /// What the kernel's map says of one flow it forwards to `addr`: `packets` and `bytes`
    /// since the last look. Returns whether the element stays. It stays while the flow's entry
    /// is live, still names that backend, the backend is not down, and the flow is open; then
    /// kernel traffic renews the entry and counts for the backend. Otherwise it must go: the
    /// flow's next packet comes to user space, which decides again.
    pub fn kernel_flow(
        &mut self,
        key: &FlowKey,
        addr: Ipv4Addr,
        packets: u64,
        bytes: u64,
        now: Nanos,
    ) -> bool {
        let hash = flow_hash(&self.config.hash_key, key, HashMode::FiveTuple);
        let Some(conn) = self.conns.lookup(hash, key, now) else {
            return false;
        };
        if conn.state == ConnState::TcpClosing {
            return false;
        }
        let Some(b) = live_mut(&mut self.slots, conn.backend) else {
            return false;
        };
        if b.spec.addr != addr || b.spec.state == BackendState::Down {
            return false;
        }
        if packets > 0 {
            conn.last_seen = now;
            b.counters.packets += packets;
            b.counters.bytes += bytes;
        }
        true
    }

    /// Maps the connection table's memory now (see [`crate::ConnTable::populate`]): the fast
    /// path is for high rates of new flows, which must not wait on page faults.
    pub fn populate_conns(&self) {
        self.conns.populate();
    }

    /// True while new and existing flows may go to the backend at `addr`: it exists and is
    /// not down (draining backends keep their flows).
    pub fn takes_flows(&self, addr: Ipv4Addr) -> bool {
        self.backends()
            .any(|b| b.spec.addr == addr && b.spec.state != BackendState::Down)
    }
}

/// Bytes in a key of the kernel's flow map.
pub const MAP_KEY_LEN: usize = 20;

/// The map's key for a flow: source address . destination address . protocol . source port .
/// destination port, each field in network byte order in a 4-byte register (nftables'
/// concatenation layout), as the rule's `ip saddr . ip daddr . meta l4proto . th sport . th
/// dport` builds it.
pub fn map_key(key: &FlowKey) -> [u8; MAP_KEY_LEN] {
    let mut k = [0u8; MAP_KEY_LEN];
    k[..4].copy_from_slice(&key.src.octets());
    k[4..8].copy_from_slice(&key.dst.octets());
    k[8] = key.protocol.number();
    k[12..14].copy_from_slice(&key.src_port.to_be_bytes());
    k[16..18].copy_from_slice(&key.dst_port.to_be_bytes());
    k
}

/// The flow of a map key (see [`map_key`]); `None` for a key this balancer never writes.
pub fn flow_of_map_key(k: &[u8]) -> Option<FlowKey> {
    let k: &[u8; MAP_KEY_LEN] = k.try_into().ok()?;
    let protocol = match k[8] {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => return None,
    };
    Some(FlowKey {
        src: Ipv4Addr::new(k[0], k[1], k[2], k[3]),
        dst: Ipv4Addr::new(k[4], k[5], k[6], k[7]),
        src_port: u16::from_be_bytes([k[12], k[13]]),
        dst_port: u16::from_be_bytes([k[16], k[17]]),
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keys_are_nftables_concatenations_and_read_back() {
        let key = FlowKey {
            src: Ipv4Addr::new(10, 0, 0, 3),
            dst: Ipv4Addr::new(10, 0, 0, 50),
            src_port: 40000,
            dst_port: 9000,
            protocol: Protocol::Udp,
        };
        let k = map_key(&key);
        assert_eq!(
            k,
            [
                10, 0, 0, 3, 10, 0, 0, 50, 17, 0, 0, 0, 0x9c, 0x40, 0, 0, 0x23, 0x28, 0, 0
            ]
        );
        assert_eq!(flow_of_map_key(&k), Some(key));
        assert_eq!(flow_of_map_key(&k[..16]), None);
    }
}
