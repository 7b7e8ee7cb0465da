//! Built-in topologies with Mininet's names, links and addressing: `single,K`, `linear,K[,N]`,
//! `tree,DEPTH[,FANOUT]`, `minimal`.

use super::{
    Addresses, HostSpec, LinkSpec, Origin, SwitchSpec, Topology, TopologyError, TopologyErrorKind,
};
use toml::Spanned;

/// The address every built-in gives the `vip` alias (the seed post's VIP).
pub const SEED_VIP: &str = "10.0.0.50";

fn s<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

/// Builds a built-in topology from a Mininet `--topo` spec: `single,K`, `linear,K[,N]`,
/// `tree,DEPTH[,FANOUT]` (or `tree,depth=D,fanout=F`) or `minimal`, with Mininet's defaults
/// (`single` 2 hosts, `linear` 2 switches of 1 host, `tree` depth 1 fanout 2).
///
/// Names, links and addresses are Mininet's: hosts `h1..` (`hJsI` for `linear,K,N` with N > 1),
/// switches `s1..`, each link's ports numbered in the order Mininet's `Topo` adds them (host
/// ports from `eth0`, switch ports from `eth1`), and host number N at `10.0.0.N/8` in the
/// natural order of host names, as Mininet's `ipBase` gives them. The alias `vip` names
/// 10.0.0.50 unless a host has that address.
pub fn builtin(spec: &str) -> Result<Topology, TopologyError> {
    let bad = |msg: String| TopologyError {
        origin: format!("builtin {spec}"),
        line: None,
        field: String::new(),
        kind: TopologyErrorKind::BadBuiltin(msg),
    };
    let mut parts = spec.split(',').map(str::trim);
    let kind = parts.next().unwrap_or_default();
    let params: &[&str] = match kind {
        "single" => &["k"],
        "linear" => &["k", "n"],
        "tree" => &["depth", "fanout"],
        "minimal" => &[],
        _ => {
            return Err(bad(format!(
                "unknown topology `{spec}`: not a file, and not a built-in (single,K | linear,K[,N] | tree,DEPTH[,FANOUT] | minimal)"
            )));
        }
    };
    let mut values: Vec<Option<usize>> = vec![None; params.len()];
    for (i, arg) in parts.enumerate() {
        let (slot, text) = match arg.split_once('=') {
            Some((key, v)) => match params.iter().position(|p| *p == key.trim()) {
                Some(slot) => (slot, v.trim()),
                None => {
                    return Err(bad(format!(
                        "`{kind}` has no parameter `{}` (it takes: {})",
                        key.trim(),
                        if params.is_empty() {
                            "none".into()
                        } else {
                            params.join(", ")
                        }
                    )));
                }
            },
            None if i < params.len() => (i, arg),
            None => {
                return Err(bad(format!(
                    "`{kind}` takes {} parameter(s) ({}), got `{arg}` too",
                    params.len(),
                    params.join(", ")
                )));
            }
        };
        let v: usize = text.parse().map_err(|_| {
            bad(format!(
                "`{text}` is not a count for {} (try `{kind},3`)",
                params[slot]
            ))
        })?;
        values[slot] = Some(v);
    }
    let get = |i: usize, default: usize| values.get(i).copied().flatten().unwrap_or(default);
    let mut b = Builder::default();
    match kind {
        "single" => {
            let k = get(0, 2);
            b.check(k, 1, "k", &bad)?;
            b.switch(1);
            for h in 1..=k {
                let host = b.host(format!("h{h}"));
                b.link(&host, "s1");
            }
        }
        "linear" => {
            let (k, n) = (get(0, 2), get(1, 1));
            b.check(k, 1, "k", &bad)?;
            b.check(n, 1, "n", &bad)?;
            for i in 1..=k {
                let sw = b.switch(i);
                for j in 1..=n {
                    let host = b.host(if n == 1 {
                        format!("h{i}")
                    } else {
                        format!("h{j}s{i}")
                    });
                    b.link(&host, &sw);
                }
                if i > 1 {
                    b.link(&sw, &format!("s{}", i - 1));
                }
            }
        }
        "tree" => {
            let (depth, fanout) = (get(0, 1), get(1, 2));
            b.check(fanout, 1, "fanout", &bad)?;
            if fanout
                .checked_pow(depth as u32)
                .is_none_or(|hosts| hosts > MAX_HOSTS)
            {
                return Err(bad(format!(
                    "depth {depth}, fanout {fanout} gives more than {MAX_HOSTS} hosts"
                )));
            }
            b.tree(depth, fanout);
        }
        _ => {
            b.switch(1);
            for h in ["h1", "h2"] {
                let host = b.host(h.to_string());
                b.link(&host, "s1");
            }
        }
    }
    b.finish(spec)
}

