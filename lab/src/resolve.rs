//! The resolve step: a [`Topology`] as written becomes a [`Plan`] — every name, interface,
//! ifindex, address and firewall batch decided and validated. No syscalls happen here.
//!
//! Naming follows Mininet: host interfaces are `<host>-<iface>` (`h1-eth0`), switch ports
//! `<switch>-eth<N>` numbered from 1 in link order, the bridge is named after its switch.

use crate::impair::LinkImpairment;
use crate::net::Ipv4Cidr;
use crate::topology::{Origin, TcSpec, Topology, TopologyError, TopologyErrorKind as K};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use toml::Spanned;

/// First ifindex the lab assigns in a namespace (below it: `lo` and kernel fallback devices).
pub const FIRST_IFINDEX: u32 = 10;

/// A fully resolved topology, ready to deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Human name: the topology's `name`, or where it came from.
    pub name: String,
    /// Hosts in file order.
    pub hosts: Vec<HostPlan>,
    /// Switches in file order.
    pub switches: Vec<SwitchPlan>,
    /// Links in file order.
    pub links: Vec<LinkPlan>,
    /// Names for addresses that are not host interfaces (e.g. `vip`).
    pub aliases: Vec<Alias>,
}

/// A host: one network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPlan {
    /// Node name, e.g. `h1`.
    pub name: String,
    /// Interfaces in link order.
    pub interfaces: Vec<Interface>,
    /// Extra addresses on `lo`.
    pub loopback: Vec<Ipv4Cidr>,
    /// Default gateway.
    pub default_route: Option<Ipv4Addr>,
    /// sysctls to set, in order, after the interfaces exist.
    pub sysctls: Vec<Sysctl>,
    /// iptables rules, one `iptables-restore` batch.
    pub iptables: Vec<IptablesRule>,
    /// nft ruleset text.
    pub nft: Option<String>,
    /// Keep IPv6 on.
    pub ipv6: bool,
}

/// A switch: a Linux bridge in its own namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchPlan {
    /// Node name, e.g. `s1`; the bridge has the same name.
    pub name: String,
    /// The bridge's ifindex.
    pub ifindex: u32,
    /// Ports in link order.
    pub ports: Vec<Interface>,
}

/// One network interface inside a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Full name, e.g. `h1-eth0`.
    pub name: String,
    /// ifindex assigned at creation.
    pub ifindex: u32,
    /// Addresses (hosts only).
    pub addresses: Vec<Ipv4Cidr>,
    /// MTU from the link, if set.
    pub mtu: Option<u32>,
}

/// Which kind of node an endpoint sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A host.
    Host,
    /// A switch.
    Switch,
}

/// One end of a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Node name.
    pub node: String,
    /// Host or switch.
    pub kind: NodeKind,
    /// Interface name.
    pub iface: String,
    /// Interface ifindex.
    pub ifindex: u32,
    /// MAC address chosen by the topology (hosts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// A veth pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPlan {
    /// First end (a switch end comes first when there is one: it is created from there).
    pub a: Endpoint,
    /// Second end.
    pub b: Endpoint,
    /// MTU of both ends.
    pub mtu: Option<u32>,
    /// Mininet `TCLink` parameters (the Mininet backend applies them; the native backend and
    /// the simulator take them as impairments, [`crate::impair::tclink::from_tclink`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tc: Option<TcSpec>,
    /// Impairments per direction ([`crate::impair`]); `None` when the link has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<LinkImpairment>,
}

/// A name for an address in traces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The name, e.g. `vip`.
    pub name: String,
    /// The address.
    pub addr: Ipv4Addr,
}

/// A sysctl assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctl {
    /// Dotted key, e.g. `net.ipv4.ip_forward`.
    pub key: String,
    /// Value written to /proc/sys.
    pub value: String,
}

/// One iptables rule, split for `iptables-restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IptablesRule {
    /// Table (`filter` unless `-t` said otherwise).
    pub table: String,
    /// The line as it goes into the restore batch (`-A INPUT ...` or `:CHAIN POLICY [0:0]`).
    pub line: String,
    /// The rule as the user wrote it, for error messages.
    pub written: String,
}

