//! Mininet custom topologies: `--custom FILE.py --topo NAME[,ARGS]` means what it means to
//! `mn`. The helper imports FILE (its `topos` dict), builds the `Topo` with Mininet's own
//! argument parsing, and reports its hosts, switches and links with their params; this module
//! writes that as a topology file, which is then loaded like any other (so `lab convert`
//! prints exactly what `lab up --custom` runs).
//!
//! Mininet's meaning is kept: a host without `ip` gets `10.0.0.N/8`, N its place in the natural
//! order of host names; `ip` belongs to the host's first interface (its lowest port);
//! `defaultRoute = "via GW"`; a link's interfaces are `NODE-ethPORT` with the ports its `Topo`
//! assigned, or `intfName1/2`. `TCLink` parameters (`bw`, `delay`, `jitter`, `loss`,
//! `max_queue_size`, `use_htb`) become the link's `tc`, applied by the Mininet backend. A
//! parameter lab cannot honour is an error that names the node or link and the parameter.

use super::python;
use crate::topology::{Origin, Topology, TopologyError, TopologyErrorKind};
use crate::topology::{mininet_ip, natural_key};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Switch params that only choose or tune Mininet's switch, which the backend chooses here.
const SWITCH_PARAMS: &[&str] = &[
    "isSwitch",
    "cls",
    "dpid",
    "failMode",
    "protocols",
    "datapath",
    "inband",
];
/// Link params that become `tc`.
const TC_PARAMS: &[&str] = &["bw", "delay", "jitter", "loss", "max_queue_size", "use_htb"];

/// `lab up --custom FILE --topo SPEC`: the topology [`convert`] writes, loaded.
pub fn load(file: &Path, spec: &str) -> Result<Topology, TopologyError> {
    let text = convert(file, spec)?;
    Topology::parse(
        &text.clone(),
        Origin::File {
            path: origin(file, spec),
            text,
        },
    )
}

fn origin(file: &Path, spec: &str) -> String {
    format!("{} --topo {spec}", file.display())
}

/// Reads `spec` (`NAME[,ARGS]`) from the Mininet custom file `file` and writes it as a topology
/// file (TOML). Errors name the file, node, link or parameter.
pub fn convert(file: &Path, spec: &str) -> Result<String, TopologyError> {
    let bad = |msg: String| TopologyError {
        origin: origin(file, spec),
        line: None,
        field: String::new(),
        kind: TopologyErrorKind::Mininet(msg),
    };
    convert_inner(file, spec).map_err(|m| {
        // The helper's own messages start with the file's name; the origin says it already.
        let shown = format!("{}: ", file.display());
        bad(m.strip_prefix(&shown).map(str::to_string).unwrap_or(m))
    })
}

fn convert_inner(file: &Path, spec: &str) -> Result<String, String> {
    let out = Command::new(python())
        .args(["-c", super::HELPER, "topo"])
        .arg(file)
        .arg(spec)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python().display()))?;
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(line.trim()).map_err(|_| {
        let err = String::from_utf8_lossy(&out.stderr);
        format!(
            "{}: the Mininet helper failed: {}",
            file.display(),
            err.lines().last().unwrap_or("no output")
        )
    })?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(e.to_string());
    }
    to_toml(&v, &origin(file, spec))
}

