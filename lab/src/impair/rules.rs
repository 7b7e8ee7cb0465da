//! What an impaired direction installs, as argument lists (pure; [`super::apply`] runs them):
//!
//! - an NFQUEUE rule where the packet is still "on the wire" for everyone who looks, so
//!   captures and `SO_TIMESTAMP`s at the receiver see it arrive late, as with netem:
//!   - into a switch: the switch's `raw` PREROUTING for its port (`physdev-in`), before the
//!     bridge forwards the frame;
//!   - from a switch to a host: the switch's `mangle` POSTROUTING for its port
//!     (`physdev-out`), after the bridge chose the port, before the frame leaves;
//!   - between two hosts: the sender's `mangle` POSTROUTING for its interface. This one
//!     differs from netem, which delays after the whole of POSTROUTING: a held packet's
//!     conntrack entry is not confirmed yet, and NAT happens after the hold;
//!
//!   a switch sees bridged frames in iptables through bridge netfilter, which the lab turns
//!   off in switches and back on in one that holds an impairment's rule;
//! - at the **sending** end, `tbf` for a rate.
//!
//! The kernel has no nft `queue` expression here (`CONFIG_NFT_QUEUE` unset), so the rule is an
//! xtables `NFQUEUE` target, which iptables-nft loads through nft's compat layer. Queue numbers
//! are [`QUEUE_BASE`]` + 2·link + way`: per namespace, far above the balancer's.

use crate::resolve::{Endpoint, LinkPlan, NodeKind, Plan};
use sim::impair::{Impairment, Way};

/// The link that ends at `endpoint` (`h3:eth0`, a switch port `s1:eth3`) and the way out of
/// that end: `(link index, egress way)`.
pub fn link_end(plan: &Plan, endpoint: &str) -> Result<(usize, Way), String> {
    let Some((node, short)) = endpoint.split_once(':') else {
        return Err(format!(
            "`{endpoint}`: name one end of a link as HOST:IF (h3:eth0) or SWITCH:PORT (s1:eth3)"
        ));
    };
    let iface = format!("{node}-{short}");
    for (i, l) in plan.links.iter().enumerate() {
        if l.a.node == node && l.a.iface == iface {
            return Ok((i, Way::Forward));
        }
        if l.b.node == node && l.b.iface == iface {
            return Ok((i, Way::Reverse));
        }
    }
    let prefix = format!("{node}-");
    let ends: Vec<String> = plan
        .links
        .iter()
        .flat_map(|l| [&l.a, &l.b])
        .filter(|e| e.node == node)
        .map(|e| format!("{node}:{}", e.iface.trim_start_matches(&prefix)))
        .collect();
    Err(if ends.is_empty() {
        format!("no link ends at {endpoint} (no node {node} with links)")
    } else {
        format!(
            "no link ends at {endpoint} ({node}'s links: {})",
            ends.join(", ")
        )
    })
}

/// The sending and the receiving end of `l` in the way `way` (`Forward`: a→b).
pub fn ends(l: &LinkPlan, way: Way) -> (&Endpoint, &Endpoint) {
    match way {
        Way::Forward => (&l.a, &l.b),
        Way::Reverse => (&l.b, &l.a),
    }
}

/// A way of `l` as messages show it: `h3-eth0 -> s1-eth3`.
pub fn way_label(l: &LinkPlan, way: Way) -> String {
    let (from, to) = ends(l, way);
    format!("{} -> {}", from.iface, to.iface)
}

/// The other way along a link.
pub fn opposite(way: Way) -> Way {
    match way {
        Way::Forward => Way::Reverse,
        Way::Reverse => Way::Forward,
    }
}

/// The first queue number impairment engines use.
pub const QUEUE_BASE: u16 = 40_000;

/// The comment on every impairment rule (`iptables -t raw -S` shows whose it is).
pub const COMMENT: &str = "lab-impair";

/// One impaired direction of one link.
#[derive(Debug, Clone, Copy)]
pub struct Direction<'a> {
    /// The link's index in the plan.
    pub link: usize,
    /// `Forward` is the plan's a→b.
    pub way: Way,
    /// The sending end.
    pub from: &'a Endpoint,
    /// The receiving end.
    pub to: &'a Endpoint,
    /// What is done to the packets.
    pub imp: &'a Impairment,
}

