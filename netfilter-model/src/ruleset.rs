//! A host's [`Ruleset`]: every table and chain, built by applying [`Command`]s in order.

use crate::error::RuleError;
use crate::hook::{Hook, Table, priority};
use crate::rule::{Action, ChainType, Command, Op, Policy, Rule, TableId};

/// A base chain's attachment: where and when it runs, and its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    /// The chain type (NAT chains see a connection's first packet only).
    pub kind: ChainType,
    /// The hook.
    pub hook: Hook,
    /// The priority (lower runs first).
    pub priority: i32,
    /// What happens at the end of the chain.
    pub policy: Policy,
}

/// A rule as stored: the rule, its text, and the state of its `numgen inc` counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    /// The rule.
    pub rule: Rule,
    /// The rule as written.
    pub text: String,
    /// The last value `numgen inc` gave (the kernel starts at `modulus - 1`, so the first
    /// packet gets 0); unused by rules without numgen.
    pub(crate) numgen: u32,
}

/// A chain: built-in/base (with a [`Base`]) or user-defined (reached by jumps only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The name.
    pub name: String,
    /// Where it is attached, for a base chain.
    pub base: Option<Base>,
    /// The rules, in order.
    pub rules: Vec<StoredRule>,
}

/// The chains of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableState {
    /// Which table.
    pub id: TableId,
    /// Its chains, in creation order.
    pub chains: Vec<Chain>,
}

/// All the tables of one host. Built by [`Ruleset::apply`]; evaluated by
/// [`Ruleset::traverse`] and friends. An iptables table appears with all its built-in chains
/// (policy ACCEPT) the first time a command names it, as with iptables-nft; nft tables and
/// chains appear as the ruleset declares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub(crate) tables: Vec<TableState>,
}

impl Ruleset {
    /// An empty ruleset (every hook accepts).
    pub fn new() -> Ruleset {
        Ruleset::default()
    }

