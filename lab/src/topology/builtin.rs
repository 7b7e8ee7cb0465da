//! Built-in topologies with Mininet's vocabulary: `single,K`, `linear,K`, `minimal`.

use super::{
    Addresses, HostSpec, LinkSpec, Origin, SwitchSpec, Topology, TopologyError, TopologyErrorKind,
};
use toml::Spanned;

/// The address every built-in gives the `vip` alias (the seed post's VIP).
pub const SEED_VIP: &str = "10.0.0.50";

fn s<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

/// Builds a built-in topology from its spec: `single,K`, `linear,K` or `minimal`.
///
/// Hosts are `h1..hK` at `10.0.0.N/24` on `hN-eth0`, switches `s1..`; the alias `vip` names
/// 10.0.0.50 unless a host has that address.
pub fn builtin(spec: &str) -> Result<Topology, TopologyError> {
    let bad = |msg: String| TopologyError {
        origin: format!("builtin {spec}"),
        line: None,
        field: String::new(),
        kind: TopologyErrorKind::BadBuiltin(msg),
    };
    let (kind, k) = match spec.split_once(',') {
        Some((kind, k)) => {
            let k: usize = k
                .trim()
                .parse()
                .map_err(|_| bad(format!("`{k}` is not a host count (try `{kind},3`)")))?;
            (kind.trim(), k)
        }
        None if spec == "minimal" => ("single", 2),
        None => (spec, 0),
    };
    if !matches!(kind, "single" | "linear") {
        return Err(bad(format!(
            "unknown topology `{spec}`: not a file, and not a built-in (single,K | linear,K | minimal)"
        )));
    }
    if !(1..=250).contains(&k) {
        return Err(bad(format!("host count must be 1 to 250, got {k}")));
    }
    let mut t = Topology {
        origin: Origin::Builtin(spec.to_string()),
        ..Default::default()
    };
    for n in 1..=k {
        let host = HostSpec {
            interfaces: [(
                s("eth0".to_string()),
                Addresses::One(format!("10.0.0.{n}/24")),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        t.hosts.insert(s(format!("h{n}")), host);
    }
    let switches = if kind == "single" { 1 } else { k };
    for n in 1..=switches {
        t.switches.insert(s(format!("s{n}")), SwitchSpec::default());
    }
    let link = |a: String, b: String| {
        s(LinkSpec {
            endpoints: vec![s(a), s(b)],
            mtu: None,
        })
    };
    for n in 1..=k {
        let sw = if kind == "single" { 1 } else { n };
        t.links.push(link(format!("h{n}:eth0"), format!("s{sw}")));
    }
    if kind == "linear" {
        for n in 1..k {
            t.links.push(link(format!("s{n}"), format!("s{}", n + 1)));
        }
    }
    if k < 50 {
        t.aliases
            .insert(s("vip".to_string()), s(SEED_VIP.to_string()));
    }
    Ok(t)
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

    #[test]
    fn rejects_bad_specs() {
        for spec in ["single,0", "single,x", "tree,2", "single,251", "ring"] {
            let e = builtin(spec).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("builtin {spec}: ")),
                "{e}"
            );
        }
    }
}
