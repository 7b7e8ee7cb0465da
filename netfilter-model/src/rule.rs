//! The typed model of a rule: [`Match`]es and [`Action`]s, in a [`Command`] on a table/chain.

use crate::hook::{Hook, Table};
use crate::packet::{CtState, Proto};
use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 prefix (`10.0.0.0/24`; a bare address is `/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Net {
    /// The address, with the host bits as written.
    pub addr: Ipv4Addr,
    /// The prefix length, 0–32.
    pub len: u8,
}

impl Net {
    /// The netmask of the prefix.
    pub fn mask(self) -> u32 {
        match self.len {
            0 => 0,
            l => u32::MAX << (32 - u32::from(l.min(32))),
        }
    }

    /// Whether `a` is inside the prefix.
    pub fn contains(self, a: Ipv4Addr) -> bool {
        (u32::from(a) ^ u32::from(self.addr)) & self.mask() == 0
    }

    /// Reads `A.B.C.D` or `A.B.C.D/LEN`.
    pub fn parse(s: &str) -> Result<Net, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => {
                let len: u8 = l
                    .parse()
                    .map_err(|_| format!("prefix length `{l}` is not 0-32"))?;
                if len > 32 {
                    return Err(format!("prefix length {len} is over 32"));
                }
                (a, len)
            }
            None => (s, 32),
        };
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv4 address (names are not resolved)"))?;
        Ok(Net { addr, len })
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// An inclusive port range (`8080` is `8080:8080`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
}

impl PortRange {
    /// One port.
    pub fn one(p: u16) -> PortRange {
        PortRange { lo: p, hi: p }
    }

    /// Whether `p` is in the range.
    pub fn contains(self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }

    /// Reads `P` or `P<sep>Q` (`sep` is `:` for iptables matches, `-` for NAT and nft).
    pub fn parse(s: &str, sep: char) -> Result<PortRange, String> {
        let port = |w: &str| {
            w.parse::<u16>()
                .map_err(|_| format!("`{w}` is not a port number (names are not resolved)"))
        };
        let r = match s.split_once(sep) {
            Some((a, b)) => PortRange {
                lo: if a.is_empty() { 0 } else { port(a)? },
                hi: if b.is_empty() { u16::MAX } else { port(b)? },
            },
            None => PortRange::one(port(s)?),
        };
        if r.lo > r.hi {
            return Err(format!("range {}-{} is empty", r.lo, r.hi));
        }
        Ok(r)
    }

    /// Writes the range with `sep` between its ends (one port alone).
    pub fn show(self, sep: char) -> String {
        match self.lo == self.hi {
            true => self.lo.to_string(),
            false => format!("{}{sep}{}", self.lo, self.hi),
        }
    }
}

/// An interface name match; `eth+` (iptables) or `eth*` (nft) matches every name starting
/// with `eth`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IfaceName {
    /// The name, without the wildcard.
    pub name: String,
    /// A prefix match.
    pub wildcard: bool,
}

impl IfaceName {
    /// Reads a name with an optional trailing wildcard character `wild`.
    pub fn parse(s: &str, wild: char) -> IfaceName {
        match s.strip_suffix(wild) {
            Some(p) => IfaceName {
                name: p.to_string(),
                wildcard: true,
            },
            None => IfaceName {
                name: s.to_string(),
                wildcard: false,
            },
        }
    }

    /// Whether interface `i` matches.
    pub fn matches(&self, i: &str) -> bool {
        match self.wildcard {
            true => i.starts_with(&self.name),
            false => i == self.name,
        }
    }
}

/// Which port of the packet a port match reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortDir {
    /// The source port.
    Src,
    /// The destination port.
    Dst,
    /// Either (`-m multiport --ports`).
    Either,
}

/// One condition of a rule. Each may be negated (`! -s`, `!=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `-s NET` / `ip saddr NET`.
    Src {
        /// The prefix.
        net: Net,
        /// `!`.
        negate: bool,
    },
    /// `-d NET` / `ip daddr NET`.
    Dst {
        /// The prefix.
        net: Net,
        /// `!`.
        negate: bool,
    },
    /// `-p PROTO` / `meta l4proto PROTO` (also implied by nft `udp dport`).
    Proto {
        /// The protocol.
        proto: Proto,
        /// `!`.
        negate: bool,
    },
    /// `--sport`/`--dport` (needs `-p tcp|udp`), `-m multiport --sports/--dports/--ports`,
    /// nft `tcp|udp sport|dport`. A packet without ports never matches (negated or not).
    Ports {
        /// Which port.
        dir: PortDir,
        /// Any of these ranges.
        ranges: Vec<PortRange>,
        /// `!`.
        negate: bool,
        /// Written with `-m multiport` (kept for display).
        multiport: bool,
    },
    /// `-i IFACE` / `iifname`.
    InIface {
        /// The name.
        iface: IfaceName,
        /// `!`.
        negate: bool,
    },
    /// `-o IFACE` / `oifname`.
    OutIface {
        /// The name.
        iface: IfaceName,
        /// `!`.
        negate: bool,
    },
    /// `-m comment --comment TEXT` / nft `comment "TEXT"`: always true.
    Comment(String),
    /// `-m mark --mark V[/M]` / nft `meta mark V`: `(mark & M) == V`.
    Mark {
        /// The value.
        value: u32,
        /// The mask (`0xffffffff` when not written).
        mask: u32,
        /// `!`.
        negate: bool,
    },
    /// `-m conntrack --ctstate S,…` / `-m state --state S,…` / nft `ct state S, …`.
    CtState {
        /// Any of these.
        states: Vec<CtState>,
        /// `!`.
        negate: bool,
        /// Written as `-m state --state` (kept for display).
        state_module: bool,
    },
}