    /// The ruleset of a host whose topology entry has `iptables` lines (each as
    /// [`crate::iptables::parse`] reads it, loaded in order) and an optional `nft` ruleset
    /// (loaded after them, as the lab does).
    pub fn load<'a>(
        iptables: impl IntoIterator<Item = &'a str>,
        nft: Option<&str>,
    ) -> Result<Ruleset, RuleError> {
        let mut r = Ruleset::new();
        for line in iptables {
            r.apply(&crate::iptables::parse(line)?)?;
        }
        if let Some(text) = nft {
            for cmd in crate::nft::parse(text)? {
                r.apply(&cmd)?;
            }
        }
        Ok(r)
    }

    /// The tables, in creation order.
    pub fn tables(&self) -> &[TableState] {
        &self.tables
    }

    /// Applies one command, as iptables (or `nft -f`) would, refusing what the kernel would
    /// refuse: a rule for a chain that does not exist, a jump to a missing or built-in chain
    /// or one that makes a loop, an insert position past the end, a policy on a user chain,
    /// a NAT target outside a NAT chain or at the wrong hook, NOTRACK after conntrack,
    /// REJECT outside INPUT/FORWARD/OUTPUT.
    pub fn apply(&mut self, cmd: &Command) -> Result<(), RuleError> {
        let err = |why: String| RuleError::Malformed {
            why,
            rule: cmd.text.clone(),
        };
        match &cmd.op {
            Op::Append { table, chain, rule }
            | Op::Insert {
                table, chain, rule, ..
            } => {
                let t = self.table_mut(table);
                let ci = chain_index(t, chain)
                    .ok_or_else(|| err(format!("no chain `{chain}` in table {table}")))?;
                check_actions(t, ci, rule).map_err(err)?;
                let pos = match &cmd.op {
                    Op::Insert { position, .. } => {
                        let len = t.chains[ci].rules.len();
                        if *position > len + 1 {
                            return Err(err(format!(
                                "insert position {position} is past the end of `{chain}` ({len} rules)"
                            )));
                        }
                        position.saturating_sub(1)
                    }
                    _ => t.chains[ci].rules.len(),
                };
                let numgen = rule
                    .actions
                    .iter()
                    .find_map(|a| match a {
                        Action::DnatNumgen { modulus, .. } => Some(modulus.saturating_sub(1)),
                        _ => None,
                    })
                    .unwrap_or(0);
                t.chains[ci].rules.insert(
                    pos,
                    StoredRule {
                        rule: rule.clone(),
                        text: cmd.text.clone(),
                        numgen,
                    },
                );
            }
            Op::NewChain { table, chain } => {
                let t = self.table_mut(table);
                match chain_index(t, chain) {
                    Some(i)
                        if matches!(table, TableId::Nft { .. }) && t.chains[i].base.is_none() => {}
                    Some(_) => {
                        return Err(err(format!(
                            "chain `{chain}` already exists in table {table}"
                        )));
                    }
                    None if Hook::from_chain_name(chain).is_some()
                        && matches!(table, TableId::Ip(_)) =>
                    {
                        return Err(err(format!("`{chain}` is a built-in chain name")));
                    }
                    None => t.chains.push(Chain {
                        name: chain.clone(),
                        base: None,
                        rules: Vec::new(),
                    }),
                }
            }
            Op::Policy {
                table,
                chain,
                policy,
            } => {
                let t = self.table_mut(table);
                let base = chain_index(t, chain)
                    .and_then(|i| t.chains[i].base.as_mut())
                    .ok_or_else(|| err(format!("no built-in chain `{chain}` in table {table}")))?;
                base.policy = *policy;
            }
            Op::BaseChain {
                table,
                chain,
                kind,
                hook,
                priority,
                policy,
            } => {
                let want = Base {
                    kind: *kind,
                    hook: *hook,
                    priority: *priority,
                    policy: *policy,
                };
                let t = self.table_mut(table);
                match chain_index(t, chain) {
                    Some(i) if t.chains[i].base == Some(want) => {}
                    Some(_) => {
                        return Err(err(format!(
                            "chain `{chain}` already exists in table {table} with another definition"
                        )));
                    }
                    None => t.chains.push(Chain {
                        name: chain.clone(),
                        base: Some(want),
                        rules: Vec::new(),
                    }),
                }
            }
        }
        Ok(())
    }

    /// `iptables -t TABLE -S [CHAIN]`: each chain's `-P` (built-in) or `-N` (user) line, then
    /// its rules as `-A CHAIN …`, in order; `None` if the table is not an iptables table or has
    /// no chain `chain`. A table no command named lists its built-in chains, empty.
    pub fn list_rules(&self, table: Table, chain: Option<&str>) -> Option<Vec<String>> {
        let id = TableId::Ip(table);
        let fresh;
        let t = match self.tables.iter().find(|t| t.id == id) {
            Some(t) => t,
            None => {
                let mut r = Ruleset::new();
                r.table_mut(&id);
                fresh = r;
                &fresh.tables[0]
            }
        };
        let chains: Vec<&Chain> = match chain {
            Some(name) => vec![t.chains.iter().find(|c| c.name == name)?],
            None => t.chains.iter().collect(),
        };
        let mut lines: Vec<String> = chains
            .iter()
            .map(|c| match c.base {
                Some(b) => format!("-P {} {}", c.name, b.policy),
                None => format!("-N {}", c.name),
            })
            .collect();
        for c in chains {
            for r in &c.rules {
                lines.push(format!(
                    "-A {}{}",
                    c.name,
                    crate::render::show_rule(&r.rule)
                ));
            }
        }
        Some(lines)
    }

    /// Removes every rule, in any iptables table, that carries `-m comment --comment TAG`
    /// (how a program finds its own rules again); how many were removed.
    pub fn remove_tagged(&mut self, tag: &str) -> usize {
        let mut removed = 0;
        for t in self
            .tables
            .iter_mut()
            .filter(|t| matches!(t.id, TableId::Ip(_)))
        {
            for c in &mut t.chains {
                let before = c.rules.len();
                c.rules.retain(|r| {
                    !r.rule
                        .matches
                        .iter()
                        .any(|m| matches!(m, crate::rule::Match::Comment(c) if c == tag))
                });
                removed += before - c.rules.len();
            }
        }
        removed
    }

    /// The table, created (with its built-in chains, for an iptables table) if new.
    fn table_mut(&mut self, id: &TableId) -> &mut TableState {
        let i = match self.tables.iter().position(|t| &t.id == id) {
            Some(i) => i,
            None => {
                let chains = match id {
                    TableId::Ip(t) => t
                        .hooks()
                        .iter()
                        .map(|&hook| Chain {
                            name: hook.chain_name().to_string(),
                            base: Some(Base {
                                kind: match (t, hook) {
                                    (Table::Nat, _) => ChainType::Nat,
                                    (Table::Mangle, Hook::Output) => ChainType::Route,
                                    _ => ChainType::Filter,
                                },
                                hook,
                                priority: t.priority(hook),
                                policy: Policy::Accept,
                            }),
                            rules: Vec::new(),
                        })
                        .collect(),
                    TableId::Nft { .. } => Vec::new(),
                };
                self.tables.push(TableState {
                    id: id.clone(),
                    chains,
                });
                self.tables.len() - 1
            }
        };
        &mut self.tables[i]
    }
}

