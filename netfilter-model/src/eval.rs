//! Evaluation: a [`PacketView`] through a hook's chains to a [`Decision`].

use crate::hook::Hook;
use crate::packet::{CtState, PacketView};
use crate::rule::{Action, ChainType, Match, NatTo, Policy, PortDir, PortRange, TableId};
use crate::ruleset::{Ruleset, chain_index};
use std::net::Ipv4Addr;

/// What the packet's traversal of the chain(s) ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on: to the next base chain at this hook, then on through the stack.
    Accept,
    /// The packet is dropped.
    Drop,
    /// The packet goes to NFQUEUE queue `num` (the `--queue-balance` range already resolved
    /// by the flow hash). With no program bound: dropped, or accepted when `bypass`. After a
    /// program's ACCEPT verdict the kernel resumes with the next base chain of the hook.
    Queue {
        /// The queue number.
        num: u16,
        /// `--queue-bypass`.
        bypass: bool,
    },
    /// The packet is dropped and an error sent back (`--reject-with` as written, if given).
    Reject(Option<String>),
}

/// The NAT binding a NAT chain asks for; the caller (which knows interface addresses, free
/// ports and the conntrack table) sets it up and rewrites the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nat {
    /// Source NAT to the outgoing interface's address (port range, if given).
    Masquerade(Option<PortRange>),
    /// Source NAT to these addresses/ports.
    Snat(NatTo),
    /// Destination NAT to these addresses/ports (numgen already resolved to one address).
    Dnat(NatTo),
}

/// A side effect of a non-terminal action, in the order the rules asked for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The mark changed (later rules already saw the new one; [`Decision::mark`] is final).
    SetMark {
        /// Before.
        from: u32,
        /// After.
        to: u32,
    },
    /// The packet is not to be tracked (its conntrack state becomes UNTRACKED).
    Notrack,
    /// A copy of the packet is to be routed to this gateway (TEE); the original goes on.
    Tee(Ipv4Addr),
    /// LOG / nft `log` (the prefix, if any).
    Log(Option<String>),
}

/// Which rule gave a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// The table.
    pub table: TableId,
    /// The chain holding the rule.
    pub chain: String,
    /// The rule's 1-based position in the chain.
    pub position: usize,
    /// The rule as written.
    pub text: String,
}

/// The outcome of a traversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// The packet's mark at the end (the caller stores it in its packet).
    pub mark: u32,
    /// A NAT binding to set up (the rule's verdict is then [`Verdict::Accept`]).
    pub nat: Option<Nat>,
    /// Side effects, in order.
    pub effects: Vec<Effect>,
    /// The rule that gave the verdict; `None` when the policy (or no rule at all) did.
    pub rule: Option<RuleRef>,
}

impl Decision {
    /// Accept, nothing done: what a hook with no chains gives.
    pub fn pass(mark: u32) -> Decision {
        Decision {
            verdict: Verdict::Accept,
            mark,
            nat: None,
            effects: Vec::new(),
            rule: None,
        }
    }
}

/// A base chain at a hook, as [`Ruleset::chains_at`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChainRef {
    /// The table.
    pub table: TableId,
    /// The chain.
    pub chain: String,
    /// Its priority.
    pub priority: i32,
    /// Its type.
    pub kind: ChainType,
}

impl Ruleset {
    /// The base chains at `hook`, in the order the kernel runs them: by priority, ties in
    /// the order they were created.
    pub fn chains_at(&self, hook: Hook) -> Vec<BaseChainRef> {
        let mut v: Vec<BaseChainRef> = self
            .tables
            .iter()
            .flat_map(|t| {
                t.chains.iter().filter_map(move |c| {
                    let b = c.base?;
                    (b.hook == hook).then(|| BaseChainRef {
                        table: t.id.clone(),
                        chain: c.name.clone(),
                        priority: b.priority,
                        kind: b.kind,
                    })
                })
            })
            .collect();
        v.sort_by_key(|c| c.priority);
        v
    }

