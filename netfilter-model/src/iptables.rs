//! The iptables rule parser: one command line (`[iptables] [-t T] -A|-I|-N|-P …`) to a [`Command`].

use crate::error::{Reading, RuleError};
use crate::hook::Table;
use crate::packet::{CtState, Proto};
use crate::rule::{
    Action, Command, IfaceName, MarkOp, Match, NatTo, Net, Op, Policy, PortDir, PortRange,
    QueueSpec, Rule, TableId,
};
use crate::words;
use std::net::Ipv4Addr;

/// iptables target extensions that exist but that the model does not evaluate: `-j` with one
/// of these is refused rather than taken for a jump to a user chain of that name.
const KNOWN_TARGETS: &[&str] = &[
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CLUSTERIP",
    "CONNMARK",
    "CONNSECMARK",
    "DNPT",
    "DSCP",
    "ECN",
    "HL",
    "HMARK",
    "IDLETIMER",
    "LED",
    "NETMAP",
    "NFLOG",
    "QUEUE",
    "RATEEST",
    "REDIRECT",
    "SECMARK",
    "SET",
    "SNPT",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
];

/// The match modules the model reads (`-m NAME`).
const MODULES: &[&str] = &[
    "tcp",
    "udp",
    "multiport",
    "comment",
    "mark",
    "conntrack",
    "state",
];

/// The target being read, with its options so far.
#[derive(Default)]
struct TargetOpts {
    name: Option<String>,
    goto: bool,
    queue: Option<QueueSpec>,
    bypass: bool,
    to_ports: Option<PortRange>,
    to: Option<NatTo>,
    notrack: bool,
    mark: Option<MarkOp>,
    gateway: Option<Ipv4Addr>,
    reject_with: Option<String>,
    log_prefix: Option<String>,
}

/// Parses one iptables command line, as a topology file or `lb` writes it: an optional
/// leading `iptables` (or `iptables-nft`, `iptables-legacy`), `-w [SECS]` (ignored), `-t
/// TABLE` (default `filter`), then `-A CHAIN RULE`, `-I CHAIN [N] RULE`, `-N CHAIN` or `-P
/// CHAIN ACCEPT|DROP`. Anything the model does not evaluate is an error naming it.
pub fn parse(line: &str) -> Result<Command, RuleError> {
    Parser::new(line)?.run()
}

