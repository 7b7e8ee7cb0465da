//! Topology files: the model (what the user wrote) and the parse step (TOML → model).
//!
//! A topology is a graph of names, separate from the network built from it (Mininet's idea):
//!
//! ```toml
//! aliases = { vip = "10.0.0.50" }
//! links = [["h1:eth0", "s1"], ["h2:eth0", "s1"], { endpoints = ["h3:eth0", "s1"], mtu = 1400 }]
//!
//! [switches.s1]
//!
//! [hosts.h1]
//! interfaces = { eth0 = "10.0.0.1/24" }
//! loopback = ["10.0.0.50/32"]
//! sysctl = { "net.ipv4.ip_forward" = 1 }
//! iptables = ["-A INPUT -d 10.0.0.50/32 -p tcp -j NFQUEUE --queue-num 0"]
//! ```
//!
//! Every value keeps its byte span, so the resolve step can name the line of a mistake.
//! The format reference is docs/topology-format.md.

mod builtin;
mod error;

pub use builtin::builtin;
pub use error::{Origin, TopologyError, TopologyErrorKind};

use indexmap::IndexMap;
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use toml::Spanned;

/// A topology as written: hosts, switches, links and aliases, with source spans.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Optional human name of the topology.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// Extra names for addresses in traces (e.g. `vip = "10.0.0.50"`).
    #[serde(default)]
    pub aliases: IndexMap<Spanned<String>, Spanned<String>>,
    /// Point-to-point links between nodes.
    #[serde(default)]
    pub links: Vec<Spanned<LinkSpec>>,
    /// Hosts by name (each a network namespace).
    #[serde(default)]
    pub hosts: IndexMap<Spanned<String>, HostSpec>,
    /// Switches by name (each a Linux bridge in its own namespace).
    #[serde(default)]
    pub switches: IndexMap<Spanned<String>, SwitchSpec>,
    /// Where this topology came from (not part of the file).
    #[serde(skip)]
    pub origin: Origin,
}

/// One host: its interfaces' addresses, routes, sysctls and firewall.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Addresses per interface short name (`eth0` becomes `h1-eth0`).
    #[serde(default)]
    pub interfaces: IndexMap<Spanned<String>, Addresses>,
    /// Default gateway.
    #[serde(default)]
    pub default_route: Option<Spanned<String>>,
    /// Extra addresses on `lo`, such as a VIP on a DSR backend.
    #[serde(default)]
    pub loopback: Vec<Spanned<String>>,
    /// sysctls set inside the host (`net.ipv4.ip_forward = 1`).
    #[serde(default)]
    pub sysctl: IndexMap<Spanned<String>, Spanned<SysctlValue>>,
    /// iptables rule lines, as written on a command line (`-A INPUT ...`).
    #[serde(default)]
    pub iptables: Vec<Spanned<String>>,
    /// An nft ruleset, loaded with `nft -f`.
    #[serde(default)]
    pub nft: Option<Spanned<String>>,
    /// Keep IPv6 enabled (off by default: its neighbour discovery is noise in traces).
    #[serde(default)]
    pub ipv6: bool,
}

/// One switch. Switches have no settings yet; the table exists to name them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSpec {}

/// One address or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Addresses {
    /// `eth0 = "10.0.0.1/24"`
    One(String),
    /// `eth0 = ["10.0.0.1/24", "10.0.1.1/24"]`
    Many(Vec<String>),
    /// `eth0 = {}` or `eth0 = []`: an interface without addresses.
    None {},
}

impl Addresses {
    /// The addresses as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Addresses::One(a) => vec![a.clone()],
            Addresses::Many(v) => v.clone(),
            Addresses::None {} => vec![],
        }
    }
}

/// A sysctl value: TOML integers, strings and booleans are all accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlValue(pub String);

