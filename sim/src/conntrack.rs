//! Connection tracking of one host: entries with their original and reply tuples, NAT
//! bindings, the confirm step with its clash handling per [`KernelProfile`], the counters
//! `conntrack -S` shows and the listing `conntrack -L` prints.
//!
//! Modelled for UDP, TCP (tuples only: no TCP state machine or window tracking) and other
//! protocols by address. Timeouts: UDP 30 s until a reply, 120 s after; TCP and others 120 s;
//! expired entries are removed when next looked at. Not modelled: helpers and expectations,
//! zones, ICMP errors as RELATED (they are not tracked), early drop and table limits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::kernel::KernelProfile;
use crate::time::SimTime;

/// A conntrack tuple: addresses, protocol number and ports (0 for protocols without ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub proto: u8,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

impl Tuple {
    /// The same flow seen from the other end.
    pub fn invert(self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

/// Which way a packet goes relative to its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// As the first packet went.
    Original,
    /// Back.
    Reply,
}

/// One connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    /// The tuple of the first packet as it arrived.
    pub orig: Tuple,
    /// What a reply looks like, NAT bindings applied.
    pub reply: Tuple,
    /// Source NAT decided (a binding or none).
    pub snat_decided: bool,
    /// Destination NAT decided.
    pub dnat_decided: bool,
    /// A reply has been seen.
    pub replied: bool,
    /// Inserted in the reply direction only (`nf_ct_resolve_clash_harder`, IPS_NAT_CLASH):
    /// counted in `entries`, never listed, never found by original-direction lookups.
    pub nat_clash: bool,
    /// When it stops being valid unless traffic refreshes it.
    pub expires: SimTime,
}

impl CtEntry {
    /// A new, unconfirmed entry for a packet with tuple `t`.
    pub fn new(t: Tuple) -> CtEntry {
        CtEntry {
            orig: t,
            reply: t.invert(),
            snat_decided: false,
            dnat_decided: false,
            replied: false,
            nat_clash: false,
            expires: SimTime::ZERO,
        }
    }

    /// Whether a NAT binding changed either direction.
    pub fn natted(&self) -> bool {
        self.reply != self.orig.invert()
    }

    fn timeout(&self) -> Duration {
        match (self.orig.proto, self.replied) {
            (17, false) => Duration::from_secs(30),
            _ => Duration::from_secs(120),
        }
    }
}

/// What the confirm step did with a packet's unconfirmed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// Inserted under this id.
    Inserted(u64),
    /// It clashed and the packet now belongs to the existing entry `id`.
    Merged(u64),
    /// It clashed and was inserted in the reply direction only.
    ReplyOnly(u64),
    /// It clashed and the packet is dropped.
    Dropped,
}

/// The `conntrack -S` counter names, in the order the stat file lists them on 6.18.
pub const COUNTERS: [&str; 17] = [
    "entries",
    "clash_resolve",
    "found",
    "new",
    "invalid",
    "ignore",
    "delete",
    "chaintoolong",
    "insert",
    "insert_failed",
    "drop",
    "early_drop",
    "icmp_error",
    "expect_new",
    "expect_create",
    "expect_delete",
    "search_restart",
];

/// One host's connection table.
#[derive(Debug, Clone, Default)]
pub struct CtTable {
    entries: BTreeMap<u64, CtEntry>,
    next_id: u64,
    counters: BTreeMap<&'static str, u64>,
}

impl CtTable {
    fn bump(&mut self, name: &'static str) {
        *self.counters.entry(name).or_default() += 1;
    }

    fn expire(&mut self, now: SimTime) {
        self.entries.retain(|_, e| e.expires > now);
    }

    /// The confirmed entry a packet with tuple `t` belongs to, and its direction.
    pub fn lookup(&mut self, t: &Tuple, now: SimTime) -> Option<(u64, Dir)> {
        self.expire(now);
        self.entries.iter().find_map(|(id, e)| {
            if !e.nat_clash && e.orig == *t {
                Some((*id, Dir::Original))
            } else if e.reply == *t {
                Some((*id, Dir::Reply))
            } else {
                None
            }
        })
    }

