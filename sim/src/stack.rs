//! The IPv4 stack of the simulated hosts: ARP, IPv4 input, forwarding and output, UDP
//! delivery and ICMP errors, as an `impl World` beside the world's plumbing.

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::{ArpOperation, EtherType, Icmpv4Type, IpNumber};

use crate::addr::MacAddr;
use crate::event::Event;
use crate::frame::{self, Ipv4View};
use crate::hooks::{Ct, Skb, Stage, ip_dst, ip_src};
use crate::host::LO;
use crate::link::Attach;
use crate::neigh::{Enqueued, Pending, RETRANS_TIME, TimerOutcome};
use crate::udp::Datagram;
use crate::world::World;

impl World {
    /// A frame arrived at interface `iface` of host `host`.
    pub(crate) fn host_input(&mut self, host: usize, iface: usize, frame: &[u8]) {
        let Some(eth) = frame::parse_eth(frame) else {
            return;
        };
        let mine = self.hosts[host].ifaces[iface].mac;
        if eth.dst != mine && eth.dst != MacAddr::BROADCAST {
            // PACKET_OTHERHOST: a flooded frame for someone else.
            return;
        }
        match eth.ether_type {
            EtherType::ARP => {
                if let Some(arp) = frame::parse_arp(eth.payload) {
                    self.arp_input(host, iface, &arp);
                }
            }
            EtherType::IPV4 if eth.dst == mine => self.ingress(host, iface, eth.payload),
            _ => {}
        }
    }

    /// `arp_process`: answer requests for our addresses (as `arp_ignore` allows) and learn
    /// the sender: create an entry when the request was for us, else only update one.
    fn arp_input(&mut self, host: usize, iface: usize, arp: &etherparse::ArpEthIpv4Packet) {
        let h = &self.hosts[host];
        let i = &h.ifaces[iface];
        let (sip, tip) = (arp.sender_ipv4_addr(), arp.target_ipv4_addr());
        let sha = MacAddr(arp.sender_mac);
        if i.addr.is_none() || sip.is_unspecified() || sip.is_multicast() || sha.is_multicast() {
            // No IPv4 on the interface; duplicate address probes are not modelled.
            return;
        }
        let for_us = arp.operation == ArpOperation::REQUEST
            && match i.arp_ignore {
                0 => h.is_local(tip) && !tip.is_loopback(),
                _ => i.holds(tip),
            };
        let mac = i.mac;
        let waiting = self.hosts[host].neigh.confirm(iface, sip, sha, for_us);
        if for_us {
            let reply = frame::arp(ArpOperation::REPLY, (mac, tip), (sha, sip));
            let frame = frame::eth(sha, mac, EtherType::ARP, &reply);
            self.transmit(Attach::Host { host, iface }, frame);
        }
        for p in waiting {
            let frame = frame::eth(sha, mac, EtherType::IPV4, &p.packet);
            self.transmit(Attach::Host { host, iface }, frame);
        }
    }

    /// An IPv4 packet for this host's MAC: the interface's ingress hook (the fast path's
    /// table, if the host has one) first, then the IP stack.
    fn ingress(&mut self, host: usize, iface: usize, bytes: &[u8]) {
        if !self.fast_forward(host, iface, bytes) {
            self.ip_input(host, iface, bytes);
        }
    }

    /// `ip_rcv`: a whole IPv4 packet enters PREROUTING.
    fn ip_input(&mut self, host: usize, iface: usize, bytes: &[u8]) {
        let Some(ip) = frame::parse_ipv4(bytes) else {
            return;
        };
        if ip.header.more_fragments || ip.header.fragment_offset.value() != 0 {
            return; // fragments are not modelled
        }
        self.nf_hook(
            host,
            Stage::Prerouting,
            Skb::new(bytes.to_vec(), Some(iface), None),
        );
    }

    /// A packet comes back in through `lo`: a copy for the taps (one, as tcpdump keeps one of
    /// loopback's two), then PREROUTING with `lo` as the input interface.
    pub(crate) fn loopback_arrive(&mut self, host: usize) {
        let Some(packet) = self.loopback.get_mut(&host).and_then(|q| q.pop_front()) else {
            return;
        };
        let frame = frame::eth(MacAddr::ZERO, MacAddr::ZERO, EtherType::IPV4, &packet);
        self.record(host, LO, crate::tap::Direction::Incoming, &frame);
        self.nf_hook(host, Stage::Prerouting, Skb::new(packet, Some(LO), None));
    }

    /// A packet has passed a hook's steps. When exploring, a received packet (one with an
    /// input interface: delivered or forwarded) is parked and goes on in an event of its own
    /// at the same instant, first unless the explorer lets another event of this host go
    /// ahead: received packets of one host then interleave at hook boundaries, as on several
    /// CPUs (two packets of a new flow both unconfirmed, then the confirm clash). A locally
    /// generated packet goes on at once (a socket sends under its lock, one packet after the
    /// other), and so does everything when not exploring.
    pub(crate) fn after_hook(&mut self, host: usize, stage: Stage, skb: Skb) {
        if self.config().ordering.is_none() || skb.iif.is_none() {
            self.after_hook_now(host, stage, skb);
            return;
        }
        let id = self.next_parked;
        self.next_parked += 1;
        self.parked.insert(id, (stage, skb));
        self.schedule_first(Event::Resume { host, id });
    }

