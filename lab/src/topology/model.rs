//! The topology model: hosts, switches, links and aliases as written, with source spans.

use super::Origin;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::fmt;
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
    /// MAC addresses per interface short name (`eth0 = "00:00:00:00:00:01"`); the kernel picks
    /// one for the others.
    #[serde(default)]
    pub mac: IndexMap<Spanned<String>, Spanned<String>>,
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

/// A link: `["h1:eth0", "s1"]`, `["h1:eth0", "s1", { delay = "50ms" }]` or
/// `{ endpoints = [...], mtu = 1400, impair = { loss = "1%" } }`.
#[derive(Debug, Clone, Default)]
pub struct LinkSpec {
    /// The two ends, each `node` or `node:iface`.
    pub endpoints: Vec<Spanned<String>>,
    /// MTU on both ends.
    pub mtu: Option<Spanned<i64>>,
    /// Traffic control of both ends, as Mininet's `TCLink` takes it (`tc = { bw = 10 }`).
    pub tc: Option<Spanned<TcSpec>>,
    /// Impairments (`{ delay = "50ms", loss = "20%" }` or `{ forward = {…}, reverse = {…} }`):
    /// the third element of the short form, `impair` in the long one. Resolve reads the keys.
    pub impair: Option<Spanned<toml::Table>>,
}

/// One element of a link's short form: an endpoint, or (third) the impairments.
enum LinkElement {
    End(String),
    Impair(toml::Table),
}

impl<'de> Deserialize<'de> for LinkElement {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LinkElement;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"an endpoint ("h1:eth0") or impairments ({ delay = "50ms" })"#)
            }
            fn visit_str<E>(self, v: &str) -> Result<LinkElement, E> {
                Ok(LinkElement::End(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<LinkElement, A::Error> {
                let t =
                    toml::Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(LinkElement::Impair(t))
            }
        }
        d.deserialize_any(V)
    }
}

/// Mininet `TCLink` parameters: applied by Mininet's `TCIntf` (htb/tbf for `bw`, netem for
/// `delay`, `jitter`, `loss`) with the Mininet backend; elsewhere as impairments.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcSpec {
    /// Rate limit in Mbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bw: Option<f64>,
    /// One-way delay, e.g. `"5ms"` (netem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Delay variation, e.g. `"1ms"` (netem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    /// Loss in percent, 0 to 100 (netem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Queue limit in packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_size: Option<u64>,
    /// Shape with htb instead of tbf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_htb: Option<bool>,
}

// Plans compare whole; a resolved TcSpec has no NaN (resolve rejects it).
impl Eq for TcSpec {}

impl TcSpec {
    /// The parameters that are set, by name (`bw, delay`).
    pub fn names(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or_default();
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for LinkSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LinkSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"["h1:eth0", "s1"] or { endpoints = ["h1:eth0", "s1"], mtu = 1500, tc = { bw = 10 } }"#)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<LinkSpec, A::Error> {
                let mut link = LinkSpec::default();
                while let Some(e) = seq.next_element::<Spanned<LinkElement>>()? {
                    let span = e.span();
                    match e.into_inner() {
                        LinkElement::End(_) if link.impair.is_some() => {
                            return Err(serde::de::Error::custom(
                                "the impairments come last in a link, after its two ends",
                            ));
                        }
                        LinkElement::End(s) => link.endpoints.push(Spanned::new(span, s)),
                        LinkElement::Impair(_) if link.impair.is_some() => {
                            return Err(serde::de::Error::custom(
                                "a link has one table of impairments",
                            ));
                        }
                        LinkElement::Impair(t) => link.impair = Some(Spanned::new(span, t)),
                    }
                }
                Ok(link)
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
                        "tc" => link.tc = Some(map.next_value()?),
                        "impair" => link.impair = Some(map.next_value()?),
                        other => {
                            return Err(serde::de::Error::unknown_field(
                                other,
                                &["endpoints", "mtu", "tc", "impair"],
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