struct Parser<'a> {
    text: &'a str,
    words: Vec<String>,
    i: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, RuleError> {
        let words = words::split(text).map_err(|why| RuleError::Malformed {
            why,
            rule: text.to_string(),
        })?;
        Ok(Parser { text, words, i: 0 })
    }

    fn unsupported(&self, what: &'static str, word: impl Into<String>) -> RuleError {
        Reading(self.text).unsupported(what, word)
    }

    fn invalid(&self, what: &'static str, word: &str, why: impl Into<String>) -> RuleError {
        Reading(self.text).invalid(what, word, why)
    }

    fn malformed(&self, why: impl Into<String>) -> RuleError {
        RuleError::Malformed {
            why: why.into(),
            rule: self.text.to_string(),
        }
    }

    /// The argument of option `opt` (the next word).
    fn arg(&mut self, opt: &str) -> Result<String, RuleError> {
        let w = self
            .words
            .get(self.i)
            .cloned()
            .ok_or_else(|| self.malformed(format!("`{opt}` is missing its argument")))?;
        self.i += 1;
        Ok(w)
    }

    fn peek(&self) -> Option<&str> {
        self.words.get(self.i).map(String::as_str)
    }

    fn run(mut self) -> Result<Command, RuleError> {
        if matches!(
            self.peek(),
            Some("iptables" | "iptables-nft" | "iptables-legacy")
        ) {
            self.i += 1;
        }
        let mut table = None;
        let mut command: Option<(String, String)> = None;
        let mut position = None;
        let mut policy = None;
        let mut matches = Vec::new();
        let mut modules: Vec<String> = Vec::new();
        let mut proto = None;
        let mut negate = false;
        let mut t = TargetOpts::default();
        while let Some(word) = self.words.get(self.i).cloned() {
            self.i += 1;
            let w = word.as_str();
            if negate && !negatable(w) {
                return Err(self.malformed(format!("`!` before `{w}`, which cannot be negated")));
            }
            match w {
                "!" => {
                    if negate {
                        return Err(self.malformed("`! !`"));
                    }
                    negate = true;
                    continue;
                }
                "-w" | "--wait" => {
                    if self.peek().is_some_and(|n| n.parse::<f64>().is_ok()) {
                        self.i += 1;
                    }
                }
                "-t" | "--table" => {
                    let name = self.arg(w)?;
                    if table.is_some() {
                        return Err(self.malformed("`-t` given twice"));
                    }
                    let parsed = Table::parse(&name).ok_or_else(|| {
                        self.invalid("table", &name, "not raw, mangle, nat, filter or security")
                    })?;
                    table = Some(parsed);
                }
                "-A" | "--append" | "-I" | "--insert" | "-N" | "--new-chain" | "-P"
                | "--policy" => {
                    if command.is_some() {
                        return Err(self.malformed(format!("a second command `{w}`")));
                    }
                    let chain = self.arg(w)?;
                    let short = match w {
                        "--append" => "-A",
                        "--insert" => "-I",
                        "--new-chain" => "-N",
                        "--policy" => "-P",
                        s => s,
                    };
                    if short == "-I" {
                        if let Some(n) = self.peek().and_then(|n| n.parse::<usize>().ok()) {
                            if n == 0 {
                                return Err(self.invalid(
                                    "position",
                                    "0",
                                    "rule positions start at 1",
                                ));
                            }
                            position = Some(n);
                            self.i += 1;
                        }
                    }
                    if short == "-P" {
                        let p = self.arg(w)?;
                        policy = Some(match p.as_str() {
                            "ACCEPT" => Policy::Accept,
                            "DROP" => Policy::Drop,
                            _ => {
                                return Err(self.invalid(
                                    "policy",
                                    &p,
                                    "a policy is ACCEPT or DROP",
                                ));
                            }
                        });
                    }
                    command = Some((short.to_string(), chain));
                }
                "-D" | "--delete" | "-R" | "--replace" | "-F" | "--flush" | "-X"
                | "--delete-chain" | "-Z" | "--zero" | "-L" | "--list" | "-S" | "--list-rules"
                | "-E" | "--rename-chain" | "-C" | "--check" => {
                    return Err(self.unsupported("command", w));
                }
                "-s" | "--source" | "-d" | "--destination" => {
                    let a = self.arg(w)?;
                    let net = Net::parse(&a).map_err(|why| self.invalid("address", &a, why))?;
                    matches.push(match w.starts_with("-s") || w == "--source" {
                        true => Match::Src { net, negate },
                        false => Match::Dst { net, negate },
                    });
                }
                "-p" | "--protocol" => {
                    let p = self.arg(w)?;
                    if p == "all" || p == "0" {
                        if negate {
                            return Err(self.invalid("protocol", &p, "`! -p all` matches nothing"));
                        }
                    } else {
                        let parsed = Proto::parse(&p).ok_or_else(|| {
                            self.invalid("protocol", &p, "not tcp, udp, icmp, all or a number")
                        })?;
                        if !negate {
                            proto = Some(parsed);
                        }
                        matches.push(Match::Proto {
                            proto: parsed,
                            negate,
                        });
                    }
                }
                "-i" | "--in-interface" | "-o" | "--out-interface" => {
                    let n = self.arg(w)?;
                    let iface = IfaceName::parse(&n, '+');
                    matches.push(match w == "-i" || w == "--in-interface" {
                        true => Match::InIface { iface, negate },
                        false => Match::OutIface { iface, negate },
                    });
                }
                "-m" | "--match" => {
                    let m = self.arg(w)?;
                    if !MODULES.contains(&m.as_str()) {
                        return Err(self.unsupported("match", format!("-m {m}")));
                    }
                    if (m == "tcp" || m == "udp") && proto != Proto::parse(&m) {
                        return Err(self.malformed(format!("`-m {m}` without `-p {m}`")));
                    }
                    modules.push(m);
                }
                "--sport" | "--source-port" | "--dport" | "--destination-port" => {
                    if !proto.is_some_and(Proto::has_ports) {
                        return Err(self.malformed(format!("`{w}` without `-p tcp` or `-p udp`")));
                    }
                    let p = self.arg(w)?;
                    let range =
                        PortRange::parse(&p, ':').map_err(|why| self.invalid("port", &p, why))?;
                    let dir = match w {
                        "--sport" | "--source-port" => PortDir::Src,
                        _ => PortDir::Dst,
                    };
                    matches.push(Match::Ports {
                        dir,
                        ranges: vec![range],
                        negate,
                        multiport: false,
                    });
                }
                "--sports" | "--source-ports" | "--dports" | "--destination-ports" | "--ports" => {
                    self.needs(&modules, "multiport", w)?;
                    if !proto.is_some_and(Proto::has_ports) {
                        return Err(self.malformed("`-m multiport` without `-p tcp` or `-p udp`"));
                    }
                    let list = self.arg(w)?;
                    let mut ranges = Vec::new();
                    for p in list.split(',') {
                        ranges.push(
                            PortRange::parse(p, ':').map_err(|why| self.invalid("port", p, why))?,
                        );
                    }
                    if ranges.len() > 15 {
                        return Err(self.invalid(
                            "port list",
                            &list,
                            "multiport takes at most 15 ports",
                        ));
                    }
                    let dir = match w {
                        "--sports" | "--source-ports" => PortDir::Src,
                        "--ports" => PortDir::Either,
                        _ => PortDir::Dst,
                    };
                    matches.push(Match::Ports {
                        dir,
                        ranges,
                        negate,
                        multiport: true,
                    });
                }
                "--comment" => {
                    self.needs(&modules, "comment", w)?;
                    let c = self.arg(w)?;
                    matches.push(Match::Comment(c));
                }
                "--mark" => {
                    self.needs(&modules, "mark", w)?;
                    let v = self.arg(w)?;
                    let (value, mask) =
                        parse_mark(&v).map_err(|why| self.invalid("mark", &v, why))?;
                    matches.push(Match::Mark {
                        value,
                        mask,
                        negate,
                    });
                }
                "--ctstate" | "--state" => {
                    let module = if w == "--state" { "state" } else { "conntrack" };
                    self.needs(&modules, module, w)?;
                    let list = self.arg(w)?;
                    let mut states = Vec::new();
                    for s in list.split(',') {
                        states.push(CtState::parse(s).ok_or_else(|| {
                            self.invalid(
                                "state",
                                s,
                                "not NEW, ESTABLISHED, RELATED, INVALID or UNTRACKED",
                            )
                        })?);
                    }
                    matches.push(Match::CtState {
                        states,
                        negate,
                        state_module: w == "--state",
                    });
                }
                "-j" | "--jump" | "-g" | "--goto" => {
                    if t.name.is_some() {
                        return Err(self.malformed(format!("a second target `{w}`")));
                    }
                    let name = self.arg(w)?;
                    if KNOWN_TARGETS.contains(&name.as_str()) {
                        return Err(self.unsupported("target", format!("-j {name}")));
                    }
                    t.goto = w == "-g" || w == "--goto";
                    t.name = Some(name);
                }
                _ => self.target_option(w, &mut t)?,
            }
            negate = false;
        }
        if negate {
            return Err(self.malformed("a trailing `!`"));
        }
        let table = TableId::Ip(table.unwrap_or(Table::Filter));
        let Some((cmd, chain)) = command else {
            return Err(self.malformed(
                "a rule starts with -A, -I, -N or -P (after an optional `iptables` and `-t TABLE`)",
            ));
        };
        let has_rule = !matches.is_empty() || t.name.is_some();
        let op = match cmd.as_str() {
            "-N" | "-P" if has_rule => {
                return Err(self.malformed(format!("`{cmd}` takes no matches or target")));
            }
            "-N" => Op::NewChain { table, chain },
            "-P" => Op::Policy {
                table,
                chain,
                policy: policy.unwrap_or(Policy::Accept),
            },
            _ => {
                let actions = match &t.name {
                    Some(_) => vec![self.action(t)?],
                    None => Vec::new(),
                };
                let rule = Rule { matches, actions };
                match (cmd.as_str(), position) {
                    ("-I", p) => Op::Insert {
                        table,
                        chain,
                        position: p.unwrap_or(1),
                        rule,
                    },
                    _ => Op::Append { table, chain, rule },
                }
            }
        };
        Ok(Command {
            op,
            text: self.text.to_string(),
        })
    }

    fn needs(&self, modules: &[String], module: &str, opt: &str) -> Result<(), RuleError> {
        match modules.iter().any(|m| m == module) {
            true => Ok(()),
            false => Err(self.malformed(format!("`{opt}` without `-m {module}`"))),
        }
    }

    /// An option of the target (`--queue-num`, `--to-source`, …).
    fn target_option(&mut self, w: &str, t: &mut TargetOpts) -> Result<(), RuleError> {
        let target = t.name.clone().unwrap_or_default();
        let allowed: &[&str] = match target.as_str() {
            "NFQUEUE" => &["--queue-num", "--queue-balance", "--queue-bypass"],
            "MASQUERADE" => &["--to-ports"],
            "SNAT" => &["--to-source"],
            "DNAT" => &["--to-destination"],
            "CT" => &["--notrack"],
            "MARK" => &[
                "--set-mark",
                "--set-xmark",
                "--and-mark",
                "--or-mark",
                "--xor-mark",
            ],
            "TEE" => &["--gateway"],
            "REJECT" => &["--reject-with"],
            "LOG" => &["--log-prefix", "--log-level"],
            _ => &[],
        };
        if !allowed.contains(&w) {
            return Err(match w.starts_with('-') {
                true => self.unsupported("option", w),
                false => self.malformed(format!("a stray word `{w}`")),
            });
        }
        match w {
            "--queue-num" | "--queue-balance" => {
                if t.queue.is_some() {
                    return Err(self.malformed("two queue options"));
                }
                let v = self.arg(w)?;
                let bad = |why: &str| self.invalid("queue", &v, why.to_string());
                let spec = match w {
                    "--queue-num" => QueueSpec {
                        first: v.parse().map_err(|_| bad("not a queue number 0-65535"))?,
                        count: 1,
                        bypass: false,
                        balance: false,
                    },
                    _ => {
                        let (a, b) = v
                            .split_once(':')
                            .ok_or_else(|| bad("--queue-balance takes FIRST:LAST"))?;
                        let first: u16 =
                            a.parse().map_err(|_| bad("not a queue number 0-65535"))?;
                        let last: u16 = b.parse().map_err(|_| bad("not a queue number 0-65535"))?;
                        if last < first {
                            return Err(bad("the last queue is before the first"));
                        }
                        QueueSpec {
                            first,
                            count: last - first + 1,
                            bypass: false,
                            balance: true,
                        }
                    }
                };
                t.queue = Some(spec);
            }
            "--queue-bypass" => t.bypass = true,
            "--to-ports" => {
                let v = self.arg(w)?;
                t.to_ports =
                    Some(PortRange::parse(&v, '-').map_err(|why| self.invalid("port", &v, why))?);
            }
            "--to-source" | "--to-destination" => {
                if t.to.is_some() {
                    return Err(self.unsupported("option", format!("a second {w}")));
                }
                let v = self.arg(w)?;
                t.to = Some(NatTo::parse(&v).map_err(|why| self.invalid("NAT address", &v, why))?);
            }
            "--notrack" => t.notrack = true,
            "--set-mark" | "--set-xmark" | "--and-mark" | "--or-mark" | "--xor-mark" => {
                if t.mark.is_some() {
                    return Err(self.malformed("two MARK operations"));
                }
                let v = self.arg(w)?;
                let bad = |why: String| self.invalid("mark", &v, why);
                t.mark = Some(match w {
                    "--set-mark" | "--set-xmark" => {
                        let (value, mask) = parse_mark(&v).map_err(bad)?;
                        match w {
                            "--set-mark" => MarkOp::SetMark { value, mask },
                            _ => MarkOp::SetXmark { value, mask },
                        }
                    }
                    _ => {
                        let value = parse_u32(&v).map_err(bad)?;
                        match w {
                            "--and-mark" => MarkOp::And(value),
                            "--or-mark" => MarkOp::Or(value),
                            _ => MarkOp::Xor(value),
                        }
                    }
                });
            }
            "--gateway" => {
                let v = self.arg(w)?;
                t.gateway = Some(
                    v.parse()
                        .map_err(|_| self.invalid("gateway", &v, "not an IPv4 address"))?,
                );
            }
            "--reject-with" => t.reject_with = Some(self.arg(w)?),
            "--log-prefix" => t.log_prefix = Some(self.arg(w)?),
            // "--log-level": read and ignored (the model does not log).
            _ => {
                self.arg(w)?;
            }
        }
        Ok(())
    }

    /// The action of the `-j`/`-g` target with its options.
    fn action(&self, t: TargetOpts) -> Result<Action, RuleError> {
        let name = t.name.unwrap_or_default();
        if t.goto {
            return Ok(Action::Goto(name));
        }
        let missing = |opt: &str| self.malformed(format!("`-j {name}` without `{opt}`"));
        Ok(match name.as_str() {
            "ACCEPT" => Action::Accept,
            "DROP" => Action::Drop,
            "RETURN" => Action::Return,
            "NFQUEUE" => {
                let mut q = t.queue.unwrap_or(QueueSpec {
                    first: 0,
                    count: 1,
                    bypass: false,
                    balance: false,
                });
                q.bypass = t.bypass;
                Action::Queue(q)
            }
            "MASQUERADE" => Action::Masquerade(t.to_ports),
            "SNAT" => Action::Snat(t.to.ok_or_else(|| missing("--to-source"))?),
            "DNAT" => Action::Dnat(t.to.ok_or_else(|| missing("--to-destination"))?),
            "CT" if t.notrack => Action::Notrack { legacy: false },
            "CT" => return Err(missing("--notrack")),
            "NOTRACK" => Action::Notrack { legacy: true },
            "MARK" => Action::Mark(t.mark.ok_or_else(|| missing("--set-xmark"))?),
            "TEE" => Action::Tee(t.gateway.ok_or_else(|| missing("--gateway"))?),
            "REJECT" => Action::Reject(t.reject_with),
            "LOG" => Action::Log(t.log_prefix),
            chain => Action::Jump(chain.to_string()),
        })
    }
}

/// Options that accept a `!` before them.
fn negatable(w: &str) -> bool {
    matches!(
        w,
        "-s" | "--source"
            | "-d"
            | "--destination"
            | "-p"
            | "--protocol"
            | "-i"
            | "--in-interface"
            | "-o"
            | "--out-interface"
            | "--sport"
            | "--source-port"
            | "--dport"
            | "--destination-port"
            | "--sports"
            | "--source-ports"
            | "--dports"
            | "--destination-ports"
            | "--ports"
            | "--mark"
            | "--ctstate"
            | "--state"
    )
}

/// Reads a 32-bit number, decimal or `0x` hexadecimal.
pub(crate) fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("`{s}` is not a 32-bit number"))
}

/// Reads `V` or `V/M` (mask all ones when not written).
fn parse_mark(s: &str) -> Result<(u32, u32), String> {
    match s.split_once('/') {
        Some((v, m)) => Ok((parse_u32(v)?, parse_u32(m)?)),
        None => Ok((parse_u32(s)?, u32::MAX)),
    }
}