    /// Where a packet goes when it has passed a hook's steps.
    pub(crate) fn after_hook_now(&mut self, host: usize, stage: Stage, mut skb: Skb) {
        match stage {
            Stage::Prerouting => self.route_input(host, skb),
            Stage::Input => {
                if let Some(ip) = frame::parse_ipv4(&skb.bytes) {
                    self.local_deliver(host, &ip);
                }
            }
            Stage::Forward => self.nf_hook(host, Stage::Postrouting, skb),
            Stage::Output => {
                // A destination NAT at OUTPUT changed where it goes: route it again.
                let dst = ip_dst(&skb.bytes);
                if skb.routed_to != Some(dst) {
                    match self.route_out(host, dst) {
                        Some(out) => skb.out = Some(out),
                        None => return,
                    }
                }
                self.nf_hook(host, Stage::Postrouting, skb)
            }
            Stage::Postrouting => {
                let Some((iface, next_hop)) = skb.out else {
                    return;
                };
                if iface == LO {
                    self.loopback.entry(host).or_default().push_back(skb.bytes);
                    self.schedule(std::time::Duration::ZERO, Event::Loopback { host });
                    return;
                }
                let src = ip_src(&skb.bytes);
                self.neigh_output(host, iface, next_hop, src, skb.bytes);
            }
        }
    }

    /// `ip_route_input`: the policy rules ahead of the local table, then deliver locally,
    /// forward, or drop.
    fn route_input(&mut self, host: usize, skb: Skb) {
        let dst = ip_dst(&skb.bytes);
        let h = &self.hosts[host];
        let forwarding = h.ip_forward
            || skb
                .iif
                .and_then(|i| h.ifaces.get(i))
                .is_some_and(|i| i.forwarding);
        if let Some(route) = h.policy_route(dst, skb.mark).copied() {
            if forwarding {
                self.forward(host, skb, Some(route));
            }
        } else if h.is_local(dst) {
            self.nf_hook(host, Stage::Input, skb);
        } else if h.is_broadcast(dst) || dst.is_multicast() {
            // broadcast and multicast delivery are not modelled
        } else if forwarding {
            self.forward(host, skb, None);
        }
        // Forwarding disabled: ip_error drops without an ICMP error.
    }

    /// Local delivery: UDP to a bound socket, or ICMP port unreachable.
    fn local_deliver(&mut self, host: usize, ip: &Ipv4View<'_>) {
        let src = Ipv4Addr::from(ip.header.source);
        let dst = Ipv4Addr::from(ip.header.destination);
        if ip.header.protocol == IpNumber::TCP {
            self.tcp_input(host, ip);
            return;
        }
        if ip.header.protocol != IpNumber::UDP {
            // ICMP input (echo, errors) and other protocols are not modelled yet.
            return;
        }
        let Some((udp, data)) = frame::parse_udp(&ip.header, ip.payload) else {
            return; // bad length or checksum: dropped, as udp_rcv does
        };
        match self.sockets.lookup(host, dst, udp.destination_port) {
            Some(sock) => {
                let d = Datagram {
                    from: SocketAddrV4::new(src, udp.source_port),
                    to: SocketAddrV4::new(dst, udp.destination_port),
                    payload: data.to_vec(),
                    time: self.now,
                };
                self.sockets.deliver(sock, d);
            }
            None => {
                let kind = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
                self.icmp_error(host, kind, ip, Some(dst));
            }
        }
    }

