//! The state netfilter keeps per host and per packet, apart from the code that moves packets
//! (`netfilter`, `nfqueue`, `stack`): the steps at each hook, a packet's conntrack attachment,
//! the queues and the built-in holders. A leaf: it knows no [`crate::World`].

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use netfilter_model::{Action, BaseChainRef, ChainType, Hook, Match, Ruleset};

use crate::conntrack::{CtEntry, CtTable, Dir, Tuple};
use crate::spec::HostSpec;
use crate::time::SimTime;

/// Where a packet is in the stack: the hook it is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Stage {
    pub(crate) const ALL: [Stage; 5] = [
        Stage::Prerouting,
        Stage::Input,
        Stage::Forward,
        Stage::Output,
        Stage::Postrouting,
    ];

    pub(crate) fn hook(self) -> Hook {
        match self {
            Stage::Prerouting => Hook::Prerouting,
            Stage::Input => Hook::Input,
            Stage::Forward => Hook::Forward,
            Stage::Output => Hook::Output,
            Stage::Postrouting => Hook::Postrouting,
        }
    }
}

/// Which address a NAT step rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Manip {
    Src,
    Dst,
}

/// One step at a hook.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Chain(BaseChainRef),
    Conntrack,
    Nat(Manip),
    Confirm,
}

/// A packet's conntrack attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ct {
    /// Not looked at yet (or the host does not track).
    None,
    /// NOTRACK.
    Untracked,
    /// The first packet of a connection, its entry not yet confirmed.
    New(Box<CtEntry>),
    /// A packet of a confirmed entry.
    Known(u64, Dir),
}

/// A packet on its way through a host: the IPv4 bytes and what the kernel keeps beside them.
#[derive(Debug, Clone)]
pub(crate) struct Skb {
    pub bytes: Vec<u8>,
    pub mark: u32,
    pub ct: Ct,
    /// The interface it came in on.
    pub iif: Option<usize>,
    /// The interface and next hop the routing decision chose.
    pub out: Option<(usize, Ipv4Addr)>,
    /// The destination `out` was chosen for (a NAT that changes it means routing again).
    pub routed_to: Option<Ipv4Addr>,
}

impl Skb {
    pub(crate) fn new(bytes: Vec<u8>, iif: Option<usize>, out: Option<(usize, Ipv4Addr)>) -> Skb {
        Skb {
            bytes,
            mark: 0,
            ct: Ct::None,
            iif,
            out,
            routed_to: None,
        }
    }
}

/// One host's netfilter: its rules, the steps at each hook, conntrack and the queues.
#[derive(Debug)]
pub(crate) struct Nf {
    pub(crate) ruleset: Ruleset,
    pub(crate) steps: [std::sync::Arc<[Step]>; 5],
    pub(crate) nat_chains: [Vec<BaseChainRef>; 5],
    pub ct: CtTable,
    pub queues: Queues,
}

impl Nf {
    /// The rules of `spec`, loaded as the kernel would load them, or the first refusal.
    pub(crate) fn new(spec: &HostSpec) -> Result<Nf, netfilter_model::HostRuleError> {
        let ruleset = Ruleset::load(
            spec.iptables.iter().map(String::as_str),
            spec.nft.as_deref(),
        )
        .map_err(|e| e.on_host(&spec.name))?;
        let mut nf = Nf {
            ruleset,
            steps: Default::default(),
            nat_chains: Default::default(),
            ct: CtTable::default(),
            queues: Queues::default(),
        };
        nf.rebuild();
        Ok(nf)
    }