    /// Runs `table`'s base chain(s) at `hook` (for an iptables table, its built-in chain)
    /// in priority order, until one gives a verdict other than accept. `flow_hash` resolves
    /// `--queue-balance` (see [`crate::QueueSpec::queue_for`]). A table with no chain at
    /// the hook accepts.
    pub fn traverse(
        &mut self,
        hook: Hook,
        table: &TableId,
        pkt: &PacketView,
        flow_hash: u32,
    ) -> Decision {
        let chains: Vec<BaseChainRef> = self
            .chains_at(hook)
            .into_iter()
            .filter(|c| &c.table == table)
            .collect();
        self.run_chains(&chains, pkt, flow_hash)
            .pop()
            .map_or_else(|| Decision::pass(pkt.mark), |(_, d)| d)
    }

    /// Runs every base chain at `hook` in the kernel's order, carrying the mark from one to
    /// the next, until one gives a verdict other than accept; returns each chain run with its
    /// decision. NAT is not applied to `pkt` between chains: the caller does that (only it
    /// knows interface addresses and free ports) and may walk chain by chain with
    /// [`Ruleset::chains_at`] and [`Ruleset::traverse_chain`] instead.
    pub fn walk(
        &mut self,
        hook: Hook,
        pkt: &PacketView,
        flow_hash: u32,
    ) -> Vec<(BaseChainRef, Decision)> {
        let chains = self.chains_at(hook);
        self.run_chains(&chains, pkt, flow_hash)
    }

    fn run_chains(
        &mut self,
        chains: &[BaseChainRef],
        pkt: &PacketView,
        flow_hash: u32,
    ) -> Vec<(BaseChainRef, Decision)> {
        let mut out: Vec<(BaseChainRef, Decision)> = Vec::new();
        let mut view = pkt.clone();
        for c in chains {
            let d = self.traverse_chain(c, &view, flow_hash);
            view.mark = d.mark;
            if d.effects.contains(&Effect::Notrack) {
                view.ct = CtState::Untracked;
            }
            let stop = d.verdict != Verdict::Accept;
            out.push((c.clone(), d));
            if stop {
                break;
            }
        }
        out
    }