/// Hosts a built-in may have.
const MAX_HOSTS: usize = 1000;

/// A topology being added to as Mininet's `Topo` does: ports numbered per node as links come.
#[derive(Default)]
struct Builder {
    hosts: Vec<String>,
    switches: Vec<String>,
    links: Vec<(String, String)>,
    ports: std::collections::HashMap<String, usize>,
}

impl Builder {
    fn check(
        &self,
        v: usize,
        min: usize,
        what: &str,
        bad: &dyn Fn(String) -> TopologyError,
    ) -> Result<(), TopologyError> {
        if v < min || v > MAX_HOSTS {
            return Err(bad(format!("{what} must be {min} to {MAX_HOSTS}, got {v}")));
        }
        Ok(())
    }

    fn host(&mut self, name: String) -> String {
        self.ports.insert(name.clone(), 0);
        self.hosts.push(name.clone());
        name
    }

    fn switch(&mut self, n: usize) -> String {
        let name = format!("s{n}");
        self.ports.insert(name.clone(), 1);
        self.switches.push(name.clone());
        name
    }

    /// `addLink(a, b)`: each end gets its node's next port.
    fn link(&mut self, a: &str, b: &str) {
        let mut end = |node: &str| {
            let p = self.ports.entry(node.to_string()).or_default();
            let e = format!("{node}:eth{p}");
            *p += 1;
            e
        };
        let (ea, eb) = (end(a), end(b));
        self.links.push((ea, eb));
    }

    /// Mininet's `TreeTopo.addTree`: a switch, then each child subtree and its link in turn.
    fn tree(&mut self, depth: usize, fanout: usize) -> String {
        if depth == 0 {
            let name = format!("h{}", self.hosts.len() + 1);
            return self.host(name);
        }
        let sw = self.switch(self.switches.len() + 1);
        for _ in 0..fanout {
            let child = self.tree(depth - 1, fanout);
            self.link(&sw, &child);
        }
        sw
    }

    fn finish(self, spec: &str) -> Result<Topology, TopologyError> {
        let mut t = Topology {
            origin: Origin::Builtin(spec.to_string()),
            ..Default::default()
        };
        let mut order: Vec<&String> = self.hosts.iter().collect();
        order.sort_by_key(|n| natural_key(n));
        for (i, name) in order.into_iter().enumerate() {
            let host = HostSpec {
                interfaces: [(s("eth0".to_string()), Addresses::One(mininet_ip(i + 1)))]
                    .into_iter()
                    .collect(),
                ..Default::default()
            };
            t.hosts.insert(s(name.clone()), host);
        }
        for sw in self.switches {
            t.switches.insert(s(sw), SwitchSpec::default());
        }
        for (a, b) in self.links {
            t.links.push(s(LinkSpec {
                endpoints: vec![s(a), s(b)],
                ..Default::default()
            }));
        }
        if t.hosts.len() < 50 {
            t.aliases
                .insert(s("vip".to_string()), s(SEED_VIP.to_string()));
        }
        Ok(t)
    }
}