impl Direction<'_> {
    /// The NFQUEUE number of this direction (in the receiver's namespace).
    pub fn queue(&self) -> u16 {
        queue_num(self.link, self.way)
    }

    /// How the direction is named in messages and process names: `h1-eth0>s1-eth1`.
    pub fn label(&self) -> String {
        format!("{}>{}", self.from.iface, self.to.iface)
    }

    /// The engine's process name (its log is `<node>-<name>.log`).
    pub fn process_name(&self) -> String {
        format!("impair-{}", self.to.iface)
    }

    /// Where the queue rule and the engine live: the receiving switch, else the sender.
    pub fn queue_end(&self) -> &Endpoint {
        match self.to.kind {
            NodeKind::Switch => self.to,
            NodeKind::Host => self.from,
        }
    }

    /// True when the packets are queued where they arrive (into a switch): a duplicate is
    /// then sent again from the sending end and comes back through the queue. Otherwise they
    /// are queued on their way out, and a duplicate is the frame sent again after it left.
    pub fn queued_on_arrival(&self) -> bool {
        self.to.kind == NodeKind::Switch
    }
}

/// The queue number of a link's direction.
pub fn queue_num(link: usize, way: Way) -> u16 {
    QUEUE_BASE + (link as u16) * 2 + u16::from(way == Way::Reverse)
}

/// Every direction of `plan`'s links whose impairment is not empty.
pub fn directions(plan: &Plan) -> Vec<Direction<'_>> {
    let mut out = Vec::new();
    for (i, l) in plan.links.iter().enumerate() {
        let Some(imp) = &l.impair else { continue };
        for way in [Way::Forward, Way::Reverse] {
            let (from, to) = ends(l, way);
            let p = imp.way(way);
            if !p.is_empty() {
                out.push(Direction {
                    link: i,
                    way,
                    from,
                    to,
                    imp: p,
                });
            }
        }
    }
    out
}

/// The iptables arguments (after the program name) that add (`-I`) or delete (`-D`) the
/// direction's queue rule, in [`Direction::queue_end`]'s namespace.
pub fn queue_rule(d: &Direction, add: bool) -> Vec<String> {
    let op = if add { "-I" } else { "-D" };
    let mut v: Vec<String> = match (d.from.kind, d.to.kind) {
        (_, NodeKind::Switch) => vec![
            "-t",
            "raw",
            op,
            "PREROUTING",
            "-m",
            "physdev",
            "--physdev-in",
            &d.to.iface,
        ],
        (NodeKind::Switch, NodeKind::Host) => vec![
            "-t",
            "mangle",
            op,
            "POSTROUTING",
            "-m",
            "physdev",
            "--physdev-is-bridged",
            "--physdev-out",
            &d.from.iface,
        ],
        (NodeKind::Host, NodeKind::Host) => {
            vec!["-t", "mangle", op, "POSTROUTING", "-o", &d.from.iface]
        }
    }
    .into_iter()
    .map(String::from)
    .collect();
    v.insert(0, "-w".into());
    v.extend(
        [
            "-m",
            "comment",
            "--comment",
            COMMENT,
            "-j",
            "NFQUEUE",
            "--queue-num",
        ]
        .map(String::from),
    );
    v.push(d.queue().to_string());
    v
}

/// The tc arguments that shape the sending end to the direction's rate (`None`: no rate).
pub fn tbf(d: &Direction) -> Option<Vec<String>> {
    let rate = d.imp.rate?;
    let (burst, latency) = rate.bucket();
    Some(
        [
            "qdisc".to_string(),
            "replace".into(),
            "dev".into(),
            d.from.iface.clone(),
            "root".into(),
            "tbf".into(),
            "rate".into(),
            format!("{}bit", rate.bits_per_sec),
            "burst".into(),
            burst.to_string(),
            "latency".into(),
            format!("{}ms", latency.as_millis()),
        ]
        .to_vec(),
    )
}

/// The tc arguments that give the sending end a netem qdisc doing all of the direction's
/// impairment (rate included), for kernels that have netem. netem draws from its own
/// generator: no seed is passed (iproute2 before 6.3 does not know `seed`).
pub fn netem(d: &Direction) -> Vec<String> {
    let p = d.imp;
    let us = |t: std::time::Duration| format!("{}us", t.as_micros());
    let mut v: Vec<String> = ["qdisc", "replace", "dev", &d.from.iface, "root", "netem"]
        .map(String::from)
        .to_vec();
    if !p.delay.is_zero() {
        v.extend(["delay".into(), us(p.delay)]);
        if !p.jitter.is_zero() {
            v.push(us(p.jitter));
        }
    }
    for (name, c) in [
        ("loss", p.loss),
        ("duplicate", p.duplicate),
        ("reorder", p.reorder),
    ] {
        if !c.is_zero() {
            v.push(name.into());
            v.extend(c.to_string().split(' ').map(String::from));
        }
    }
    if let Some(r) = p.rate {
        v.extend(["rate".into(), format!("{}bit", r.bits_per_sec)]);
    }
    v
}