impl Plan {
    /// Every node name: hosts then switches.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.hosts
            .iter()
            .map(|h| h.name.as_str())
            .chain(self.switches.iter().map(|s| s.name.as_str()))
    }

    /// A host by name.
    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Address → name, for traces: host interface addresses, then aliases.
    pub fn names(&self) -> Vec<(Ipv4Addr, String)> {
        let mut v: Vec<_> = self
            .hosts
            .iter()
            .flat_map(|h| {
                h.interfaces
                    .iter()
                    .flat_map(move |i| i.addresses.iter().map(move |a| (a.addr, h.name.clone())))
            })
            .collect();
        v.extend(self.aliases.iter().map(|a| (a.addr, a.name.clone())));
        v
    }

    /// The iptables-restore input for one host, or None if it has no rules.
    pub fn iptables_batch(host: &HostPlan) -> Option<String> {
        if host.iptables.is_empty() {
            return None;
        }
        let mut tables: Vec<&str> = Vec::new();
        for r in &host.iptables {
            if !tables.contains(&r.table.as_str()) {
                tables.push(&r.table);
            }
        }
        let mut out = String::new();
        for t in tables {
            out.push_str(&format!("*{t}\n"));
            // Policies and chain declarations must precede rules within a table.
            for r in host
                .iptables
                .iter()
                .filter(|r| r.table == t && r.line.starts_with(':'))
            {
                out.push_str(&r.line);
                out.push('\n');
            }
            for r in host
                .iptables
                .iter()
                .filter(|r| r.table == t && !r.line.starts_with(':'))
            {
                out.push_str(&r.line);
                out.push('\n');
            }
            out.push_str("COMMIT\n");
        }
        Some(out)
    }
}

struct Ctx<'a> {
    origin: &'a Origin,
}

impl Ctx<'_> {
    fn err(
        &self,
        span: Option<std::ops::Range<usize>>,
        field: impl Into<String>,
        kind: K,
    ) -> TopologyError {
        TopologyError {
            origin: self.origin.describe(),
            line: span.and_then(|s| {
                if s.is_empty() && s.start == 0 {
                    None
                } else {
                    self.origin.line_of(s.start)
                }
            }),
            field: field.into(),
            kind,
        }
    }
    fn at<T>(&self, v: &Spanned<T>, field: impl Into<String>, kind: K) -> TopologyError {
        self.err(Some(v.span()), field, kind)
    }
}

