//! The netfilter hooks of the simulated stack, where Linux has them: PREROUTING on input
//! before the routing decision, INPUT before local delivery, FORWARD, OUTPUT for locally sent
//! packets and POSTROUTING before the neighbour. At each hook the host's base chains (the
//! rules of its topology, evaluated by `netfilter-model`) run in priority order together with
//! the kernel's own steps: conntrack at -200 (PREROUTING, OUTPUT), destination NAT at -100
//! (PREROUTING, OUTPUT), source NAT at 100 (POSTROUTING, INPUT) and the conntrack confirm last
//! (POSTROUTING, INPUT). NAT chains are consulted at those NAT steps, for the first packet of
//! a connection only, as the kernel does; later packets use the binding stored in the entry.
//!
//! Conntrack runs in a host whose rules need it (a NAT chain, a conntrack or state match, a
//! NOTRACK or NAT target), as the kernel registers its hooks in a namespace only then.
//! A packet sent to NFQUEUE waits with the place it left; an accept verdict resumes it at the
//! next step of the same hook.
//!
//! Simplified: TEE's copy goes straight to the gateway (no second pass through the hooks);
//! REJECT answers with ICMP port unreachable whatever `--reject-with` says; ICMP errors the
//! stack sends are not tracked (no RELATED entries, no NAT of the quoted packet); SNAT and
//! DNAT to an address range use its first address.

use std::net::Ipv4Addr;

use netfilter_model::{CtState, Effect, Nat, PacketView, Proto, Verdict};

use crate::conntrack::{Confirmed, CtEntry, Dir, Tuple};
use crate::hooks::{Ct, Manip, Skb, Stage, Step, tuple_of};
use crate::world::World;