    /// Works out the steps at each hook from the ruleset again (after a rule changed at run
    /// time): conntrack and NAT steps appear once a rule needs them, as the kernel registers
    /// its hooks on demand.
    pub(crate) fn rebuild(&mut self) {
        let ruleset = &self.ruleset;
        let tracking = needs_conntrack(ruleset);
        let has_nat = Stage::ALL.iter().any(|s| {
            ruleset
                .chains_at(s.hook())
                .iter()
                .any(|c| c.kind == ChainType::Nat)
        });
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            let chains = ruleset.chains_at(stage.hook());
            let (nat, filter): (Vec<_>, Vec<_>) =
                chains.into_iter().partition(|c| c.kind == ChainType::Nat);
            let mut own: Vec<(i32, Step)> = Vec::new();
            if tracking {
                match stage {
                    Stage::Prerouting | Stage::Output => own.push((-200, Step::Conntrack)),
                    Stage::Input | Stage::Postrouting => own.push((i32::MAX, Step::Confirm)),
                    Stage::Forward => {}
                }
            }
            if has_nat {
                match stage {
                    Stage::Prerouting | Stage::Output => own.push((-100, Step::Nat(Manip::Dst))),
                    Stage::Input | Stage::Postrouting => own.push((100, Step::Nat(Manip::Src))),
                    Stage::Forward => {}
                }
            }
            // The kernel's own steps first among equal priorities, then chains by priority.
            let mut all: Vec<(i32, Step)> = own;
            all.extend(filter.into_iter().map(|c| (c.priority, Step::Chain(c))));
            all.sort_by_key(|(p, _)| *p);
            self.steps[i] = all.into_iter().map(|(_, s)| s).collect::<Vec<_>>().into();
            self.nat_chains[i] = nat;
        }
    }
}

/// Whether any rule needs conntrack: a NAT chain, a conntrack state match, NOTRACK or NAT.
fn needs_conntrack(r: &Ruleset) -> bool {
    r.tables().iter().flat_map(|t| &t.chains).any(|c| {
        c.base.is_some_and(|b| b.kind == ChainType::Nat)
            || c.rules.iter().any(|s| {
                s.rule
                    .matches
                    .iter()
                    .any(|m| matches!(m, Match::CtState { .. }))
                    || s.rule.actions.iter().any(|a| {
                        matches!(
                            a,
                            Action::Notrack { .. }
                                | Action::Masquerade(_)
                                | Action::Snat(_)
                                | Action::Dnat(_)
                                | Action::DnatNumgen { .. }
                        )
                    })
            })
    })
}

/// The source address of a (checked) IPv4 packet.
pub(crate) fn ip_src(bytes: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15])
}

/// The destination address of a (checked) IPv4 packet.
pub(crate) fn ip_dst(bytes: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19])
}

/// The tuple of an IPv4 packet (ports for TCP and UDP).
pub(crate) fn tuple_of(bytes: &[u8]) -> Option<Tuple> {
    let ihl = usize::from(*bytes.first()? & 0x0f) * 4;
    let proto = *bytes.get(9)?;
    let ip = |o: usize| {
        Some(Ipv4Addr::new(
            *bytes.get(o)?,
            bytes[o + 1],
            bytes[o + 2],
            bytes[o + 3],
        ))
    };
    let (sport, dport) = match proto {
        6 | 17 => {
            let p = bytes.get(ihl..ihl + 4)?;
            (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            )
        }
        _ => (0, 0),
    };
    Some(Tuple {
        src: ip(12)?,
        dst: ip(16)?,
        proto,
        sport,
        dport,
    })
}

/// A queue bound by a driver, valid in the world that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NfqId {
    pub(crate) host: usize,
    pub(crate) queue: u16,
}

/// A built-in holder, valid in the world that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HolderId(pub(crate) usize);

/// What a holder has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolderStats {
    /// Packets received.
    pub held: u64,
    /// Packets given their verdict.
    pub released: u64,
    /// Verdict batches sent.
    pub batches: u64,
}

/// Who is bound to a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binder {
    Driver,
    Holder(usize),
}

#[derive(Debug)]
pub(crate) struct Waiting {
    pub(crate) id: u32,
    pub(crate) stage: Stage,
    pub(crate) resume: usize,
    pub(crate) skb: Skb,
    /// Handed to the driver already.
    pub(crate) taken: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) bound: Option<Binder>,
    pub(crate) waiting: VecDeque<Waiting>,
    pub(crate) next_id: u32,
}

/// A host's queues.
#[derive(Debug, Default)]
pub(crate) struct Queues(pub(crate) BTreeMap<u16, Queue>);

/// The built-in holder's settings and state.
#[derive(Debug)]
pub(crate) struct Holder {
    pub(crate) host: usize,
    pub(crate) queue: u16,
    pub(crate) count: usize,
    pub(crate) delay: Duration,
    pub(crate) accept: bool,
    /// Ids received and not yet in a batch.
    pub(crate) held: Vec<u32>,
    /// Batches full and waiting for their delay, oldest first.
    pub(crate) due: VecDeque<Vec<u32>>,
    pub(crate) stats: HolderStats,
    pub(crate) log: Vec<(SimTime, String)>,
}