/// `--queue-num N` (count 1) or `--queue-balance N:M` (count M-N+1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueSpec {
    /// The first queue number.
    pub first: u16,
    /// How many queues, at least 1.
    pub count: u16,
    /// `--queue-bypass` / nft `bypass`: with no program bound to the queue, accept instead of
    /// dropping.
    pub bypass: bool,
    /// Written as `--queue-balance` (kept for display, also when the range is one queue).
    pub balance: bool,
}

impl QueueSpec {
    /// The queue a packet with flow hash `hash` goes to: `first + ((hash * count) >> 32)`,
    /// the kernel's `reciprocal_scale` in `nfqueue_hash` (xt_NFQUEUE, nft_queue).
    pub fn queue_for(self, hash: u32) -> u16 {
        let off = (u64::from(hash) * u64::from(self.count.max(1))) >> 32;
        self.first.wrapping_add(off as u16)
    }
}

/// The address (range) and port range of a SNAT/DNAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatTo {
    /// First address.
    pub lo: Ipv4Addr,
    /// Last address (`lo` for one address).
    pub hi: Ipv4Addr,
    /// New port (range), if written.
    pub ports: Option<PortRange>,
}

impl NatTo {
    /// Reads `A[-B][:P[-Q]]`.
    pub fn parse(s: &str) -> Result<NatTo, String> {
        let (addrs, ports) = match s.split_once(':') {
            Some((a, p)) => (a, Some(PortRange::parse(p, '-')?)),
            None => (s, None),
        };
        let addr = |w: &str| {
            w.parse::<Ipv4Addr>()
                .map_err(|_| format!("`{w}` is not an IPv4 address"))
        };
        let (lo, hi) = match addrs.split_once('-') {
            Some((a, b)) => (addr(a)?, addr(b)?),
            None => (addr(addrs)?, addr(addrs)?),
        };
        if u32::from(lo) > u32::from(hi) {
            return Err(format!("address range {lo}-{hi} is empty"));
        }
        Ok(NatTo { lo, hi, ports })
    }
}

impl fmt::Display for NatTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.lo)?;
        if self.hi != self.lo {
            write!(f, "-{}", self.hi)?;
        }
        if let Some(p) = self.ports {
            write!(f, ":{}", p.show('-'))?;
        }
        Ok(())
    }
}

/// How a MARK target writes the mark, as written (all reduce to [`MarkOp::apply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkOp {
    /// `--set-xmark V/M`: `mark = (mark & !M) ^ V`.
    SetXmark {
        /// V.
        value: u32,
        /// M.
        mask: u32,
    },
    /// `--set-mark V/M` (nft `meta mark set V` with M all ones): `mark = (mark & !M) | V`,
    /// which iptables turns into `--set-xmark V/(M|V)`.
    SetMark {
        /// V.
        value: u32,
        /// M.
        mask: u32,
    },
    /// `--and-mark V`: `mark &= V`.
    And(u32),
    /// `--or-mark V`: `mark |= V`.
    Or(u32),
    /// `--xor-mark V`: `mark ^= V`.
    Xor(u32),
}

impl MarkOp {
    /// The kernel's form (xt_MARK `mark_tg`): `(value, mask)` with `mark = (mark & !mask) ^
    /// value`.
    pub fn xmark(self) -> (u32, u32) {
        match self {
            MarkOp::SetXmark { value, mask } => (value, mask),
            MarkOp::SetMark { value, mask } => (value, mask | value),
            MarkOp::And(v) => (0, !v),
            MarkOp::Or(v) => (v, v),
            MarkOp::Xor(v) => (v, 0),
        }
    }

    /// The new mark.
    pub fn apply(self, mark: u32) -> u32 {
        let (value, mask) = self.xmark();
        (mark & !mask) ^ value
    }
}