fn params(v: &Value) -> Map<String, Value> {
    v.get("params")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn name_of(v: &Value) -> String {
    v.get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn class_name(v: &Value) -> Option<&str> {
    v.get("class").and_then(Value::as_str)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct Host {
    name: String,
    ip: String,
    route: Option<String>,
    /// The host's `mac`: its first interface's.
    mac: Option<String>,
    /// MAC addresses a link's `addr1`/`addr2` give an interface (short name).
    link_macs: Vec<(String, String)>,
    /// (port, short interface name)
    ports: Vec<(u64, String)>,
    /// Addresses a link's `params1`/`params2` give an interface (short name).
    extra: Vec<(String, String)>,
    /// Mininet's examples/linuxrouter.py `LinuxRouter`: a host that forwards.
    router: bool,
}

/// The helper's report (hosts sorted naturally, switches, links) as a topology file.
fn to_toml(v: &Value, origin: &str) -> Result<String, String> {
    let list = |k: &str| {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut hosts: Vec<Host> = Vec::new();
    let mut host_list = list("hosts");
    host_list.sort_by_key(|h| natural_key(&name_of(h)));
    for (i, h) in host_list.iter().enumerate() {
        let name = name_of(h);
        let mut host = Host {
            name: name.clone(),
            ip: mininet_ip(i + 1),
            route: None,
            mac: None,
            link_macs: vec![],
            ports: vec![],
            extra: vec![],
            router: false,
        };
        for (k, val) in params(h) {
            match k.as_str() {
                "ip" => {
                    let ip = text(&val);
                    host.ip = if ip.contains('/') {
                        ip
                    } else {
                        format!("{ip}/8")
                    };
                }
                "defaultRoute" => {
                    let r = text(&val);
                    match r.strip_prefix("via ") {
                        Some(gw) => host.route = Some(gw.trim().to_string()),
                        None => {
                            return Err(format!(
                                "host {name}: defaultRoute = '{r}': lab takes 'via GATEWAY'"
                            ));
                        }
                    }
                }
                "mac" => host.mac = Some(text(&val)),
                "cls" if matches!(class_name(&val), Some("Host")) => {}
                "cls" if matches!(class_name(&val), Some("LinuxRouter")) => host.router = true,
                "inNamespace" if val == Value::Bool(true) => {}
                _ => {
                    return Err(format!(
                        "host {name}: parameter `{k}` is not supported (lab takes ip, defaultRoute, mac)"
                    ));
                }
            }
        }
        hosts.push(host);
    }
    let mut switches = Vec::new();
    for s in list("switches") {
        let name = name_of(&s);
        if let Some(k) = params(&s)
            .keys()
            .find(|k| !SWITCH_PARAMS.contains(&k.as_str()))
        {
            return Err(format!(
                "switch {name}: parameter `{k}` is not supported (the backend chooses the switch: --switch lxbr|ovs)"
            ));
        }
        switches.push(name);
    }
    let mut links = Vec::new();
    for l in list("links").iter() {
        let p = params(l);
        let node = |k: &str| {
            l.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (n1, n2) = (node("node1"), node("node2"));
        let what = format!("link {n1} - {n2}");
        let mut tc = BTreeMap::new();
        let mut ends = [
            (n1.clone(), None::<String>, None::<u64>),
            (n2.clone(), None, None),
        ];
        let mut macs = [None::<String>, None];
        let mut ips = [None::<String>, None];
        for (k, val) in &p {
            match k.as_str() {
                "port1" => ends[0].2 = val.as_u64(),
                "port2" => ends[1].2 = val.as_u64(),
                "intfName1" => ends[0].1 = Some(text(val)),
                "intfName2" => ends[1].1 = Some(text(val)),
                "addr1" => macs[0] = Some(text(val)),
                "addr2" => macs[1] = Some(text(val)),
                "cls" if matches!(class_name(val), Some("Link" | "TCLink")) => {}
                "params1" | "params2" => {
                    let j = usize::from(k == "params2");
                    for (pk, pv) in val.as_object().into_iter().flatten() {
                        match pk.as_str() {
                            "ip" => ips[j] = Some(text(pv)),
                            _ => {
                                return Err(format!(
                                    "{what}: {k}: parameter `{pk}` is not supported (lab takes ip)"
                                ));
                            }
                        }
                    }
                }
                "key" => {}
                k if TC_PARAMS.contains(&k) => {
                    tc.insert(k.to_string(), val.clone());
                }
                _ => {
                    return Err(format!(
                        "{what}: parameter `{k}` is not supported (lab takes port1/2, intfName1/2, addr1/2 and TCLink's {})",
                        TC_PARAMS.join(", ")
                    ));
                }
            }
        }
        let mut eps = Vec::new();
        for (j, (n, intf, port)) in ends.iter().enumerate() {
            let short = match (intf, port) {
                (Some(full), _) => match full.strip_prefix(&format!("{n}-")) {
                    Some(s) => s.to_string(),
                    None => {
                        return Err(format!(
                            "{what}: intfName{} = '{full}': lab names interfaces NODE-NAME (e.g. {n}-eth{})",
                            j + 1,
                            port.unwrap_or(0)
                        ));
                    }
                },
                (None, Some(p)) => format!("eth{p}"),
                (None, None) => return Err(format!("{what}: Mininet gave no port {}", j + 1)),
            };
            if let Some(h) = hosts.iter_mut().find(|h| &h.name == n) {
                h.ports.push((port.unwrap_or(u64::MAX), short.clone()));
                if let Some(ip) = &ips[j] {
                    let ip = if ip.contains('/') {
                        ip.clone()
                    } else {
                        format!("{ip}/8")
                    };
                    h.extra.push((short.clone(), ip));
                }
                if let Some(mac) = &macs[j] {
                    h.link_macs.push((short.clone(), mac.clone()));
                }
            } else if ips[j].is_some() {
                return Err(format!(
                    "{what}: params{}: a switch port has no address",
                    j + 1
                ));
            } else if macs[j].is_some() {
                return Err(format!(
                    "{what}: addr{}: a switch port's MAC is the switch's",
                    j + 1
                ));
            }
            eps.push(format!("{n}:{short}"));
        }
        links.push((eps, tc));
    }
    for h in &mut hosts {
        h.ports.sort();
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Converted from the Mininet topology {origin} by `lab convert`."
    );
    let _ = writeln!(out, "name = {}", toml_str(origin));
    out.push_str("links = [\n");
    for (eps, tc) in &links {
        if tc.is_empty() {
            let _ = writeln!(out, "  [{}, {}],", toml_str(&eps[0]), toml_str(&eps[1]));
        } else {
            let tc = tc
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "  {{ endpoints = [{}, {}], tc = {{ {tc} }} }},",
                toml_str(&eps[0]),
                toml_str(&eps[1])
            );
        }
    }
    out.push_str("]\n");
    for s in &switches {
        let _ = writeln!(out, "\n[switches.{s}]");
    }
    for h in &hosts {
        let _ = writeln!(out, "\n[hosts.{}]", h.name);
        // Mininet's default interface: the lowest port.
        match h.ports.first() {
            Some((_, first)) => {
                // `ip` on the first interface, unless params1/2 set that one.
                let mut addrs: Vec<(String, String)> = Vec::new();
                if !h.extra.iter().any(|(i, _)| i == first) {
                    addrs.push((first.clone(), h.ip.clone()));
                }
                addrs.extend(h.extra.iter().cloned());
                let _ = writeln!(out, "interfaces = {}", inline_table(&addrs));
                // `mac` on the first interface; `addr1`/`addr2` on their link's.
                let mut macs = h.link_macs.clone();
                if let Some(mac) = &h.mac {
                    if macs.iter().any(|(i, _)| i == first) {
                        return Err(format!(
                            "host {}: its mac and a link's addr1/addr2 both set {first}'s",
                            h.name
                        ));
                    }
                    macs.insert(0, (first.clone(), mac.clone()));
                }
                if !macs.is_empty() {
                    let _ = writeln!(out, "mac = {}", inline_table(&macs));
                }
            }
            None => {
                return Err(format!(
                    "host {}: no link (lab hosts need one for their ip)",
                    h.name
                ));
            }
        }
        if let Some(gw) = &h.route {
            let _ = writeln!(out, "default_route = {}", toml_str(gw));
        }
        if h.router {
            out.push_str("sysctl = { \"net.ipv4.ip_forward\" = 1 }\n");
        }
    }
    Ok(out)
}

/// `{ eth0 = "…", eth1 = "…" }`.
fn inline_table(pairs: &[(String, String)]) -> String {
    let body = pairs
        .iter()
        .map(|(k, v)| format!("{k} = {}", toml_str(v)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{{ {body} }}")
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => toml_str(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => toml_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str) -> Result<String, String> {
        to_toml(&serde_json::from_str(json).unwrap(), "t.py --topo x")
    }

    /// What the helper reports for `addHost('h10'); addHost('h2', mac=…); addSwitch('s1');
    /// addLink('h10', 's1', bw=10, cls=TCLink); addLink('h2', 's1')`.
    #[test]
    fn mininet_defaults_and_tclink_params() {
        let t = report(
            r#"{"hosts": [{"name": "h10", "params": {}}, {"name": "h2", "params": {"mac": "00:00:00:00:00:02"}}],
                "switches": [{"name": "s1", "params": {"isSwitch": true}}],
                "links": [
                  {"node1": "h10", "node2": "s1", "params": {"port1": 0, "port2": 1, "bw": 10, "cls": {"class": "TCLink"}}},
                  {"node1": "h2", "node2": "s1", "params": {"port1": 0, "port2": 2}}]}"#,
        )
        .unwrap();
        assert!(
            t.contains(r#"{ endpoints = ["h10:eth0", "s1:eth1"], tc = { bw = 10 } },"#),
            "{t}"
        );
        // Natural order: h2 is host 1, h10 host 2.
        assert!(t.contains("[hosts.h2]\ninterfaces = { eth0 = \"10.0.0.1/8\" }\nmac = { eth0 = \"00:00:00:00:00:02\" }"), "{t}");
        assert!(
            t.contains("[hosts.h10]\ninterfaces = { eth0 = \"10.0.0.2/8\" }"),
            "{t}"
        );
        let parsed = Topology::parse(&t, Origin::Builtin("t".into())).unwrap();
        crate::resolve(&parsed).unwrap();
    }

    /// `addLink(s1, r1, addr2=…)` on r1's second interface: that interface's MAC, not the
    /// first one's; with the host's own `mac` on the first.
    #[test]
    fn a_link_mac_goes_to_its_own_interface() {
        let t = report(
            r#"{"hosts": [{"name": "r1", "params": {"mac": "00:00:00:00:01:00"}}],
                "switches": [{"name": "s1", "params": {}}, {"name": "s2", "params": {}}],
                "links": [
                  {"node1": "s1", "node2": "r1", "params": {"port1": 1, "port2": 0}},
                  {"node1": "s2", "node2": "r1", "params": {"port1": 1, "port2": 1, "addr2": "00:00:00:00:01:01"}}]}"#,
        )
        .unwrap();
        assert!(
            t.contains(r#"mac = { eth0 = "00:00:00:00:01:00", eth1 = "00:00:00:00:01:01" }"#),
            "{t}"
        );
        let e = report(
            r#"{"hosts": [{"name": "h1", "params": {"mac": "00:00:00:00:00:01"}}],
                "switches": [{"name": "s1", "params": {}}],
                "links": [{"node1": "h1", "node2": "s1", "params": {"port1": 0, "port2": 1, "addr1": "00:00:00:00:00:02"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "host h1: its mac and a link's addr1/addr2 both set eth0's"
        );
    }

    #[test]
    fn what_lab_cannot_honour_is_named() {
        let e = report(
            r#"{"hosts": [{"name": "h1", "params": {"cpu": 0.5}}], "switches": [], "links": []}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "host h1: parameter `cpu` is not supported (lab takes ip, defaultRoute, mac)"
        );
        let e = report(
            r#"{"hosts": [{"name": "h1", "params": {}}], "switches": [{"name": "s1", "params": {}}],
                "links": [{"node1": "h1", "node2": "s1", "params": {"port1": 0, "port2": 1, "intfName1": "eth0"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "link h1 - s1: intfName1 = 'eth0': lab names interfaces NODE-NAME (e.g. h1-eth0)"
        );
        let e = report(r#"{"hosts": [{"name": "h1", "params": {"defaultRoute": "h1-eth0"}}], "switches": [], "links": []}"#)
            .unwrap_err();
        assert_eq!(
            e,
            "host h1: defaultRoute = 'h1-eth0': lab takes 'via GATEWAY'"
        );
    }
}