/// The tc arguments that remove the sending end's shaper.
pub fn tbf_remove(d: &Direction) -> Vec<String> {
    ["qdisc", "del", "dev", &d.from.iface, "root"]
        .map(String::from)
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::resolve;
    use crate::topology::{Origin, Topology};

    fn resolved(text: &str) -> Result<Plan, crate::topology::TopologyError> {
        let origin = Origin::File {
            path: "t.toml".into(),
            text: text.into(),
        };
        resolve(&Topology::parse(text, origin)?)
    }

    fn plan(text: &str) -> Plan {
        resolved(text).unwrap()
    }

    const TOPO: &str = r#"
links = [["h1:eth0", "s1", { forward = { delay = "50ms" }, reverse = { rate = "10mbit" } }],
         ["h2:eth0", "s1"]]
[switches.s1]
[hosts.h1]
interfaces = { eth0 = "10.0.0.1/24" }
[hosts.h2]
interfaces = { eth0 = "10.0.0.2/24" }
"#;

    #[test]
    fn forward_is_as_written_though_the_switch_end_comes_first_in_the_plan() {
        let p = plan(TOPO);
        let ds = directions(&p);
        assert_eq!(ds.len(), 2);
        let delayed = ds.iter().find(|d| !d.imp.delay.is_zero()).unwrap();
        assert_eq!(delayed.label(), "h1-eth0>s1-eth1");
        assert_eq!(
            queue_rule(delayed, true).join(" "),
            "-w -t raw -I PREROUTING -m physdev --physdev-in s1-eth1 -m comment --comment lab-impair -j NFQUEUE --queue-num 40001"
        );
        let shaped = ds.iter().find(|d| d.imp.rate.is_some()).unwrap();
        assert_eq!(shaped.label(), "s1-eth1>h1-eth0");
        assert_eq!(
            queue_rule(shaped, false).join(" "),
            "-w -t mangle -D POSTROUTING -m physdev --physdev-is-bridged --physdev-out s1-eth1 -m comment --comment lab-impair -j NFQUEUE --queue-num 40000"
        );
        assert_eq!(
            (
                delayed.queue_end().node.as_str(),
                shaped.queue_end().node.as_str()
            ),
            ("s1", "s1")
        );
        assert_eq!(
            tbf(shaped).unwrap().join(" "),
            "qdisc replace dev s1-eth1 root tbf rate 10000000bit burst 5000 latency 100ms"
        );
        assert_eq!(tbf(delayed), None);
        assert_eq!(
            netem(delayed).join(" "),
            "qdisc replace dev h1-eth0 root netem delay 50000us"
        );
    }

    #[test]
    fn netem_takes_every_parameter_but_the_seed() {
        let p = plan(
            r#"
links = [["h1:eth0", "h2:eth0", { delay = "10ms", jitter = "1ms", loss = "1% 25%", duplicate = "2%", reorder = "3%", rate = "5mbit", seed = 4 }]]
[hosts.h1]
interfaces = { eth0 = "10.0.0.1/24" }
[hosts.h2]
interfaces = { eth0 = "10.0.0.2/24" }
"#,
        );
        let d = &directions(&p)[0];
        assert_eq!(
            netem(d).join(" "),
            "qdisc replace dev h1-eth0 root netem delay 10000us 1000us loss 1% 25% duplicate 2% reorder 3% rate 5000000bit"
        );
        assert_eq!(
            queue_rule(d, true).join(" "),
            "-w -t mangle -I POSTROUTING -o h1-eth0 -m comment --comment lab-impair -j NFQUEUE --queue-num 40000"
        );
    }

    #[test]
    fn a_bad_impairment_names_its_line_and_key() {
        let text = "links = [\n  [\"h1:eth0\", \"s1\", { loss = \"lots\" }],\n]\n[switches.s1]\n[hosts.h1]\ninterfaces = { eth0 = \"10.0.0.1/24\" }\n";
        let e = resolved(text).unwrap_err().to_string();
        assert!(
            e.starts_with("t.toml:2: links[0].loss: bad impairment: loss = \"lots\""),
            "{e}"
        );
    }
}