/// Host number `n`'s address in Mininet's default `ipBase` 10.0.0.0/8.
pub fn mininet_ip(n: usize) -> String {
    let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)) + n as u32);
    format!("{ip}/8")
}

/// Mininet's `naturalSeq`: `h2` before `h10`, `h1s2` before `h2s1`.
pub fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut num: Option<u64> = None;
    for c in name.chars() {
        match (c.to_digit(10), num) {
            (Some(d), Some(n)) => num = Some(n.saturating_mul(10).saturating_add(d as u64)),
            (Some(d), None) => num = Some(d as u64),
            (None, Some(n)) => {
                out.push((std::mem::take(&mut text), n));
                num = None;
                text.push(c);
            }
            (None, None) => text.push(c),
        }
    }
    out.push((text, num.unwrap_or(0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_linear_shapes() {
        let t = builtin("single,3").unwrap();
        assert_eq!(t.hosts.len(), 3);
        assert_eq!(t.switches.len(), 1);
        assert_eq!(t.links.len(), 3);
        let t = builtin("linear,4").unwrap();
        assert_eq!(t.switches.len(), 4);
        assert_eq!(t.links.len(), 4 + 3);
        assert_eq!(builtin("minimal").unwrap().hosts.len(), 2);
    }

    fn links(t: &Topology) -> Vec<String> {
        t.links
            .iter()
            .map(|l| {
                let e = &l.get_ref().endpoints;
                format!("{}-{}", e[0].get_ref(), e[1].get_ref())
            })
            .collect()
    }

    fn address(t: &Topology, host: &str) -> String {
        let (_, h) = t.hosts.iter().find(|(n, _)| n.get_ref() == host).unwrap();
        h.interfaces.values().next().unwrap().to_vec().join(",")
    }

    /// What `mn --topo tree,2,2` builds (Mininet 2.3's TreeTopo): s1 over s2 and s3, each over
    /// two hosts, ports in the order addTree adds them.
    #[test]
    fn tree_is_mininets() {
        let t = builtin("tree,depth=2,fanout=2").unwrap();
        assert_eq!(
            links(&t),
            [
                "s2:eth1-h1:eth0",
                "s2:eth2-h2:eth0",
                "s1:eth1-s2:eth3",
                "s3:eth1-h3:eth0",
                "s3:eth2-h4:eth0",
                "s1:eth2-s3:eth3"
            ]
        );
        assert_eq!(address(&t, "h4"), "10.0.0.4/8");
        assert_eq!(builtin("tree").unwrap().hosts.len(), 2);
    }

    /// `mn --topo linear,3,2`: hosts hJsI, addresses in natural order of their names.
    #[test]
    fn linear_is_mininets() {
        let t = builtin("linear,3,2").unwrap();
        assert_eq!(
            links(&t)[..3],
            [
                "h1s1:eth0-s1:eth1",
                "h2s1:eth0-s1:eth2",
                "h1s2:eth0-s2:eth1"
            ]
        );
        assert_eq!(links(&t)[4], "s2:eth3-s1:eth3");
        assert_eq!(address(&t, "h1s1"), "10.0.0.1/8");
        assert_eq!(address(&t, "h1s2"), "10.0.0.2/8");
        assert_eq!(address(&t, "h2s1"), "10.0.0.4/8");
        let t = builtin("single,300").unwrap();
        assert_eq!(address(&t, "h300"), "10.0.1.44/8");
        assert_eq!(address(&t, "h10"), "10.0.0.10/8");
    }

    #[test]
    fn rejects_bad_specs() {
        for spec in [
            "single,0",
            "single,x",
            "tree,2,0",
            "single,1001",
            "ring",
            "tree,5,5",
            "single,3,4",
            "linear,m=2",
        ] {
            let e = builtin(spec).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("builtin {spec}: ")),
                "{e}"
            );
        }
    }
}