    /// A packet of entry `id` went `dir`: a reply marks it replied; the timeout restarts.
    pub fn seen(&mut self, id: u64, dir: Dir, now: SimTime) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.replied |= dir == Dir::Reply;
            e.expires = now.saturating_add(e.timeout());
        }
    }

    /// The entry `id`.
    pub fn get(&self, id: u64) -> Option<&CtEntry> {
        self.entries.get(&id)
    }

    /// `nf_nat_used_tuple`: whether a confirmed entry already answers to `reply` (so a NAT
    /// binding giving that reply tuple would be ambiguous). With the same-origin exception,
    /// an entry of the very same flow (`orig`) does not count.
    pub fn reply_taken(&mut self, reply: &Tuple, orig: &Tuple, profile: KernelProfile) -> bool {
        let taken = self.entries.values().any(|e| {
            e.reply == *reply && !(profile.nat_same_origin_exception() && e.orig == *orig)
        });
        if taken {
            self.bump("found");
        }
        taken
    }

    /// `__nf_conntrack_confirm`: inserts `new`, or handles its clash as `profile` does.
    pub fn confirm(&mut self, mut new: CtEntry, now: SimTime, profile: KernelProfile) -> Confirmed {
        self.expire(now);
        new.expires = now.saturating_add(new.timeout());
        let clash = self.entries.iter().find_map(|(id, e)| {
            ((!e.nat_clash && e.orig == new.orig) || e.reply == new.reply).then_some(*id)
        });
        let Some(winner) = clash else {
            let id = self.insert(new);
            return Confirmed::Inserted(id);
        };
        let udp = new.orig.proto == 17;
        if !profile.resolves_clash() || !udp {
            self.bump("insert_failed");
            self.bump("drop");
            return Confirmed::Dropped;
        }
        if !profile.counts_clash_resolve() {
            // 4.18: counted as a failed insert, resolved by using the winner.
            self.bump("insert_failed");
            return Confirmed::Merged(winner);
        }
        let w = &self.entries[&winner];
        if !w.natted() || (w.orig == new.orig && w.reply == new.reply) {
            self.bump("clash_resolve");
            return Confirmed::Merged(winner);
        }
        // nf_ct_resolve_clash_harder: the reply direction must not clash as well.
        if self.entries.values().any(|e| e.reply == new.reply) {
            self.bump("insert_failed");
            self.bump("drop");
            return Confirmed::Dropped;
        }
        new.nat_clash = true;
        self.bump("clash_resolve");
        Confirmed::ReplyOnly(self.insert(new))
    }

    fn insert(&mut self, e: CtEntry) -> u64 {
        self.next_id += 1;
        self.entries.insert(self.next_id, e);
        self.next_id
    }

    /// The counters as `conntrack -S` names them (every name, zero or not).
    pub fn counters(&mut self, now: SimTime) -> BTreeMap<String, u64> {
        self.expire(now);
        let mut out: BTreeMap<String, u64> = COUNTERS
            .iter()
            .map(|n| (n.to_string(), self.counters.get(n).copied().unwrap_or(0)))
            .collect();
        out.insert("entries".into(), self.entries.len() as u64);
        out
    }

    /// `conntrack -L [filter]`: one line per listed entry, oldest first.
    pub fn list(&mut self, filter: &CtFilter, now: SimTime) -> Vec<String> {
        self.expire(now);
        self.entries
            .values()
            .filter(|e| !e.nat_clash && filter.matches(&e.orig))
            .map(|e| {
                let left = e.expires.saturating_duration_since(now).as_secs();
                let (name, num) = match e.orig.proto {
                    6 => ("tcp".to_string(), 6),
                    17 => ("udp".to_string(), 17),
                    1 => ("icmp".to_string(), 1),
                    n => ("unknown".to_string(), n),
                };
                let mut l = format!("{name:<8} {num} {left} ");
                let tuple = |l: &mut String, t: &Tuple| {
                    let _ = write!(l, "src={} dst={} ", t.src, t.dst);
                    if t.proto == 6 || t.proto == 17 {
                        let _ = write!(l, "sport={} dport={} ", t.sport, t.dport);
                    }
                };
                tuple(&mut l, &e.orig);
                if !e.replied {
                    l.push_str("[UNREPLIED] ");
                }
                tuple(&mut l, &e.reply);
                l.push_str("mark=0 use=1");
                l
            })
            .collect()
    }
}

/// What `conntrack -L` is asked to select (original direction), from its command-line words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtFilter {
    proto: Option<u8>,
    src: Option<Ipv4Addr>,
    dst: Option<Ipv4Addr>,
    sport: Option<u16>,
    dport: Option<u16>,
}

impl CtFilter {
    /// Reads `-p PROTO`, `-s ADDR`, `-d ADDR`, `--sport N`, `--dport N` (long forms
    /// `--proto`, `--src`/`--orig-src`, `--dst`/`--orig-dst`, `--orig-port-src`,
    /// `--orig-port-dst` too); anything else is an error naming the word.
    pub fn parse(words: &[String]) -> Result<CtFilter, String> {
        let mut f = CtFilter::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let mut value = || {
                it.next()
                    .ok_or_else(|| format!("conntrack option {w} needs a value"))
            };
            match w.as_str() {
                "-p" | "--proto" => {
                    f.proto = Some(match value()?.as_str() {
                        "tcp" => 6,
                        "udp" => 17,
                        "icmp" => 1,
                        v => v
                            .parse()
                            .map_err(|_| format!("conntrack -p {v}: unknown protocol"))?,
                    })
                }
                "-s" | "--src" | "--orig-src" => f.src = Some(addr(w, value()?)?),
                "-d" | "--dst" | "--orig-dst" => f.dst = Some(addr(w, value()?)?),
                "--sport" | "--orig-port-src" => f.sport = Some(port(w, value()?)?),
                "--dport" | "--orig-port-dst" => f.dport = Some(port(w, value()?)?),
                other => {
                    return Err(format!(
                        "conntrack option {other} is not simulated (-p, -s, -d, --sport, --dport are)"
                    ));
                }
            }
        }
        Ok(f)
    }

    fn matches(&self, t: &Tuple) -> bool {
        self.proto.is_none_or(|p| p == t.proto)
            && self.src.is_none_or(|a| a == t.src)
            && self.dst.is_none_or(|a| a == t.dst)
            && self.sport.is_none_or(|p| p == t.sport)
            && self.dport.is_none_or(|p| p == t.dport)
    }
}

fn addr(opt: &str, v: &str) -> Result<Ipv4Addr, String> {
    v.parse()
        .map_err(|_| format!("conntrack {opt} {v}: not an IPv4 address"))
}

fn port(opt: &str, v: &str) -> Result<u16, String> {
    v.parse()
        .map_err(|_| format!("conntrack {opt} {v}: not a port"))
}