fn valid_node_name(n: &str) -> bool {
    let b = n.as_bytes();
    (1..=8).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// `mac` as lower-case `aa:bb:cc:dd:ee:ff`, if it is a unicast MAC address.
fn normal_mac(mac: &str) -> Option<String> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    (bytes.len() == 6 && bytes[0] & 1 == 0).then(|| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

fn valid_iface_short(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Resolves a topology into a plan, or names the first mistake (file, line, field).
pub fn resolve(t: &Topology) -> Result<Plan, TopologyError> {
    let cx = Ctx { origin: &t.origin };
    if t.hosts.is_empty() {
        return Err(cx.err(None, "hosts", K::Empty));
    }
    let mut kinds: HashMap<&str, NodeKind> = HashMap::new();
    for (name, kind, field) in t
        .hosts
        .keys()
        .map(|n| (n, NodeKind::Host, "hosts"))
        .chain(t.switches.keys().map(|n| (n, NodeKind::Switch, "switches")))
    {
        let f = format!("{field}.{}", name.get_ref());
        if !valid_node_name(name.get_ref()) {
            return Err(cx.at(name, f, K::BadNodeName(name.get_ref().clone())));
        }
        if kinds.insert(name.get_ref(), kind).is_some() {
            return Err(cx.at(name, f, K::DuplicateNode(name.get_ref().clone())));
        }
    }
    let known = || {
        let mut v: Vec<&str> = t
            .hosts
            .keys()
            .chain(t.switches.keys())
            .map(|k| k.get_ref().as_str())
            .collect();
        v.sort();
        v.join(", ")
    };

    // Links: endpoints, interface names and ifindexes, in file order.
    let mut next_index: HashMap<&str, u32> = HashMap::new();
    let mut switch_ports: HashMap<&str, u32> = HashMap::new();
    let mut used_ifaces: HashMap<String, ()> = HashMap::new();
    let mut links = Vec::new();
    for (i, link) in t.links.iter().enumerate() {
        let field = format!("links[{i}]");
        let spec = link.get_ref();
        if spec.endpoints.len() != 2 {
            return Err(cx.at(link, field, K::EndpointCount(spec.endpoints.len())));
        }
        let mtu = match &spec.mtu {
            Some(m) if !(68..=65535).contains(m.get_ref()) => {
                return Err(cx.at(m, format!("{field}.mtu"), K::BadMtu(*m.get_ref())));
            }
            Some(m) => Some(*m.get_ref() as u32),
            None => None,
        };
        let tc = match &spec.tc {
            None => None,
            Some(tc) => {
                let v = tc.get_ref();
                let problem = match (v.bw, v.loss) {
                    (Some(bw), _) if !(bw > 0.0 && bw <= 1e6) => {
                        Some(format!("bw = {bw}: Mbit/s, above 0 and at most 1000000"))
                    }
                    (_, Some(l)) if !(0.0..=100.0).contains(&l) => {
                        Some(format!("loss = {l}: a percentage, 0 to 100"))
                    }
                    _ => None,
                };
                if let Some(p) = problem {
                    return Err(cx.at(tc, format!("{field}.tc"), K::BadTc(p)));
                }
                Some(v.clone())
            }
        };
        let written = match &spec.impair {
            None => None,
            Some(t) => Some(crate::impair::from_table(t.get_ref()).map_err(|e| {
                let f = match e.key.as_str() {
                    "" => field.clone(),
                    k => format!("{field}.{k}"),
                };
                cx.at(t, f, K::BadImpairment(e.to_string()))
            })?),
        };
        let mut ends = Vec::with_capacity(2);
        for ep in &spec.endpoints {
            let text = ep.get_ref();
            let (node, short) = match text.split_once(':') {
                Some((n, s)) => (n, Some(s)),
                None => (text.as_str(), None),
            };
            let Some((&node, &kind)) = kinds.get_key_value(node) else {
                if node.is_empty() || short == Some("") {
                    return Err(cx.at(ep, &field, K::BadEndpoint(text.clone())));
                }
                return Err(cx.at(
                    ep,
                    &field,
                    K::UnknownNode {
                        name: node.to_string(),
                        known: known(),
                    },
                ));
            };
            let iface = match (kind, short) {
                (_, Some(s)) if !valid_iface_short(s) => {
                    return Err(cx.at(ep, &field, K::BadInterfaceName(s.to_string())));
                }
                (_, Some(s)) => format!("{node}-{s}"),
                (NodeKind::Switch, None) => {
                    let p = switch_ports.entry(node).or_insert(0);
                    *p += 1;
                    format!("{node}-eth{p}")
                }
                (NodeKind::Host, None) => (0..)
                    .map(|n| format!("{node}-eth{n}"))
                    .find(|name| !used_ifaces.contains_key(name))
                    .unwrap_or_default(),
            };
            if iface.len() > 15 {
                return Err(cx.at(
                    ep,
                    &field,
                    K::InterfaceNameTooLong {
                        len: iface.len(),
                        name: iface,
                    },
                ));
            }
            if used_ifaces.insert(iface.clone(), ()).is_some() {
                return Err(cx.at(ep, &field, K::InterfaceReused(iface)));
            }
            let first = if kind == NodeKind::Switch {
                FIRST_IFINDEX + 1
            } else {
                FIRST_IFINDEX
            };
            let idx = next_index.entry(node).or_insert(first);
            let ifindex = *idx;
            *idx += 1;
            ends.push(Endpoint {
                node: node.to_string(),
                kind,
                iface,
                ifindex,
                mac: None,
            });
        }
        let (mut a, mut b) = (ends.remove(0), ends.remove(0));
        if a.node == b.node {
            return Err(cx.at(link, field, K::SelfLink(a.node)));
        }
        let swapped = b.kind == NodeKind::Switch && a.kind == NodeKind::Host;
        if swapped {
            std::mem::swap(&mut a, &mut b);
        }
        let impair = written
            .map(|(forward, reverse)| match swapped {
                false => LinkImpairment {
                    a_to_b: forward,
                    b_to_a: reverse,
                },
                true => LinkImpairment {
                    a_to_b: reverse,
                    b_to_a: forward,
                },
            })
            .filter(|i| !i.is_empty());
        links.push(LinkPlan {
            a,
            b,
            mtu,
            tc,
            impair,
        });
    }

    let mut seen_addr: HashMap<Ipv4Addr, String> = HashMap::new();
    let mut hosts = Vec::new();
    for (name, spec) in &t.hosts {
        let name_s = name.get_ref().clone();
        let hf = format!("hosts.{name_s}");
        let mut interfaces: Vec<Interface> = links
            .iter()
            .flat_map(|l| [(&l.a, l.mtu), (&l.b, l.mtu)])
            .filter(|(e, _)| e.node == name_s)
            .map(|(e, mtu)| Interface {
                name: e.iface.clone(),
                ifindex: e.ifindex,
                addresses: vec![],
                mtu,
            })
            .collect();
        for (short, addrs) in &spec.interfaces {
            let f = format!("{hf}.interfaces.{}", short.get_ref());
            let full = format!("{name_s}-{}", short.get_ref());
            let Some(iface) = interfaces.iter_mut().find(|i| i.name == full) else {
                return Err(cx.at(short, f, K::InterfaceNotLinked(full)));
            };
            for a in addrs.to_vec() {
                let cidr: Ipv4Cidr = a.parse().map_err(|e: crate::net::CidrError| {
                    cx.at(
                        short,
                        &f,
                        K::BadCidr {
                            value: a.clone(),
                            reason: e.to_string(),
                        },
                    )
                })?;
                if let Some(reason) = cidr.host_address_problem() {
                    return Err(cx.at(
                        short,
                        &f,
                        K::BadCidr {
                            value: a.clone(),
                            reason,
                        },
                    ));
                }
                if let Some(first) = seen_addr.insert(cidr.addr, full.clone()) {
                    return Err(cx.at(
                        short,
                        &f,
                        K::DuplicateAddress {
                            addr: cidr.addr.to_string(),
                            first,
                        },
                    ));
                }
                iface.addresses.push(cidr);
            }
        }
        for (short, mac) in &spec.mac {
            let f = format!("{hf}.mac.{}", short.get_ref());
            let full = format!("{name_s}-{}", short.get_ref());
            if !interfaces.iter().any(|i| i.name == full) {
                return Err(cx.at(short, f, K::InterfaceNotLinked(full)));
            }
            let Some(m) = normal_mac(mac.get_ref()) else {
                return Err(cx.at(mac, f, K::BadMac(mac.get_ref().clone())));
            };
            for e in links.iter_mut().flat_map(|l| [&mut l.a, &mut l.b]) {
                if e.node == name_s && e.iface == full {
                    e.mac = Some(m.clone());
                }
            }
        }
        let mut loopback = Vec::new();
        for (i, a) in spec.loopback.iter().enumerate() {
            let cidr: Ipv4Cidr = a.get_ref().parse().map_err(|e: crate::net::CidrError| {
                cx.at(
                    a,
                    format!("{hf}.loopback[{i}]"),
                    K::BadCidr {
                        value: a.get_ref().clone(),
                        reason: e.to_string(),
                    },
                )
            })?;
            loopback.push(cidr);
        }
        let default_route = match &spec.default_route {
            None => None,
            Some(gw) => {
                let f = format!("{hf}.default_route");
                let ip: Ipv4Addr = gw
                    .get_ref()
                    .parse()
                    .map_err(|_| cx.at(gw, &f, K::BadAddress(gw.get_ref().clone())))?;
                if !interfaces
                    .iter()
                    .flat_map(|i| &i.addresses)
                    .any(|c| c.contains(ip))
                {
                    return Err(cx.at(gw, f, K::GatewayUnreachable(ip.to_string())));
                }
                Some(ip)
            }
        };
        let mut sysctls = Vec::new();
        for (key, value) in &spec.sysctl {
            let k = key.get_ref();
            let f = format!("{hf}.sysctl.\"{k}\"");
            if !k.starts_with("net.")
                || k.contains("..")
                || k.contains('/')
                || k.split('.').any(str::is_empty)
            {
                return Err(cx.at(
                    key,
                    f,
                    K::BadSysctl(
                        k.clone(),
                        "only per-namespace `net.*` keys can be set in a host".into(),
                    ),
                ));
            }
            let v = &value.get_ref().0;
            if v.contains('\n') {
                return Err(cx.at(
                    value,
                    f,
                    K::BadSysctl(k.clone(), "value spans lines".into()),
                ));
            }
            sysctls.push(Sysctl {
                key: k.clone(),
                value: v.clone(),
            });
        }
        let mut iptables = Vec::new();
        for (i, rule) in spec.iptables.iter().enumerate() {
            let r = parse_iptables_rule(rule.get_ref()).map_err(|reason| {
                cx.at(
                    rule,
                    format!("{hf}.iptables[{i}]"),
                    K::BadRule {
                        rule: rule.get_ref().clone(),
                        reason,
                    },
                )
            })?;
            iptables.push(r);
        }
        hosts.push(HostPlan {
            name: name_s,
            interfaces,
            loopback,
            default_route,
            sysctls,
            iptables,
            nft: spec.nft.as_ref().map(|n| n.get_ref().clone()),
            ipv6: spec.ipv6,
        });
    }

    let switches = t
        .switches
        .keys()
        .map(|name| SwitchPlan {
            name: name.get_ref().clone(),
            ifindex: FIRST_IFINDEX,
            ports: links
                .iter()
                .flat_map(|l| [(&l.a, l.mtu), (&l.b, l.mtu)])
                .filter(|(e, _)| &e.node == name.get_ref())
                .map(|(e, mtu)| Interface {
                    name: e.iface.clone(),
                    ifindex: e.ifindex,
                    addresses: vec![],
                    mtu,
                })
                .collect(),
        })
        .collect();

    let mut aliases = Vec::new();
    for (name, addr) in &t.aliases {
        let f = format!("aliases.{}", name.get_ref());
        if !valid_node_name(name.get_ref())
            || kinds.contains_key(name.get_ref().as_str())
            || aliases.iter().any(|a: &Alias| &a.name == name.get_ref())
        {
            return Err(cx.at(name, f, K::BadAlias(name.get_ref().clone())));
        }
        let ip = addr
            .get_ref()
            .parse()
            .map_err(|_| cx.at(addr, &f, K::BadAddress(addr.get_ref().clone())))?;
        aliases.push(Alias {
            name: name.get_ref().clone(),
            addr: ip,
        });
    }

    let name = match &t.name {
        Some(n) => n.get_ref().clone(),
        None => match &t.origin {
            Origin::Builtin(spec) => spec.clone(),
            Origin::File { path, .. } => path.clone(),
        },
    };
    Ok(Plan {
        name,
        hosts,
        switches,
        links,
        aliases,
    })
}

/// Splits a rule as a user writes it (`iptables -t nat -A POSTROUTING -j MASQUERADE`) into its
/// table and the line `iptables-restore` expects.
fn parse_iptables_rule(written: &str) -> Result<IptablesRule, String> {
    let tokens = shell_tokens(written)?;
    let mut rest: Vec<String> = Vec::new();
    let mut table = None;
    let mut it = tokens.into_iter().peekable();
    if matches!(
        it.peek().map(String::as_str),
        Some("iptables" | "iptables-nft" | "iptables-legacy")
    ) {
        it.next();
    }
    while let Some(tok) = it.next() {
        match tok.as_str() {
            "-t" | "--table" => table = Some(it.next().ok_or("`-t` needs a table name")?),
            t if t.starts_with("--table=") => table = Some(t["--table=".len()..].to_string()),
            _ => rest.push(tok),
        }
    }
    let table = table.unwrap_or_else(|| "filter".into());
    if !matches!(
        table.as_str(),
        "filter" | "nat" | "mangle" | "raw" | "security"
    ) {
        return Err(format!("unknown table `{table}`"));
    }
    let line =
        match rest.first().map(String::as_str) {
            Some("-A" | "--append" | "-I" | "--insert") if rest.len() >= 2 => rest.join(" "),
            Some("-N" | "--new-chain") if rest.len() == 2 => format!(":{} - [0:0]", rest[1]),
            Some("-P" | "--policy") if rest.len() == 3 => format!(":{} {} [0:0]", rest[1], rest[2]),
            Some(
                cmd @ ("-A" | "-I" | "-N" | "-P" | "--append" | "--insert" | "--new-chain"
                | "--policy"),
            ) => {
                return Err(format!("`{cmd}` is missing its arguments"));
            }
            _ => return Err(
                "a rule starts with -A, -I, -N or -P (after an optional `iptables` and `-t TABLE`)"
                    .into(),
            ),
        };
    Ok(IptablesRule {
        table,
        line,
        written: written.to_string(),
    })
}

/// Splits words like a shell does for simple quoting; quoted words keep their quotes, which
/// `iptables-restore` understands.
fn shell_tokens(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push('"');
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push('"');
            }
            (_, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