    /// `ip_forward`: route (main table, unless a policy rule chose `route`), check the TTL,
    /// decrement it (checksum updated), then FORWARD. No redirects, no rp_filter, no
    /// fragmentation.
    fn forward(&mut self, host: usize, mut skb: Skb, route: Option<crate::ipv4::Route>) {
        let Some(ip) = frame::parse_ipv4(&skb.bytes) else {
            return;
        };
        let dst = Ipv4Addr::from(ip.header.destination);
        let Some(route) = route.or_else(|| self.hosts[host].routes.lookup(dst).copied()) else {
            let kind = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Network);
            self.icmp_error(host, kind, &ip, None);
            return;
        };
        if ip.header.time_to_live <= 1 {
            let kind = Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit);
            self.icmp_error(host, kind, &ip, None);
            return;
        }
        if let Some(packet) = frame::decrement_ttl(ip.packet) {
            skb.bytes = packet;
            skb.out = Some((route.iface, route.next_hop(dst)));
            self.nf_hook(host, Stage::Forward, skb);
        }
    }

    /// `icmp_send`: an error about `ip` back to its source. The source address is the
    /// original destination when it was local (`local_src`), else the address of the route
    /// back. Never about an ICMP error, a broadcast or an unspecified source; rate limits are
    /// not modelled.
    pub(crate) fn icmp_error(
        &mut self,
        host: usize,
        kind: Icmpv4Type,
        ip: &Ipv4View<'_>,
        local_src: Option<Ipv4Addr>,
    ) {
        let to = Ipv4Addr::from(ip.header.source);
        let h = &self.hosts[host];
        if to.is_unspecified() || to.is_multicast() || h.is_broadcast(to) {
            return;
        }
        if ip.header.protocol == IpNumber::ICMP && frame::is_icmp_error(ip.payload) {
            return;
        }
        let Some(route) = h.routes.lookup(to) else {
            return;
        };
        let src = local_src.unwrap_or(route.src);
        let id = self.rng.next_u64() as u16;
        if let Some(packet) = frame::icmp_error(kind, src, ip, id) {
            // Not tracked: the simulator has no RELATED entries.
            self.send_local(host, to, packet, Ct::Untracked);
        }
    }

    /// Routes a locally generated `packet` (from `src`, to `dst`) out of `host` through
    /// OUTPUT and POSTROUTING; drops it when no route covers `dst`.
    pub(crate) fn ip_output(
        &mut self,
        host: usize,
        dst: Ipv4Addr,
        _src: Ipv4Addr,
        packet: Vec<u8>,
    ) {
        self.send_local(host, dst, packet, Ct::None);
    }

    /// Where a locally generated packet to `dst` leaves: `lo` for a local address, else the
    /// route's interface and next hop.
    fn route_out(&self, host: usize, dst: Ipv4Addr) -> Option<(usize, Ipv4Addr)> {
        if self.hosts[host].is_local(dst) {
            return Some((LO, dst));
        }
        let route = self.hosts[host].routes.lookup(dst)?;
        Some((route.iface, route.next_hop(dst)))
    }

    /// A locally generated packet to `dst` into OUTPUT, routed (dropped without a route).
    pub(crate) fn send_local(&mut self, host: usize, dst: Ipv4Addr, packet: Vec<u8>, ct: Ct) {
        let Some(out) = self.route_out(host, dst) else {
            return;
        };
        let mut skb = Skb::new(packet, None, Some(out));
        skb.ct = ct;
        skb.routed_to = Some(dst);
        self.nf_hook(host, Stage::Output, skb);
    }

    /// `neigh_output`: the frame goes out of `iface` to `next_hop`'s MAC, or waits for ARP.
    pub(crate) fn neigh_output(
        &mut self,
        host: usize,
        iface: usize,
        next_hop: Ipv4Addr,
        src: Ipv4Addr,
        packet: Vec<u8>,
    ) {
        let h = &mut self.hosts[host];
        let mac = h.ifaces[iface].mac;
        if let Some(dmac) = h.neigh.lookup(iface, next_hop) {
            let frame = frame::eth(dmac, mac, EtherType::IPV4, &packet);
            self.transmit(Attach::Host { host, iface }, frame);
            return;
        }
        let pending = Pending {
            packet,
            source: src,
        };
        match h.neigh.enqueue(iface, next_hop, pending) {
            Enqueued::NewEntry { generation } => {
                self.arp_solicit(host, iface, next_hop, Some(src));
                self.schedule(
                    RETRANS_TIME,
                    Event::NeighTimer {
                        host,
                        iface,
                        ip: next_hop,
                        generation,
                    },
                );
            }
            Enqueued::Waiting => {}
            Enqueued::DroppedOldest => {
                tracing::debug!(host = %self.hosts[host].name, %next_hop, "unres_qlen: oldest dropped");
            }
        }
    }

    /// `arp_solicit`: a broadcast request for `target`. Its sender address is the waiting
    /// packet's source when `arp_announce` is 0 and that source is local, else the
    /// interface's address (the best local address for a target on that subnet).
    fn arp_solicit(&mut self, host: usize, iface: usize, target: Ipv4Addr, hint: Option<Ipv4Addr>) {
        let h = &self.hosts[host];
        let i = &h.ifaces[iface];
        let own = i.addr.map(|n| n.addr());
        let sender = match hint {
            Some(s) if i.arp_announce == 0 && h.is_local(s) => Some(s),
            _ => own,
        };
        let Some(sender) = sender else {
            return;
        };
        let mac = i.mac;
        let req = frame::arp(
            ArpOperation::REQUEST,
            (mac, sender),
            (MacAddr::ZERO, target),
        );
        let frame = frame::eth(MacAddr::BROADCAST, mac, EtherType::ARP, &req);
        self.transmit(Attach::Host { host, iface }, frame);
    }

    /// A neighbour retransmission timer expired: ask again, or give up and drop.
    pub(crate) fn neigh_timer(&mut self, host: usize, iface: usize, ip: Ipv4Addr, generation: u64) {
        match self.hosts[host].neigh.timer(iface, ip, generation) {
            TimerOutcome::Retransmit { source } => {
                self.arp_solicit(host, iface, ip, source);
                self.schedule(
                    RETRANS_TIME,
                    Event::NeighTimer {
                        host,
                        iface,
                        ip,
                        generation,
                    },
                );
            }
            TimerOutcome::Failed { dropped } => {
                tracing::debug!(host = %self.hosts[host].name, %ip, dropped, "neighbour failed");
            }
            TimerOutcome::Stale => {}
        }
    }
}
