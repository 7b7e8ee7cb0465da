//! The nft ruleset parser: `table FAMILY NAME { chain … { type …; policy …; RULES } }` to [`Command`]s.

use crate::error::{Reading, RuleError};
use crate::hook::{Hook, priority};
use crate::iptables::parse_u32;
use crate::nft_lex::{Kind, Tok, lex, line_of};
use crate::packet::{CtState, Proto};
use crate::rule::{
    Action, ChainType, Command, IfaceName, MarkOp, Match, NatTo, Net, NftFamily, Op, Policy,
    PortDir, PortRange, QueueSpec, Rule, TableId,
};
use std::net::Ipv4Addr;

/// Parses an nft ruleset as `nft -f` reads it, for the syntax the lab uses: `table ip|inet
/// NAME { … }` blocks holding `chain NAME { … }` blocks; a chain's `type filter|nat|route
/// hook H priority P;` (P a number or `raw`, `mangle`, `dstnat`, `filter`, `security`,
/// `srcnat`, `± N`) and `policy accept|drop;`; rules made of the statements listed in the
/// crate documentation. Within a table every chain is created before any rule, so a `jump`
/// may name a chain defined further down. Anything else is an error naming it.
pub fn parse(ruleset: &str) -> Result<Vec<Command>, RuleError> {
    let toks = lex(ruleset)?;
    let mut p = P {
        src: ruleset,
        toks,
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_separators();
        let Some(t) = p.toks.get(p.i).cloned() else {
            break;
        };
        match t.word() {
            Some("table") => {
                p.i += 1;
                p.table(&t, &mut out)?;
            }
            _ => {
                return Err(RuleError::Unsupported {
                    what: "nft statement",
                    word: p.text_of(&t).to_string(),
                    rule: line_of(ruleset, t.start).to_string(),
                });
            }
        }
    }
    Ok(out)
}

struct P<'a> {
    src: &'a str,
    toks: Vec<Tok>,
    i: usize,
}