/// What a rule does when it matches. iptables rules have one (`-j`/`-g`); nft rules may have
/// several statements, run in order until a terminal one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `ACCEPT` / `accept`: ends this chain traversal (the next table still runs).
    Accept,
    /// `DROP` / `drop`.
    Drop,
    /// `RETURN` / `return`: back to the calling chain (the policy in a base chain).
    Return,
    /// `-j CHAIN` / `jump CHAIN`.
    Jump(String),
    /// `-g CHAIN` / `goto CHAIN`.
    Goto(String),
    /// `NFQUEUE` / `queue`.
    Queue(QueueSpec),
    /// `REJECT [--reject-with TYPE]` / `reject`.
    Reject(Option<String>),
    /// `MASQUERADE [--to-ports P[-Q]]` / `masquerade [to :P]`: SNAT to the address of the
    /// outgoing interface.
    Masquerade(Option<PortRange>),
    /// `SNAT --to-source` / `snat to`.
    Snat(NatTo),
    /// `DNAT --to-destination` / `dnat to`.
    Dnat(NatTo),
    /// nft `dnat to numgen inc mod N [offset O] map { K : ADDR, … }`: each evaluation takes
    /// the next value of a counter kept in the ruleset (0, 1, …, N-1, 0, …, plus the offset)
    /// and DNATs to the address the map gives it; no entry: the rule does not match.
    DnatNumgen {
        /// N.
        modulus: u32,
        /// O.
        offset: u32,
        /// The map, in written order.
        map: Vec<(u32, Ipv4Addr)>,
        /// A port after the map (`… } : 80`), if written.
        port: Option<u16>,
    },
    /// `CT --notrack` / `NOTRACK` / `notrack`: conntrack leaves the packet alone.
    Notrack {
        /// Written as `-j NOTRACK` (kept for display).
        legacy: bool,
    },
    /// `MARK …` / `meta mark set V`.
    Mark(MarkOp),
    /// `TEE --gateway ADDR`: a copy of the packet is routed to ADDR; the original goes on.
    Tee(Ipv4Addr),
    /// `LOG [--log-prefix P]` / `log [prefix P]`.
    Log(Option<String>),
    /// nft `counter`: counts, nothing else.
    Counter,
}

impl Action {
    /// Whether the action ends the chain (everything but marks, TEE, NOTRACK, LOG, counter).
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            Action::Notrack { .. }
                | Action::Mark(_)
                | Action::Tee(_)
                | Action::Log(_)
                | Action::Counter
        )
    }
}

/// One rule: every match must hold, then the actions run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// The conditions (all must hold; none: every packet).
    pub matches: Vec<Match>,
    /// What it does (none: a rule that only counts).
    pub actions: Vec<Action>,
}

/// A base chain's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// `ACCEPT`.
    Accept,
    /// `DROP`.
    Drop,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        })
    }
}

/// The address family of an nft table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NftFamily {
    /// `ip`.
    Ip,
    /// `inet` (its IPv4 half).
    Inet,
}

impl fmt::Display for NftFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NftFamily::Ip => "ip",
            NftFamily::Inet => "inet",
        })
    }
}

/// A table: an iptables table, or an nft table by family and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TableId {
    /// `-t TABLE`.
    Ip(Table),
    /// `table FAMILY NAME { … }`.
    Nft {
        /// The family.
        family: NftFamily,
        /// The name.
        name: String,
    },
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableId::Ip(t) => write!(f, "{t}"),
            TableId::Nft { family, name } => write!(f, "{family} {name}"),
        }
    }
}

/// The type of a base chain (nft `type filter|nat|route`); iptables' nat table is `Nat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainType {
    /// Filtering (and marks, queueing, …).
    Filter,
    /// NAT: consulted for a connection's first packet only.
    Nat,
    /// `route`: mangle OUTPUT (a mark change reroutes).
    Route,
}

/// What a command does to a host's ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `-A CHAIN RULE` / an nft rule in a chain block.
    Append {
        /// The table.
        table: TableId,
        /// The chain.
        chain: String,
        /// The rule.
        rule: Rule,
    },
    /// `-I CHAIN [N] RULE`.
    Insert {
        /// The table.
        table: TableId,
        /// The chain.
        chain: String,
        /// 1-based position (1: the top).
        position: usize,
        /// The rule.
        rule: Rule,
    },
    /// `-N CHAIN` / an nft chain without `type … hook`.
    NewChain {
        /// The table.
        table: TableId,
        /// The chain.
        chain: String,
    },
    /// `-P CHAIN POLICY` (built-in chains only).
    Policy {
        /// The table.
        table: TableId,
        /// The chain.
        chain: String,
        /// The policy.
        policy: Policy,
    },
    /// An nft base chain: `chain NAME { type T hook H priority P; policy X; }`.
    BaseChain {
        /// The table.
        table: TableId,
        /// The chain.
        chain: String,
        /// `type`.
        kind: ChainType,
        /// `hook`.
        hook: Hook,
        /// `priority`, resolved to a number.
        priority: i32,
        /// `policy` (accept when not written).
        policy: Policy,
    },
}

/// One command and the text it was read from (quoted by errors and traces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What it does.
    pub op: Op,
    /// The rule or statement as written.
    pub text: String,
}
