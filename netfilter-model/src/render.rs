//! Display of commands in iptables syntax (`-t nat -A POSTROUTING -o eth1 -j MASQUERADE`).

use crate::packet::CtState;
use crate::rule::{Action, Command, MarkOp, Match, Op, PortDir, Rule, TableId};
use crate::words::quote;
use std::fmt;

/// iptables syntax for a command on an iptables table, which [`crate::iptables::parse`]
/// reads back to the same [`Op`]; a command read from an nft ruleset shows its text as
/// written.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (table, rest) = match &self.op {
            Op::Append { table, chain, rule } => (table, format!("-A {chain}{}", show_rule(rule))),
            Op::Insert {
                table,
                chain,
                position,
                rule,
            } => (table, format!("-I {chain} {position}{}", show_rule(rule))),
            Op::NewChain { table, chain } => (table, format!("-N {chain}")),
            Op::Policy {
                table,
                chain,
                policy,
            } => (table, format!("-P {chain} {policy}")),
            Op::BaseChain { .. } => return f.write_str(&self.text),
        };
        match table {
            TableId::Ip(t) => write!(f, "-t {t} {rest}"),
            TableId::Nft { .. } => f.write_str(&self.text),
        }
    }
}

fn bang(negate: bool) -> &'static str {
    if negate { "! " } else { "" }
}

/// ` MATCHES -j TARGET` (with a leading blank when not empty).
pub(crate) fn show_rule(rule: &Rule) -> String {
    let mut s = String::new();
    for m in &rule.matches {
        s.push(' ');
        s.push_str(&show_match(m));
    }
    for a in &rule.actions {
        s.push(' ');
        s.push_str(&show_action(a));
    }
    s
}

fn show_match(m: &Match) -> String {
    match m {
        Match::Src { net, negate } => format!("{}-s {net}", bang(*negate)),
        Match::Dst { net, negate } => format!("{}-d {net}", bang(*negate)),
        Match::Proto { proto, negate } => format!("{}-p {proto}", bang(*negate)),
        Match::Ports {
            dir,
            ranges,
            negate,
            multiport,
        } => {
            let list: Vec<String> = ranges.iter().map(|r| r.show(':')).collect();
            match (multiport, dir) {
                (false, PortDir::Src) => format!("{}--sport {}", bang(*negate), list.join(",")),
                (false, _) => format!("{}--dport {}", bang(*negate), list.join(",")),
                (true, d) => {
                    let opt = match d {
                        PortDir::Src => "--sports",
                        PortDir::Dst => "--dports",
                        PortDir::Either => "--ports",
                    };
                    format!("-m multiport {}{opt} {}", bang(*negate), list.join(","))
                }
            }
        }
        Match::InIface { iface, negate } => format!(
            "{}-i {}{}",
            bang(*negate),
            iface.name,
            if iface.wildcard { "+" } else { "" }
        ),
        Match::OutIface { iface, negate } => format!(
            "{}-o {}{}",
            bang(*negate),
            iface.name,
            if iface.wildcard { "+" } else { "" }
        ),
        Match::Comment(c) => format!("-m comment --comment {}", quote(c)),
        Match::Mark {
            value,
            mask,
            negate,
        } => format!("-m mark {}--mark {value:#x}/{mask:#x}", bang(*negate)),
        Match::CtState {
            states,
            negate,
            state_module,
        } => {
            let list: Vec<String> = states.iter().map(CtState::to_string).collect();
            match state_module {
                true => format!("-m state {}--state {}", bang(*negate), list.join(",")),
                false => format!("-m conntrack {}--ctstate {}", bang(*negate), list.join(",")),
            }
        }
    }
}

fn show_action(a: &Action) -> String {
    match a {
        Action::Accept => "-j ACCEPT".into(),
        Action::Drop => "-j DROP".into(),
        Action::Return => "-j RETURN".into(),
        Action::Jump(c) => format!("-j {c}"),
        Action::Goto(c) => format!("-g {c}"),
        Action::Queue(q) => {
            let mut s = match q.balance {
                true => format!(
                    "-j NFQUEUE --queue-balance {}:{}",
                    q.first,
                    q.first.saturating_add(q.count.saturating_sub(1))
                ),
                false => format!("-j NFQUEUE --queue-num {}", q.first),
            };
            if q.bypass {
                s.push_str(" --queue-bypass");
            }
            s
        }
        Action::Reject(None) => "-j REJECT".into(),
        Action::Reject(Some(w)) => format!("-j REJECT --reject-with {}", quote(w)),
        Action::Masquerade(None) => "-j MASQUERADE".into(),
        Action::Masquerade(Some(p)) => format!("-j MASQUERADE --to-ports {}", p.show('-')),
        Action::Snat(to) => format!("-j SNAT --to-source {to}"),
        Action::Dnat(to) => format!("-j DNAT --to-destination {to}"),
        Action::DnatNumgen { .. } => "-j DNAT (nft numgen: no iptables form)".into(),
        Action::Notrack { legacy: true } => "-j NOTRACK".into(),
        Action::Notrack { legacy: false } => "-j CT --notrack".into(),
        Action::Mark(op) => match *op {
            MarkOp::SetXmark { value, mask } => format!("-j MARK --set-xmark {value:#x}/{mask:#x}"),
            MarkOp::SetMark { value, mask } => format!("-j MARK --set-mark {value:#x}/{mask:#x}"),
            MarkOp::And(v) => format!("-j MARK --and-mark {v:#x}"),
            MarkOp::Or(v) => format!("-j MARK --or-mark {v:#x}"),
            MarkOp::Xor(v) => format!("-j MARK --xor-mark {v:#x}"),
        },
        Action::Tee(g) => format!("-j TEE --gateway {g}"),
        Action::Log(None) => "-j LOG".into(),
        Action::Log(Some(p)) => format!("-j LOG --log-prefix {}", quote(p)),
        Action::Counter => String::new(),
    }
}