impl P<'_> {
    fn text_of(&self, t: &Tok) -> &str {
        &self.src[t.start..t.end]
    }

    fn skip_separators(&mut self) {
        while self
            .toks
            .get(self.i)
            .is_some_and(|t| t.kind == Kind::Newline || t.is(';'))
        {
            self.i += 1;
        }
    }

    fn err_at(&self, at: &Tok, why: impl Into<String>) -> RuleError {
        RuleError::Malformed {
            why: why.into(),
            rule: line_of(self.src, at.start).to_string(),
        }
    }

    fn next_word(&mut self, at: &Tok, what: &str) -> Result<String, RuleError> {
        match self.toks.get(self.i) {
            Some(Tok {
                kind: Kind::Word(w),
                ..
            }) => {
                self.i += 1;
                Ok(w.clone())
            }
            _ => Err(self.err_at(at, format!("expected {what}"))),
        }
    }

    fn expect(&mut self, at: &Tok, c: char) -> Result<(), RuleError> {
        match self.toks.get(self.i) {
            Some(t) if t.is(c) => {
                self.i += 1;
                Ok(())
            }
            _ => Err(self.err_at(at, format!("expected `{c}`"))),
        }
    }

    fn table(&mut self, at: &Tok, out: &mut Vec<Command>) -> Result<(), RuleError> {
        let mut first = self.next_word(at, "a table family or name")?;
        let family = match first.as_str() {
            "ip" | "inet" => {
                let f = if first == "ip" {
                    NftFamily::Ip
                } else {
                    NftFamily::Inet
                };
                first = self.next_word(at, "a table name")?;
                f
            }
            "ip6" | "arp" | "bridge" | "netdev" => {
                return Err(RuleError::Unsupported {
                    what: "nft table family",
                    word: first,
                    rule: line_of(self.src, at.start).to_string(),
                });
            }
            _ => NftFamily::Ip,
        };
        let table = TableId::Nft {
            family,
            name: first,
        };
        self.expect(at, '{')?;
        let mut chains = Vec::new();
        let mut rules = Vec::new();
        loop {
            self.skip_separators();
            let Some(t) = self.toks.get(self.i).cloned() else {
                return Err(self.err_at(at, "a table block without its `}`"));
            };
            self.i += 1;
            if t.is('}') {
                break;
            }
            match t.word() {
                Some("chain") => self.chain(&t, &table, &mut chains, &mut rules)?,
                _ => {
                    return Err(RuleError::Unsupported {
                        what: "nft statement",
                        word: self.text_of(&t).to_string(),
                        rule: line_of(self.src, t.start).to_string(),
                    });
                }
            }
        }
        out.extend(chains);
        out.extend(rules);
        Ok(())
    }

    fn chain(
        &mut self,
        at: &Tok,
        table: &TableId,
        chains: &mut Vec<Command>,
        rules: &mut Vec<Command>,
    ) -> Result<(), RuleError> {
        let name = self.next_word(at, "a chain name")?;
        self.expect(at, '{')?;
        let mut base: Option<(ChainType, Hook, i32, Tok)> = None;
        let mut policy = None;
        loop {
            self.skip_separators();
            let Some(first) = self.toks.get(self.i).cloned() else {
                return Err(self.err_at(at, "a chain block without its `}`"));
            };
            if first.is('}') {
                self.i += 1;
                break;
            }
            // One statement: up to a newline or `;` outside braces, or the chain's `}`.
            let start = self.i;
            let mut depth = 0usize;
            while let Some(t) = self.toks.get(self.i) {
                match &t.kind {
                    Kind::Punct('{') => depth += 1,
                    Kind::Punct('}') if depth == 0 => break,
                    Kind::Punct('}') => depth -= 1,
                    Kind::Newline | Kind::Punct(';') if depth == 0 => break,
                    _ => {}
                }
                self.i += 1;
            }
            let stmt: Vec<Tok> = self.toks[start..self.i]
                .iter()
                .filter(|t| t.kind != Kind::Newline)
                .cloned()
                .collect();
            let last = stmt.last().cloned().unwrap_or_else(|| first.clone());
            let text = self.src[first.start..last.end].to_string();
            match first.word() {
                Some("type") => base = Some(self.base_chain(&stmt, &text)?),
                Some("policy") => {
                    policy = Some(match stmt.get(1).and_then(Tok::word) {
                        Some("accept") if stmt.len() == 2 => Policy::Accept,
                        Some("drop") if stmt.len() == 2 => Policy::Drop,
                        _ => {
                            return Err(RuleError::Malformed {
                                why: "a policy is accept or drop".into(),
                                rule: text,
                            });
                        }
                    })
                }
                _ => {
                    let rule = RuleReader {
                        src: self.src,
                        toks: &stmt,
                        i: 0,
                        text: &text,
                    }
                    .rule()?;
                    rules.push(Command {
                        op: Op::Append {
                            table: table.clone(),
                            chain: name.clone(),
                            rule,
                        },
                        text,
                    });
                }
            }
        }
        let header = format!("chain {name}");
        let op = match base {
            Some((kind, hook, priority, _)) => Op::BaseChain {
                table: table.clone(),
                chain: name,
                kind,
                hook,
                priority,
                policy: policy.unwrap_or(Policy::Accept),
            },
            None if policy.is_some() => {
                return Err(RuleError::Malformed {
                    why: "a policy in a chain without a hook".into(),
                    rule: header,
                });
            }
            None => Op::NewChain {
                table: table.clone(),
                chain: name,
            },
        };
        chains.push(Command { op, text: header });
        Ok(())
    }

    /// `type T hook H priority P`.
    fn base_chain(
        &self,
        stmt: &[Tok],
        text: &str,
    ) -> Result<(ChainType, Hook, i32, Tok), RuleError> {
        let words: Vec<String> = stmt.iter().map(|t| self.text_of(t).to_string()).collect();
        let bad = |why: &str| RuleError::Malformed {
            why: why.to_string(),
            rule: text.to_string(),
        };
        if words.len() < 6 || words[2] != "hook" || words[4] != "priority" {
            return Err(bad("a base chain is `type T hook H priority P`"));
        }
        let kind = match words[1].as_str() {
            "filter" => ChainType::Filter,
            "nat" => ChainType::Nat,
            "route" => ChainType::Route,
            w => {
                return Err(RuleError::Unsupported {
                    what: "chain type",
                    word: w.into(),
                    rule: text.into(),
                });
            }
        };
        let hook = Hook::from_nft_name(&words[3]).ok_or_else(|| RuleError::Unsupported {
            what: "hook",
            word: words[3].clone(),
            rule: text.into(),
        })?;
        let num = |w: &str| -> Result<i32, RuleError> {
            priority::named(w)
                .or_else(|| w.parse().ok())
                .ok_or_else(|| RuleError::Invalid {
                    what: "priority",
                    word: w.into(),
                    why: "not a number or a priority name".into(),
                    rule: text.into(),
                })
        };
        let mut prio = num(&words[5])?;
        match &words[6..] {
            [] => {}
            [op, n] if op == "+" || op == "-" => {
                let n: i32 = n
                    .parse()
                    .map_err(|_| bad("a priority offset is a number"))?;
                prio = if op == "+" {
                    prio.saturating_add(n)
                } else {
                    prio.saturating_sub(n)
                };
            }
            _ => return Err(bad("a priority is P, P + N or P - N")),
        }
        Ok((kind, hook, prio, stmt[0].clone()))
    }
}