/// Rewrites the source or destination address and port of an IPv4 packet and recomputes the
/// IP header checksum and the TCP/UDP checksum (a zero UDP checksum stays zero).
fn rewrite(bytes: &mut [u8], manip: Manip, addr: Ipv4Addr, port: u16) {
    let ihl = usize::from(bytes[0] & 0x0f) * 4;
    let (a, p) = match manip {
        Manip::Src => (12, ihl),
        Manip::Dst => (16, ihl + 2),
    };
    bytes[a..a + 4].copy_from_slice(&addr.octets());
    let proto = bytes[9];
    if matches!(proto, 6 | 17) && bytes.len() >= ihl + 8 {
        bytes[p..p + 2].copy_from_slice(&port.to_be_bytes());
    }
    bytes[10..12].copy_from_slice(&[0, 0]);
    let sum = checksum(&bytes[..ihl], 0);
    bytes[10..12].copy_from_slice(&sum.to_be_bytes());
    let csum_at = match proto {
        6 => ihl + 16,
        17 if bytes.get(ihl + 6..ihl + 8) != Some(&[0, 0]) => ihl + 6,
        _ => return,
    };
    if bytes.len() < csum_at + 2 {
        return;
    }
    bytes[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
    let len = (bytes.len() - ihl) as u32;
    let mut pseudo = 0u32;
    for w in [
        &bytes[12..14],
        &bytes[14..16],
        &bytes[16..18],
        &bytes[18..20],
    ] {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += u32::from(proto) + len;
    let mut sum = checksum(&bytes[ihl..], pseudo);
    if proto == 17 && sum == 0 {
        sum = 0xffff;
    }
    bytes[csum_at..csum_at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// The Internet checksum of `data`, starting from `initial`.
fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut s = initial;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An interface's name (`lo` for the loopback index).
fn iface_name(h: &crate::host::Host, i: usize) -> String {
    h.ifaces
        .get(i)
        .map_or_else(|| "lo".to_string(), |f| f.name.clone())
}

/// A deterministic flow hash for `--queue-balance` (the kernel's is keyed per boot).
fn flow_hash(t: &Tuple) -> u32 {
    let x = u64::from(u32::from(t.src) ^ u32::from(t.dst)) << 8 | u64::from(t.proto);
    let x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 32) as u32
}

impl World {
    /// The packet enters `stage`'s hook at its first step.
    pub(crate) fn nf_hook(&mut self, host: usize, stage: Stage, skb: Skb) {
        self.nf_walk(host, stage, 0, skb);
    }

    /// Runs `stage`'s steps from `from` on; a packet that survives goes on through the stack.
    pub(crate) fn nf_walk(&mut self, host: usize, stage: Stage, from: usize, mut skb: Skb) {
        let steps = std::sync::Arc::clone(&self.nf[host].steps[stage as usize]);
        let mut i = from;
        while let Some(step) = steps.get(i) {
            i += 1;
            let go_on = match step {
                Step::Conntrack => {
                    self.ct_in(host, &mut skb);
                    true
                }
                Step::Nat(manip) => self.nat_step(host, stage, *manip, &mut skb),
                Step::Confirm => self.ct_confirm(host, &mut skb),
                Step::Chain(chain) => {
                    let Some(view) = self.view(host, &skb) else {
                        return;
                    };
                    let hash = tuple_of(&skb.bytes).map_or(0, |t| flow_hash(&t));
                    let d = self.nf[host].ruleset.traverse_chain(chain, &view, hash);
                    skb.mark = d.mark;
                    for e in &d.effects {
                        match e {
                            Effect::Notrack => skb.ct = Ct::Untracked,
                            Effect::Tee(gw) => self.tee(host, &skb, *gw),
                            Effect::SetMark { .. } | Effect::Log(_) => {}
                        }
                    }
                    match d.verdict {
                        Verdict::Accept => true,
                        Verdict::Drop => false,
                        Verdict::Reject(_) => {
                            self.reject(host, &skb);
                            false
                        }
                        Verdict::Queue { num, bypass } => {
                            self.nfq_enqueue(host, num, bypass, stage, i, skb);
                            return;
                        }
                    }
                }
            };
            if !go_on {
                return;
            }
        }
        self.after_hook(host, stage, skb);
    }

    /// What the rules see of `skb`.
    fn view(&self, host: usize, skb: &Skb) -> Option<PacketView> {
        let t = tuple_of(&skb.bytes)?;
        let h = &self.hosts[host];
        let ct = match &skb.ct {
            Ct::None | Ct::Untracked => CtState::Untracked,
            Ct::New(_) => CtState::New,
            Ct::Known(_, Dir::Reply) => CtState::Established,
            Ct::Known(id, Dir::Original) => match self.nf[host].ct.get(*id) {
                Some(e) if e.replied => CtState::Established,
                _ => CtState::New,
            },
        };
        Some(PacketView {
            src: t.src,
            dst: t.dst,
            proto: Proto::from_number(t.proto),
            sport: t.sport,
            dport: t.dport,
            in_iface: skb.iif.map(|i| iface_name(h, i)),
            out_iface: skb.out.map(|(i, _)| iface_name(h, i)),
            mark: skb.mark,
            ct,
        })
    }

    /// `nf_conntrack_in`: the packet's entry, or a new unconfirmed one.
    fn ct_in(&mut self, host: usize, skb: &mut Skb) {
        if skb.ct != Ct::None {
            return;
        }
        let Some(t) = tuple_of(&skb.bytes) else {
            return;
        };
        let now = self.now;
        let table = &mut self.nf[host].ct;
        skb.ct = match table.lookup(&t, now) {
            Some((id, dir)) => {
                table.seen(id, dir, now);
                Ct::Known(id, dir)
            }
            None => Ct::New(Box::new(CtEntry::new(t))),
        };
    }

    /// `__nf_conntrack_confirm` at the last hook: false when the packet is dropped.
    fn ct_confirm(&mut self, host: usize, skb: &mut Skb) -> bool {
        let Ct::New(entry) = std::mem::replace(&mut skb.ct, Ct::None) else {
            return true;
        };
        let (now, profile) = (self.now, self.config().kernel);
        match self.nf[host].ct.confirm(*entry, now, profile) {
            Confirmed::Inserted(id) | Confirmed::Merged(id) | Confirmed::ReplyOnly(id) => {
                skb.ct = Ct::Known(id, Dir::Original);
                true
            }
            Confirmed::Dropped => {
                tracing::debug!(host = %self.hosts[host].name, "conntrack confirm clash: dropped");
                false
            }
        }
    }

    /// A NAT step: the binding decided for a new connection (NAT chains consulted), then the
    /// packet rewritten to it. False when a NAT chain dropped it.
    fn nat_step(&mut self, host: usize, stage: Stage, manip: Manip, skb: &mut Skb) -> bool {
        if let Ct::New(entry) = &skb.ct {
            let decided = match manip {
                Manip::Src => entry.snat_decided,
                Manip::Dst => entry.dnat_decided,
            };
            if !decided && !self.nat_decide(host, stage, manip, skb) {
                return false;
            }
        }
        let target = match &skb.ct {
            Ct::New(e) => e.reply.invert(),
            Ct::Known(id, dir) => match self.nf[host].ct.get(*id) {
                Some(e) if *dir == Dir::Original => e.reply.invert(),
                Some(e) => e.orig.invert(),
                None => return true,
            },
            Ct::None | Ct::Untracked => return true,
        };
        let Some(now) = tuple_of(&skb.bytes) else {
            return true;
        };
        match manip {
            Manip::Src if (now.src, now.sport) != (target.src, target.sport) => {
                rewrite(&mut skb.bytes, manip, target.src, target.sport)
            }
            Manip::Dst if (now.dst, now.dport) != (target.dst, target.dport) => {
                rewrite(&mut skb.bytes, manip, target.dst, target.dport)
            }
            _ => {}
        }
        true
    }

    /// Consults the NAT chains of `stage` for a new connection and stores the binding.
    fn nat_decide(&mut self, host: usize, stage: Stage, manip: Manip, skb: &mut Skb) -> bool {
        let chains = self.nf[host].nat_chains[stage as usize].clone();
        let mut binding = None;
        for c in &chains {
            let Some(view) = self.view(host, skb) else {
                return true;
            };
            let d = self.nf[host].ruleset.traverse_chain(c, &view, 0);
            skb.mark = d.mark;
            match d.verdict {
                Verdict::Accept => {}
                _ => return false,
            }
            if d.nat.is_some() {
                binding = d.nat;
                break;
            }
        }
        let out_addr = skb
            .out
            .and_then(|(i, _)| self.hosts[host].ifaces.get(i)?.addr.map(|n| n.addr()));
        let Ct::New(entry) = &mut skb.ct else {
            return true;
        };
        match manip {
            Manip::Src => entry.snat_decided = true,
            Manip::Dst => entry.dnat_decided = true,
        }
        let (addr, ports) = match (manip, binding) {
            (Manip::Src, Some(Nat::Masquerade(ports))) => match out_addr {
                Some(a) => (a, ports.map(|p| (p.lo, p.hi))),
                None => return false,
            },
            (Manip::Src, Some(Nat::Snat(to))) | (Manip::Dst, Some(Nat::Dnat(to))) => {
                (to.lo, to.ports.map(|p| (p.lo, p.hi)))
            }
            _ => return true,
        };
        let mut reply = entry.reply;
        match manip {
            Manip::Src => reply.dst = addr,
            Manip::Dst => reply.src = addr,
        }
        let current = match manip {
            Manip::Src => entry.orig.sport,
            Manip::Dst => entry.reply.sport,
        };
        let has_ports = matches!(entry.orig.proto, 6 | 17);
        let orig = entry.orig;
        let profile = self.config().kernel;
        let set = |r: &mut Tuple, p: u16| match manip {
            Manip::Src => r.dport = p,
            Manip::Dst => r.sport = p,
        };
        let (lo, hi) = match ports {
            Some(r) => r,
            None if !has_ports || manip == Manip::Dst => (current, current),
            None if current < 1024 => (1, 1023),
            None => (1024, 65535),
        };
        let table = &mut self.nf[host].ct;
        let mut pick = current;
        let mut candidate = reply;
        set(&mut candidate, current);
        if !(lo..=hi).contains(&current)
            || (has_ports && table.reply_taken(&candidate, &orig, profile))
        {
            let size = u64::from(hi - lo) + 1;
            let start = self.rng.below(size);
            let table = &mut self.nf[host].ct;
            pick = (0..size)
                .map(|k| lo + ((start + k) % size) as u16)
                .find(|p| {
                    let mut c = reply;
                    set(&mut c, *p);
                    !table.reply_taken(&c, &orig, profile)
                })
                .unwrap_or(current);
        }
        set(&mut reply, pick);
        let Ct::New(entry) = &mut skb.ct else {
            return true;
        };
        entry.reply = reply;
        true
    }

    /// TEE: a copy to `gw` on the route towards it, not passing the hooks again.
    fn tee(&mut self, host: usize, skb: &Skb, gw: Ipv4Addr) {
        let Some(route) = self.hosts[host].routes.lookup(gw).copied() else {
            return;
        };
        let src = tuple_of(&skb.bytes).map_or(Ipv4Addr::UNSPECIFIED, |t| t.src);
        self.neigh_output(host, route.iface, gw, src, skb.bytes.clone());
    }

    /// REJECT: ICMP port unreachable to the packet's source.
    fn reject(&mut self, host: usize, skb: &Skb) {
        if let Some(ip) = crate::frame::parse_ipv4(&skb.bytes) {
            let kind = etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            );
            let local = Ipv4Addr::from(ip.header.destination);
            let local = self.hosts[host].is_local(local).then_some(local);
            self.icmp_error(host, kind, &ip, local);
        }
    }

    /// `conntrack -S` of `host`.
    pub fn conntrack_counters(
        &mut self,
        host: &str,
    ) -> Result<std::collections::BTreeMap<String, u64>, crate::SimError> {
        let h = self.host_index(host)?;
        let now = self.now;
        Ok(self.nf[h].ct.counters(now))
    }

    /// `conntrack -L FILTER…` of `host`: the lines `conntrack` would print.
    pub fn conntrack_list(
        &mut self,
        host: &str,
        filter: &[String],
    ) -> Result<Vec<String>, crate::SimError> {
        let h = self.host_index(host)?;
        let f = crate::conntrack::CtFilter::parse(filter).map_err(|message| {
            crate::SimError::ConntrackFilter {
                host: host.to_string(),
                message,
            }
        })?;
        let now = self.now;
        Ok(self.nf[h].ct.list(&f, now))
    }
}