    /// Runs one base chain (with the chains it jumps to). A NAT chain looks only at a
    /// packet whose conntrack state is NEW, as the kernel consults NAT rules once per
    /// connection: any other packet passes it untouched (the caller applies the binding it
    /// stored). A chain that does not exist accepts.
    pub fn traverse_chain(
        &mut self,
        at: &BaseChainRef,
        pkt: &PacketView,
        flow_hash: u32,
    ) -> Decision {
        let Some(ti) = self.tables.iter().position(|t| t.id == at.table) else {
            return Decision::pass(pkt.mark);
        };
        let t = &mut self.tables[ti];
        let Some(start) = chain_index(t, &at.chain) else {
            return Decision::pass(pkt.mark);
        };
        let Some(base) = t.chains[start].base else {
            return Decision::pass(pkt.mark);
        };
        if base.kind == ChainType::Nat && pkt.ct != CtState::New {
            return Decision::pass(pkt.mark);
        }
        let policy = match base.policy {
            Policy::Accept => Verdict::Accept,
            Policy::Drop => Verdict::Drop,
        };
        let mut d = Decision::pass(pkt.mark);
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let (mut chain, mut idx) = (start, 0usize);
        'chains: loop {
            if idx >= t.chains[chain].rules.len() {
                match stack.pop() {
                    Some((c, i)) => {
                        (chain, idx) = (c, i);
                        continue;
                    }
                    None => {
                        d.verdict = policy;
                        return d;
                    }
                }
            }
            let here = (chain, idx);
            idx += 1;
            let rule = t.chains[chain].rules[here.1].rule.clone();
            if !rule.matches.iter().all(|m| matches(m, pkt, d.mark)) {
                continue;
            }
            for a in rule.actions {
                let is_jump = matches!(a, Action::Jump(_));
                let verdict = match a {
                    Action::Counter => continue,
                    Action::Log(p) => {
                        d.effects.push(Effect::Log(p));
                        continue;
                    }
                    Action::Tee(g) => {
                        d.effects.push(Effect::Tee(g));
                        continue;
                    }
                    Action::Notrack { .. } => {
                        d.effects.push(Effect::Notrack);
                        continue;
                    }
                    Action::Mark(op) => {
                        let to = op.apply(d.mark);
                        d.effects.push(Effect::SetMark { from: d.mark, to });
                        d.mark = to;
                        continue;
                    }
                    Action::Accept => Verdict::Accept,
                    Action::Drop => Verdict::Drop,
                    Action::Reject(w) => Verdict::Reject(w),
                    Action::Queue(q) => Verdict::Queue {
                        num: q.queue_for(flow_hash),
                        bypass: q.bypass,
                    },
                    Action::Masquerade(p) => {
                        d.nat = Some(Nat::Masquerade(p));
                        Verdict::Accept
                    }
                    Action::Snat(to) => {
                        d.nat = Some(Nat::Snat(to));
                        Verdict::Accept
                    }
                    Action::Dnat(to) => {
                        d.nat = Some(Nat::Dnat(to));
                        Verdict::Accept
                    }
                    Action::DnatNumgen {
                        modulus,
                        offset,
                        map,
                        port,
                    } => {
                        // nft_ng_inc_gen: the counter steps 0..modulus-1 and wraps.
                        let counter = &mut t.chains[chain].rules[here.1].numgen;
                        let next = match counter.checked_add(1) {
                            Some(n) if n < modulus => n,
                            _ => 0,
                        };
                        *counter = next;
                        let key = next.wrapping_add(offset);
                        match map.iter().find(|(k, _)| *k == key) {
                            Some(&(_, addr)) => {
                                d.nat = Some(Nat::Dnat(NatTo {
                                    lo: addr,
                                    hi: addr,
                                    ports: port.map(PortRange::one),
                                }));
                                Verdict::Accept
                            }
                            // No map entry: the lookup fails and the rule stops there.
                            None => continue 'chains,
                        }
                    }
                    Action::Return => {
                        match stack.pop() {
                            Some((c, i)) => (chain, idx) = (c, i),
                            None => {
                                d.verdict = policy;
                                return d;
                            }
                        }
                        continue 'chains;
                    }
                    Action::Jump(name) | Action::Goto(name) => {
                        let Some(target) = chain_index(t, &name) else {
                            // Refused by `apply`; unreachable with a ruleset built by it.
                            continue 'chains;
                        };
                        if is_jump {
                            stack.push((chain, idx));
                        }
                        (chain, idx) = (target, 0);
                        continue 'chains;
                    }
                };
                d.verdict = verdict;
                d.rule = Some(RuleRef {
                    table: t.id.clone(),
                    chain: t.chains[chain].name.clone(),
                    position: here.1 + 1,
                    text: t.chains[chain].rules[here.1].text.clone(),
                });
                return d;
            }
        }
    }
}

/// Whether match `m` holds for `pkt` with the current `mark`.
fn matches(m: &Match, pkt: &PacketView, mark: u32) -> bool {
    let (hit, negate) = match m {
        Match::Src { net, negate } => (net.contains(pkt.src), *negate),
        Match::Dst { net, negate } => (net.contains(pkt.dst), *negate),
        Match::Proto { proto, negate } => (pkt.proto == *proto, *negate),
        Match::Ports {
            dir,
            ranges,
            negate,
            ..
        } => {
            if !pkt.proto.has_ports() {
                return false;
            }
            let any = |p: u16| ranges.iter().any(|r| r.contains(p));
            let hit = match dir {
                PortDir::Src => any(pkt.sport),
                PortDir::Dst => any(pkt.dport),
                PortDir::Either => any(pkt.sport) || any(pkt.dport),
            };
            (hit, *negate)
        }
        Match::InIface { iface, negate } => (
            iface.matches(pkt.in_iface.as_deref().unwrap_or("")),
            *negate,
        ),
        Match::OutIface { iface, negate } => (
            iface.matches(pkt.out_iface.as_deref().unwrap_or("")),
            *negate,
        ),
        Match::Comment(_) => (true, false),
        Match::Mark {
            value,
            mask,
            negate,
        } => (mark & mask == *value, *negate),
        Match::CtState { states, negate, .. } => (states.contains(&pkt.ct), *negate),
    };
    hit != negate
}