/// Reads one nft rule's statements.
struct RuleReader<'a> {
    src: &'a str,
    toks: &'a [Tok],
    i: usize,
    text: &'a str,
}

impl RuleReader<'_> {
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

    fn peek(&self) -> Option<&str> {
        self.toks.get(self.i).map(|t| &self.src[t.start..t.end])
    }

    /// The next token's text (a string without its quotes).
    fn next(&mut self, what: &str) -> Result<String, RuleError> {
        let t = self
            .toks
            .get(self.i)
            .ok_or_else(|| self.malformed(format!("expected {what} at the end")))?;
        self.i += 1;
        Ok(match &t.kind {
            Kind::Str(s) => s.clone(),
            _ => self.src[t.start..t.end].to_string(),
        })
    }

    /// An optional `==` / `!=`: whether the match is negated.
    fn relation(&mut self) -> bool {
        match self.peek() {
            Some("!=") => {
                self.i += 1;
                true
            }
            Some("==") => {
                self.i += 1;
                false
            }
            _ => false,
        }
    }

    /// A value or an anonymous set `{ a, b }`: the list of element texts.
    fn values(&mut self, what: &str) -> Result<Vec<String>, RuleError> {
        if self.peek() != Some("{") {
            let mut v = vec![self.next(what)?];
            // `established,related` without braces.
            while self.peek() == Some(",") {
                self.i += 1;
                v.push(self.next(what)?);
            }
            return Ok(v);
        }
        self.i += 1;
        let mut v = Vec::new();
        loop {
            let w = self.next(what)?;
            match w.as_str() {
                "}" => break,
                "," => continue,
                _ => v.push(w),
            }
        }
        Ok(v)
    }

    fn rule(mut self) -> Result<Rule, RuleError> {
        let mut rule = Rule::default();
        while let Some(w) = self.peek().map(str::to_string) {
            self.i += 1;
            match w.as_str() {
                "ip" => {
                    let field = self.next("saddr, daddr or protocol")?;
                    let negate = self.relation();
                    match field.as_str() {
                        "saddr" | "daddr" => {
                            let v = self.values("an address")?;
                            let [a] = v.as_slice() else {
                                return Err(self.unsupported("address set", v.join(", ")));
                            };
                            let net =
                                Net::parse(a).map_err(|why| self.invalid("address", a, why))?;
                            rule.matches.push(match field.as_str() {
                                "saddr" => Match::Src { net, negate },
                                _ => Match::Dst { net, negate },
                            });
                        }
                        "protocol" => {
                            let p = self.proto()?;
                            rule.matches.push(Match::Proto { proto: p, negate });
                        }
                        f => return Err(self.unsupported("expression", format!("ip {f}"))),
                    }
                }
                "meta" => {
                    let key = self.next("a meta key")?;
                    match key.as_str() {
                        "l4proto" => {
                            let negate = self.relation();
                            let p = self.proto()?;
                            rule.matches.push(Match::Proto { proto: p, negate });
                        }
                        "mark" if self.peek() == Some("set") => {
                            self.i += 1;
                            let v = self.next("a mark")?;
                            let value =
                                parse_u32(&v).map_err(|why| self.invalid("mark", &v, why))?;
                            rule.actions.push(Action::Mark(MarkOp::SetMark {
                                value,
                                mask: u32::MAX,
                            }));
                        }
                        "mark" => {
                            let negate = self.relation();
                            let v = self.next("a mark")?;
                            let value =
                                parse_u32(&v).map_err(|why| self.invalid("mark", &v, why))?;
                            rule.matches.push(Match::Mark {
                                value,
                                mask: u32::MAX,
                                negate,
                            });
                        }
                        "iifname" | "oifname" => self.iface(&key, &mut rule)?,
                        k => return Err(self.unsupported("expression", format!("meta {k}"))),
                    }
                }
                "iifname" | "oifname" => self.iface(&w, &mut rule)?,
                "tcp" | "udp" => {
                    let field = self.next("sport or dport")?;
                    let dir = match field.as_str() {
                        "sport" => PortDir::Src,
                        "dport" => PortDir::Dst,
                        f => return Err(self.unsupported("expression", format!("{w} {f}"))),
                    };
                    let proto = Proto::parse(&w).unwrap_or(Proto::Tcp);
                    // nft's dependency: `udp dport` only ever matches UDP, whatever came before.
                    let dep = Match::Proto {
                        proto,
                        negate: false,
                    };
                    if !rule.matches.contains(&dep) {
                        rule.matches.push(dep);
                    }
                    let negate = self.relation();
                    let mut ranges = Vec::new();
                    for v in self.values("a port")? {
                        ranges.push(
                            PortRange::parse(&v, '-')
                                .map_err(|why| self.invalid("port", &v, why))?,
                        );
                    }
                    rule.matches.push(Match::Ports {
                        dir,
                        ranges,
                        negate,
                        multiport: false,
                    });
                }
                "ct" => {
                    let key = self.next("a ct key")?;
                    if key != "state" {
                        return Err(self.unsupported("expression", format!("ct {key}")));
                    }
                    let negate = self.relation();
                    let mut states = Vec::new();
                    for v in self.values("a state")? {
                        states.push(CtState::parse(&v).ok_or_else(|| {
                            self.invalid(
                                "state",
                                &v,
                                "not new, established, related, invalid or untracked",
                            )
                        })?);
                    }
                    rule.matches.push(Match::CtState {
                        states,
                        negate,
                        state_module: false,
                    });
                }
                "comment" => {
                    let c = self.next("a comment")?;
                    rule.matches.push(Match::Comment(c));
                }
                "counter" => {
                    // `counter packets N bytes M`, as `nft list` prints it.
                    while matches!(self.peek(), Some("packets" | "bytes")) {
                        self.i += 1;
                        self.next("a number")?;
                    }
                    rule.actions.push(Action::Counter);
                }
                "accept" => rule.actions.push(Action::Accept),
                "drop" => rule.actions.push(Action::Drop),
                "return" => rule.actions.push(Action::Return),
                "jump" => rule.actions.push(Action::Jump(self.next("a chain")?)),
                "goto" => rule.actions.push(Action::Goto(self.next("a chain")?)),
                "notrack" => rule.actions.push(Action::Notrack { legacy: false }),
                "queue" => rule.actions.push(self.queue()?),
                "masquerade" => {
                    let mut ports = None;
                    if self.peek() == Some("to") {
                        self.i += 1;
                        let v = self.next("`:PORT`")?;
                        let p = v.strip_prefix(':').ok_or_else(|| {
                            self.invalid("port", &v, "masquerade takes `to :PORT`")
                        })?;
                        ports = Some(
                            PortRange::parse(p, '-').map_err(|why| self.invalid("port", p, why))?,
                        );
                    }
                    rule.actions.push(Action::Masquerade(ports));
                }
                "snat" | "dnat" => rule.actions.push(self.nat(&w)?),
                "log" => {
                    let mut prefix = None;
                    while let Some(k) = self.peek().map(str::to_string) {
                        match k.as_str() {
                            "prefix" => {
                                self.i += 1;
                                prefix = Some(self.next("a prefix")?);
                            }
                            "level" => {
                                self.i += 1;
                                self.next("a level")?;
                            }
                            _ => break,
                        }
                    }
                    rule.actions.push(Action::Log(prefix));
                }
                "reject" => {
                    let mut with = None;
                    if self.peek() == Some("with") {
                        self.i += 1;
                        let a = self.next("a reject type")?;
                        let b = self.next("a reject type")?;
                        with = Some(format!("{a} {b}"));
                    }
                    rule.actions.push(Action::Reject(with));
                }
                _ => return Err(self.unsupported("statement", w)),
            }
        }
        if let Some(pos) = rule.actions.iter().position(Action::is_terminal) {
            if pos + 1 < rule.actions.len() {
                return Err(self.malformed("a statement after the verdict"));
            }
        }
        Ok(rule)
    }

    fn proto(&mut self) -> Result<Proto, RuleError> {
        let p = self.next("a protocol")?;
        Proto::parse(&p)
            .ok_or_else(|| self.invalid("protocol", &p, "not tcp, udp, icmp or a number"))
    }

    fn iface(&mut self, key: &str, rule: &mut Rule) -> Result<(), RuleError> {
        let negate = self.relation();
        let v = self.values("an interface name")?;
        let [name] = v.as_slice() else {
            return Err(self.unsupported("interface set", v.join(", ")));
        };
        let iface = IfaceName::parse(name, '*');
        rule.matches.push(match key {
            "iifname" => Match::InIface { iface, negate },
            _ => Match::OutIface { iface, negate },
        });
        Ok(())
    }

    /// `queue [flags bypass] [num|to] N[-M] [bypass]`.
    fn queue(&mut self) -> Result<Action, RuleError> {
        let mut spec = QueueSpec {
            first: 0,
            count: 1,
            bypass: false,
            balance: false,
        };
        while let Some(k) = self.peek().map(str::to_string) {
            match k.as_str() {
                "num" | "to" => {
                    self.i += 1;
                    let v = self.next("a queue number")?;
                    let r = PortRange::parse(&v, '-')
                        .map_err(|_| self.invalid("queue", &v, "not N or N-M"))?;
                    spec.first = r.lo;
                    spec.count = (r.hi - r.lo)
                        .checked_add(1)
                        .ok_or_else(|| self.invalid("queue", &v, "at most 65535 queues"))?;
                    spec.balance = r.hi != r.lo;
                }
                "bypass" => {
                    self.i += 1;
                    spec.bypass = true;
                }
                "flags" => {
                    self.i += 1;
                    for f in self.values("a queue flag")? {
                        match f.as_str() {
                            "bypass" => spec.bypass = true,
                            f => return Err(self.unsupported("queue flag", f)),
                        }
                    }
                }
                "fanout" => return Err(self.unsupported("queue flag", "fanout")),
                _ => break,
            }
        }
        Ok(Action::Queue(spec))
    }

    /// `snat|dnat [ip] to ADDR[:PORT]` or `dnat [ip] to numgen inc mod N [offset O] map { … }`.
    fn nat(&mut self, kind: &str) -> Result<Action, RuleError> {
        if self.peek() == Some("ip") {
            self.i += 1;
        }
        if self.next("`to`")? != "to" {
            return Err(self.malformed(format!("`{kind}` without `to`")));
        }
        let v = self.next("a NAT address")?;
        if v != "numgen" {
            let to = NatTo::parse(&v).map_err(|why| self.invalid("NAT address", &v, why))?;
            return Ok(match kind {
                "snat" => Action::Snat(to),
                _ => Action::Dnat(to),
            });
        }
        if kind != "dnat" {
            return Err(self.unsupported("statement", "snat to numgen"));
        }
        let mode = self.next("inc or random")?;
        if mode != "inc" {
            return Err(self.unsupported("numgen mode", mode));
        }
        if self.next("`mod`")? != "mod" {
            return Err(self.malformed("numgen without `mod`"));
        }
        let m = self.next("a modulus")?;
        let modulus = parse_u32(&m)
            .ok()
            .filter(|&m| m > 0)
            .ok_or_else(|| self.invalid("modulus", &m, "not a number over 0"))?;
        let mut offset = 0;
        if self.peek() == Some("offset") {
            self.i += 1;
            let o = self.next("an offset")?;
            offset = parse_u32(&o).map_err(|why| self.invalid("offset", &o, why))?;
        }
        if self.next("`map`")? != "map" {
            return Err(self.unsupported("numgen use", "numgen without map"));
        }
        if self.next("`{`")? != "{" {
            return Err(self.malformed("a numgen map without `{`"));
        }
        let mut map: Vec<(u32, Ipv4Addr)> = Vec::new();
        loop {
            let k = self.next("a map key")?;
            match k.as_str() {
                "}" => break,
                "," => continue,
                _ => {}
            }
            let key = parse_u32(&k).map_err(|why| self.invalid("map key", &k, why))?;
            if self.next("`:`")? != ":" {
                return Err(self.malformed("a map element is `KEY : ADDRESS`"));
            }
            let a = self.next("an address")?;
            let addr = a
                .parse()
                .map_err(|_| self.invalid("address", &a, "not an IPv4 address"))?;
            if map.iter().any(|(k, _)| *k == key) {
                return Err(self.invalid("map key", &k, "given twice"));
            }
            map.push((key, addr));
        }
        let mut port = None;
        if self.peek() == Some(":") {
            self.i += 1;
            let p = self.next("a port")?;
            port = Some(
                p.parse()
                    .map_err(|_| self.invalid("port", &p, "not a port number"))?,
            );
        }
        Ok(Action::DnatNumgen {
            modulus,
            offset,
            map,
            port,
        })
    }
}