impl<'de> Deserialize<'de> for SysctlValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SysctlValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, string or boolean")
            }
            fn visit_i64<E>(self, v: i64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<SysctlValue, E> {
                Ok(SysctlValue(u8::from(v).to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<SysctlValue, E> {
                Ok(SysctlValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A link: `["h1:eth0", "s1"]` or `{ endpoints = [...], mtu = 1400 }`.
#[derive(Debug, Clone, Default)]
pub struct LinkSpec {
    /// The two ends, each `node` or `node:iface`.
    pub endpoints: Vec<Spanned<String>>,
    /// MTU on both ends.
    pub mtu: Option<Spanned<i64>>,
}

impl<'de> Deserialize<'de> for LinkSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LinkSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"["h1:eth0", "s1"] or { endpoints = ["h1:eth0", "s1"], mtu = 1500 }"#)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<LinkSpec, A::Error> {
                let mut endpoints = Vec::new();
                while let Some(e) = seq.next_element()? {
                    endpoints.push(e);
                }
                Ok(LinkSpec {
                    endpoints,
                    mtu: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<LinkSpec, A::Error> {
                let mut link = LinkSpec::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "endpoints" => link.endpoints = map.next_value()?,
                        "mtu" => link.mtu = Some(map.next_value()?),
                        other => {
                            return Err(serde::de::Error::unknown_field(
                                other,
                                &["endpoints", "mtu"],
                            ));
                        }
                    }
                }
                Ok(link)
            }
        }
        d.deserialize_any(V)
    }
}

impl Topology {
    /// Parses topology TOML; `origin` is used in error messages.
    pub fn parse(text: &str, origin: Origin) -> Result<Topology, TopologyError> {
        match toml::from_str::<Topology>(text) {
            Ok(mut t) => {
                t.origin = origin;
                Ok(t)
            }
            Err(e) => Err(TopologyError {
                line: e.span().and_then(|s| origin.line_of(s.start)),
                origin: origin.describe(),
                field: String::new(),
                kind: TopologyErrorKind::Syntax(e.message().trim().to_string()),
            }),
        }
    }

    /// Reads and parses a topology file.
    pub fn from_file(path: &Path) -> Result<Topology, TopologyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            origin: shown.clone(),
            line: None,
            field: String::new(),
            kind: TopologyErrorKind::Read(e.to_string()),
        })?;
        Self::parse(&text.clone(), Origin::File { path: shown, text })
    }

    /// Loads a topology named on the command line: a built-in spec (`single,3`) or a file.
    pub fn load(spec: &str) -> Result<Topology, TopologyError> {
        let path = Path::new(spec);
        if path.exists() || spec.ends_with(".toml") || spec.contains('/') {
            Self::from_file(path)
        } else {
            builtin(spec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> Origin {
        Origin::File {
            path: "t.toml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn parse_short_and_long_links() {
        let text = r#"
links = [["h1:eth0", "s1"], { endpoints = ["h2:eth0", "s1"], mtu = 1400 }]
[switches.s1]
[hosts.h1]
interfaces = { eth0 = "10.0.0.1/24" }
[hosts.h2]
interfaces = { eth0 = ["10.0.0.2/24", "10.0.1.2/24"] }
sysctl = { "net.ipv4.ip_forward" = 1, "net.ipv4.conf.all.rp_filter" = "0", x = true }
"#;
        let t = Topology::parse(text, origin(text)).unwrap();
        assert_eq!(t.links.len(), 2);
        assert_eq!(
            t.links[1].get_ref().mtu.as_ref().map(|m| *m.get_ref()),
            Some(1400)
        );
        assert_eq!(t.hosts.len(), 2);
        let h2 = &t.hosts[1];
        assert_eq!(h2.interfaces[0].to_vec().len(), 2);
        let vals: Vec<_> = h2.sysctl.values().map(|v| v.get_ref().0.clone()).collect();
        assert_eq!(vals, ["1", "0", "1"]);
    }

    #[test]
    fn syntax_error_names_line() {
        let text = "[hosts.h1]\ninterfaces = { eth0 = \"10.0.0.1/24\" }\nbogus = 3\n";
        let e = Topology::parse(text, origin(text)).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().starts_with("t.toml:3: "), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn unknown_link_field_names_line() {
        let text =
            "links = [\n  [\"h1\", \"s1\"],\n  { endpoints = [\"h1\", \"s1\"], speed = 10 },\n]\n";
        let e = Topology::parse(text, origin(text)).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("speed"), "{e}");
    }
}
