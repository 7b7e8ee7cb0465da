//! Where rules run: the netfilter [`Hook`]s, the iptables [`Table`]s and their priorities.

use std::fmt;

/// A netfilter IPv4 hook: the five places a packet meets the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// Every packet arriving, before the routing decision.
    Prerouting,
    /// Packets routed to a local address.
    Input,
    /// Packets routed through the host.
    Forward,
    /// Locally generated packets.
    Output,
    /// Every packet leaving, after the routing decision.
    Postrouting,
}

impl Hook {
    /// All hooks, in the order a forwarded packet meets the first, third and fifth.
    pub const ALL: [Hook; 5] = [
        Hook::Prerouting,
        Hook::Input,
        Hook::Forward,
        Hook::Output,
        Hook::Postrouting,
    ];

    /// The iptables built-in chain name (`PREROUTING`, …).
    pub fn chain_name(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }

    /// The hook of an iptables built-in chain name.
    pub fn from_chain_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.chain_name() == name)
    }

    /// The nft hook name (`prerouting`, …).
    pub fn nft_name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }

    /// The hook of an nft hook name.
    pub fn from_nft_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.nft_name() == name)
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.chain_name())
    }
}

/// An iptables table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `raw`: before conntrack (NOTRACK).
    Raw,
    /// `mangle`: marks, TEE, queueing before the routing decision.
    Mangle,
    /// `nat`: consulted for the first packet of a connection only.
    Nat,
    /// `filter`: the default table.
    Filter,
    /// `security`: SELinux marks; accepted for completeness, no target of its own here.
    Security,
}

impl Table {
    /// Reads a table name.
    pub fn parse(name: &str) -> Option<Table> {
        match name {
            "raw" => Some(Table::Raw),
            "mangle" => Some(Table::Mangle),
            "nat" => Some(Table::Nat),
            "filter" => Some(Table::Filter),
            "security" => Some(Table::Security),
            _ => None,
        }
    }

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Raw => "raw",
            Table::Mangle => "mangle",
            Table::Nat => "nat",
            Table::Filter => "filter",
            Table::Security => "security",
        }
    }

    /// The hooks the table has built-in chains at.
    pub fn hooks(self) -> &'static [Hook] {
        match self {
            Table::Raw => &[Hook::Prerouting, Hook::Output],
            Table::Mangle => &Hook::ALL,
            Table::Nat => &[
                Hook::Prerouting,
                Hook::Input,
                Hook::Output,
                Hook::Postrouting,
            ],
            Table::Filter | Table::Security => &[Hook::Input, Hook::Forward, Hook::Output],
        }
    }

    /// The priority of the table's chain at `hook` (lower runs first), as the kernel
    /// registers it: raw -300, mangle -150, nat -100 (DNAT: PREROUTING, OUTPUT) or 100 (SNAT:
    /// INPUT, POSTROUTING), filter 0, security 50.
    pub fn priority(self, hook: Hook) -> i32 {
        match self {
            Table::Raw => priority::RAW,
            Table::Mangle => priority::MANGLE,
            Table::Nat => match hook {
                Hook::Prerouting | Hook::Output => priority::DSTNAT,
                _ => priority::SRCNAT,
            },
            Table::Filter => priority::FILTER,
            Table::Security => priority::SECURITY,
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernel's IPv4 hook priorities (`enum nf_ip_hook_priorities`) and nft's names for them.
pub mod priority {
    /// `raw`: -300.
    pub const RAW: i32 = -300;
    /// conntrack itself: -200 (after raw, so NOTRACK works).
    pub const CONNTRACK: i32 = -200;
    /// `mangle`: -150.
    pub const MANGLE: i32 = -150;
    /// `dstnat` (nat PREROUTING, OUTPUT): -100.
    pub const DSTNAT: i32 = -100;
    /// `filter`: 0.
    pub const FILTER: i32 = 0;
    /// `security`: 50.
    pub const SECURITY: i32 = 50;
    /// `srcnat` (nat INPUT, POSTROUTING): 100.
    pub const SRCNAT: i32 = 100;

    /// nft's name for a priority (`raw`, `mangle`, `dstnat`, `filter`, `security`, `srcnat`).
    pub fn named(name: &str) -> Option<i32> {
        match name {
            "raw" => Some(RAW),
            "mangle" => Some(MANGLE),
            "dstnat" => Some(DSTNAT),
            "filter" => Some(FILTER),
            "security" => Some(SECURITY),
            "srcnat" => Some(SRCNAT),
            _ => None,
        }
    }
}