/// The index of chain `name` in `t`.
pub(crate) fn chain_index(t: &TableState, name: &str) -> Option<usize> {
    t.chains.iter().position(|c| c.name == name)
}

/// Checks a rule's actions against the chain it goes into (see [`Ruleset::apply`]).
fn check_actions(t: &TableState, ci: usize, rule: &Rule) -> Result<(), String> {
    let chain = &t.chains[ci];
    let iptables_table = match &t.id {
        TableId::Ip(table) => Some(*table),
        TableId::Nft { .. } => None,
    };
    let is_nat = match (iptables_table, chain.base) {
        (Some(table), _) => table == Table::Nat,
        (None, Some(b)) => b.kind == ChainType::Nat,
        (None, None) => true, // a user chain: whatever jumps to it decides
    };
    let hook = chain.base.map(|b| b.hook);
    for a in &rule.actions {
        match a {
            Action::Masquerade(_)
            | Action::Snat(_)
            | Action::Dnat(_)
            | Action::DnatNumgen { .. } => {
                if !is_nat {
                    return Err(
                        "a NAT statement outside a NAT chain (`-t nat`, or nft `type nat`)".into(),
                    );
                }
                let src = matches!(a, Action::Masquerade(_) | Action::Snat(_));
                match (src, hook) {
                    (true, Some(Hook::Prerouting | Hook::Output | Hook::Forward)) => {
                        return Err("source NAT outside POSTROUTING/INPUT".into());
                    }
                    (false, Some(Hook::Postrouting | Hook::Input | Hook::Forward)) => {
                        return Err("destination NAT outside PREROUTING/OUTPUT".into());
                    }
                    _ => {}
                }
            }
            Action::Notrack { .. } => match (iptables_table, chain.base) {
                (Some(Table::Raw), _) => {}
                (Some(table), _) => {
                    return Err(format!(
                        "NOTRACK in table {table}: only the raw table runs before conntrack"
                    ));
                }
                (None, Some(b)) if b.priority >= priority::CONNTRACK => {
                    return Err(format!(
                        "notrack in a chain of priority {}, not before conntrack ({}): it would have no effect",
                        b.priority,
                        priority::CONNTRACK
                    ));
                }
                _ => {}
            },
            Action::Reject(_) => {
                if let Some(h @ (Hook::Prerouting | Hook::Postrouting)) = hook {
                    return Err(format!("REJECT in {h}: only INPUT, FORWARD and OUTPUT"));
                }
            }
            Action::Jump(target) | Action::Goto(target) => {
                let ti = chain_index(t, target).ok_or_else(|| {
                    format!(
                        "a jump to chain `{target}`, which does not exist in table {}",
                        t.id
                    )
                })?;
                if t.chains[ti].base.is_some() {
                    return Err(format!("a jump to the base chain `{target}`"));
                }
                if ti == ci || reaches(t, ti, ci) {
                    return Err(format!("a jump to `{target}` makes a loop"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether chain `from` reaches chain `to` through jumps and gotos.
fn reaches(t: &TableState, from: usize, to: usize) -> bool {
    let mut seen = vec![false; t.chains.len()];
    let mut todo = vec![from];
    while let Some(c) = todo.pop() {
        if c == to {
            return true;
        }
        if std::mem::replace(&mut seen[c], true) {
            continue;
        }
        for r in &t.chains[c].rules {
            for a in &r.rule.actions {
                if let Action::Jump(n) | Action::Goto(n) = a {
                    todo.extend(chain_index(t, n));
                }
            }
        }
    }
    false
}
